"""ClipSeek's configuration: one typed object, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from clipseek.errors import ConfigError

DEFAULT_MODEL = "ViT-B-32/openai"
RANDOM_MODEL = "ViT-B-32/random"
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8", "onnx-int8")
# HNSW candidates per search. Text queries sit far from the image clusters (CLIP's modality
# gap), so the index needs a wide search: bench/search.py measured recall@10 of 0.63-0.69 at
# pgvector's default of 40 at 118,000 images, and at 200 0.941 (EPYC) to 0.955 (Xeon), too
# close to 0.95 to hold; 300 gave 0.98-0.986 (2026-12-07). 250 keeps recall above 0.95 for
# a shorter walk than 300 (BENCHMARKS.md has the measured cost).
DEFAULT_EF_SEARCH = 250
# Near-duplicates: the most bits of two 64-bit perceptual hashes that may differ for the same
# picture. bench/duplicates.py measured it on real photos in re-encodes, resizes, small crops
# and light edits, against distinct photos of similar scenes.
DEFAULT_DUPLICATE_DISTANCE = 10
# The pairs of close hashes are kept up to this distance when pictures are hashed
# (clipseek.indexing.hash_pairs), so no setting may ask for more: well above the default,
# and still well below the ~32 bits of unrelated pictures, whose pairs would fill the table.
MAX_DUPLICATE_DISTANCE = 16


def default_home(environ: Mapping[str, str]) -> Path:
    """Return the per-user data folder used when CLIPSEEK_HOME is unset."""
    # The embedded PostgreSQL runs as a separate system user when started by root and needs
    # read/exec permission on every parent folder, so root's data must not live under /root.
    if os.geteuid() == 0:
        return Path("/var/lib/clipseek")
    xdg = environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path(environ.get("HOME", "~")).expanduser() / ".local" / "share"
    return base / "clipseek"


def _int(environ: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}.")
    return value


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}.") from None
    if not 0 < value < 2:  # descriptors have length 1: no two lie 2 or more apart
        raise ConfigError(f"{name} must be between 0 and 2, not {value}.")
    return value


def _duplicate_distance(environ: Mapping[str, str]) -> int:
    value = _int(environ, "CLIPSEEK_DUPLICATE_DISTANCE", DEFAULT_DUPLICATE_DISTANCE, minimum=0)
    if value > MAX_DUPLICATE_DISTANCE:
        raise ConfigError(f"CLIPSEEK_DUPLICATE_DISTANCE must be at most {MAX_DUPLICATE_DISTANCE} "
                          f"(of 64 bits: near-duplicate pairs are kept up to that distance), not {value}.")
    return value


def _flag(environ: Mapping[str, str], name: str) -> bool:
    return (environ.get(name) or "").lower() in ("1", "true", "yes")


def _switch(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name} must be 1 (on) or 0 (off), not {raw!r}.")


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value


@dataclass(frozen=True)
class Settings:
    """Every setting ClipSeek reads, with defaults that work for the embedded mode."""

    home: Path
    database_url: str | None = None
    # Read-only replicas of database_url (DATABASE_READ_URL, comma-separated) for searches,
    # browsing and picture pages; empty: every read goes to the primary.
    database_read_urls: tuple[str, ...] = ()
    # Seconds a replica may fall behind the primary before reads skip it.
    replica_max_lag_s: int = 30
    redis_url: str | None = None
    model: str = DEFAULT_MODEL
    weights: Path | None = None
    weights_sha256: str | None = None
    device: str = "auto"
    precision: str = "auto"
    batch_size: int = 32
    decode_workers: int = 4
    max_image_pixels: int = 100_000_000
    web_host: str = "127.0.0.1"
    web_port: int = 8000
    allowed_hosts: tuple[str, ...] = ()
    secret_key: str | None = None
    offline: bool = False
    visibility_timeout_s: int = 600
    model_cache_dir: Path | None = None
    ef_search: int = DEFAULT_EF_SEARCH
    require_accounts: bool = False
    admin_name: str = "admin"
    admin_password: str | None = None
    models_in_memory: int = 2
    trusted_proxies: int = 0
    duplicate_distance: int = DEFAULT_DUPLICATE_DISTANCE
    trash_days: int = 30
    ocr: bool = True
    people: bool = False
    people_distance: float = 0.5

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from environment variables (os.environ by default)."""
        env = os.environ if environ is None else environ
        home = Path(env["CLIPSEEK_HOME"]).expanduser() if env.get("CLIPSEEK_HOME") else None
        weights = env.get("CLIPSEEK_WEIGHTS")
        return cls(
            home=(home or default_home(env)).absolute(),
            database_url=env.get("DATABASE_URL") or None,
            database_read_urls=tuple(url.strip() for url in (env.get("DATABASE_READ_URL") or "")
                                     .split(",") if url.strip()),
            replica_max_lag_s=_int(env, "CLIPSEEK_REPLICA_MAX_LAG", 30),
            redis_url=env.get("REDIS_URL") or None,
            model=env.get("CLIPSEEK_MODEL") or DEFAULT_MODEL,
            weights=Path(weights).expanduser() if weights else None,
            weights_sha256=(env.get("CLIPSEEK_WEIGHTS_SHA256") or "").lower() or None,
            device=_choice(env, "CLIPSEEK_DEVICE", "auto", DEVICES),
            precision=_choice(env, "CLIPSEEK_PRECISION", "auto", PRECISIONS),
            # 32 keeps a 2-core CPU at batch speed (batch 1 is 2-4x slower per image) while a
            # batch still finishes in a few seconds, so progress stays visible.
            batch_size=_int(env, "CLIPSEEK_BATCH_SIZE", 32),
            decode_workers=_int(env, "CLIPSEEK_DECODE_WORKERS", min(4, os.cpu_count() or 1)),
            max_image_pixels=_int(env, "CLIPSEEK_MAX_IMAGE_PIXELS", 100_000_000),
            web_host=env.get("CLIPSEEK_HOST") or "127.0.0.1",
            web_port=_int(env, "CLIPSEEK_PORT", 8000),
            allowed_hosts=tuple(name.strip().lower() for name in
                                (env.get("CLIPSEEK_ALLOWED_HOSTS") or "").split(",") if name.strip()),
            secret_key=env.get("CLIPSEEK_SECRET_KEY") or None,
            offline=_flag(env, "CLIPSEEK_OFFLINE"),
            # A task whose worker died unacknowledged is handed out again after this long;
            # it must exceed the longest batch (seconds on a CPU).
            visibility_timeout_s=_int(env, "CLIPSEEK_VISIBILITY_TIMEOUT", 600),
            model_cache_dir=Path(env["CLIPSEEK_MODEL_CACHE"]) if env.get("CLIPSEEK_MODEL_CACHE") else None,
            ef_search=_int(env, "CLIPSEEK_EF_SEARCH", DEFAULT_EF_SEARCH),
            # Set by docker-compose: the web app then needs logins whatever address it binds.
            require_accounts=_flag(env, "CLIPSEEK_REQUIRE_ACCOUNTS"),
            admin_name=env.get("CLIPSEEK_ADMIN_NAME") or "admin",
            admin_password=env.get("CLIPSEEK_ADMIN_PASSWORD") or None,
            # Models a process keeps loaded at once (a worker serving a switch needs two); the
            # least recently used one is let go beyond this.
            models_in_memory=max(1, _int(env, "CLIPSEEK_MODELS_IN_MEMORY", 2)),
            # Reverse proxies in front of the web app whose X-Forwarded-For and -Proto are
            # believed; none by default, since anyone can send those headers.
            trusted_proxies=_int(env, "CLIPSEEK_TRUSTED_PROXIES", 0, minimum=0),
            duplicate_distance=_duplicate_distance(env),
            # Days a deleted picture stays in the trash, restorable, before the scheduler
            # removes it for good.
            trash_days=_int(env, "CLIPSEEK_TRASH_DAYS", 30),
            # Read the words in every indexed picture, after CLIP, at a lower priority; off,
            # pictures are marked skipped (`clipseek reindex --ocr` reads them later).
            ocr=_switch(env, "CLIPSEEK_OCR", default=True),
            # Find the faces in pictures and group them into people. Off by default (faces are
            # personal data); `clipseek people enable` turns it on for the library instead.
            people=_switch(env, "CLIPSEEK_PEOPLE", default=False),
            # Two faces closer than this (Euclidean, dlib's descriptors) are taken for one
            # person: dlib's own threshold is 0.6; lower merges strangers less often.
            people_distance=_float(env, "CLIPSEEK_PEOPLE_DISTANCE", 0.5),
        )

    def with_changes(self, **changes: object) -> Settings:
        """Return a copy with some fields replaced (used by the CLI's options and by tests)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def pgdata(self) -> Path:
        """Folder of the embedded PostgreSQL cluster."""
        return self.home / "pgdata"

    @property
    def image_store(self) -> Path:
        """Folder where uploaded images are kept."""
        return self.home / "images"

    @property
    def model_cache(self) -> Path:
        """Folder where downloaded model weights are kept (CLIPSEEK_MODEL_CACHE)."""
        return self.model_cache_dir or self.home / "models"

    @property
    def redis_folder(self) -> Path:
        """Folder of the embedded Redis."""
        return self.home / "redis"

    @property
    def thumbnails(self) -> Path:
        """Folder of cached derivatives: thumbnails and display copies."""
        return self.home / "thumbnails"
