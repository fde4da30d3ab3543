#!/bin/sh
# The Debian packages the tests use beside the Python ones: chromium (the browser tests)
# and docker-compose (validates docker-compose.yml; no Docker engine is needed). Installs
# the missing ones where it may (root, or sudo without a password); otherwise stops with
# the command to run, before anything else has been done.
set -eu

missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v docker-compose >/dev/null 2>&1 || missing="$missing docker-compose"
[ -n "$missing" ] || exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs chromium and docker-compose on the PATH and this system has no" \
       "apt-get: install$missing with its package manager, then run make test again." >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo -n"
else
  echo "make test needs the Debian packages$missing: run" \
       "\`sudo apt-get install$missing\`, then make test again." >&2
  exit 1
fi

# apt-get's chatter (debconf notes, progress) is shown only if it fails.
quietly() {
  output=$("$@" 2>&1) || { status=$?; printf '%s\n' "$output" >&2; return "$status"; }
}

echo "Installing the Debian packages the tests use:$missing"
# shellcheck disable=SC2086 # $as_root is empty or two words; $missing one word per package
quietly $as_root apt-get update -qq
# shellcheck disable=SC2086
quietly $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing
