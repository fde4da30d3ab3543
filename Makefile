# Every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-all test-packages lint bench bench-tiny clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "Could not create the virtualenv with" \
	  "$(PYTHON): on Debian or Ubuntu run \`sudo apt-get install python3-venv\`, then make again." >&2; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	touch $(STAMP)

install: $(STAMP)

## Run ClipSeek: database, queue, worker and web app (sample photos on first run).
run: $(STAMP)
	$(BIN)/clipseek up

## The Debian packages the tests use (chromium, docker-compose): installed when missing.
test-packages:
	@sh scripts/test-packages.sh

## Run the tests (starts its own PostgreSQL, Redis, workers and browser), less the long fault
## drills and measurements (marked slow): minutes, with the same realism.
test: test-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest $(PYTEST_PARALLEL) -m "not slow" --durations=25

## Run every test, the slow drills included (what CI runs).
test-all: test-packages $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .
	$(BIN)/pytest $(PYTEST_PARALLEL) --durations=25

# Three test processes, a test file each at a time (files share module fixtures): most tests
# wait on the servers and workers they start, so three keep 2 cores busy. Each process starts
# its own PostgreSQL and Redis. `make test PYTEST_PARALLEL=` runs them one at a time.
PYTEST_PARALLEL ?= -n 3 --dist loadfile

$(VENV)/.bench-installed: $(STAMP) bench/requirements.txt
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	touch $@

## Benchmarks (minutes; results in bench/results/): indexing throughput, search latency, words in pictures.
bench: $(VENV)/.bench-installed
	$(BIN)/python -m bench.indexing
	$(BIN)/python -m bench.search
	$(BIN)/python -m bench.first_start
	$(BIN)/python -m bench.profile
	$(BIN)/python -m bench.isa_caps --each-variable
	$(BIN)/python -m bench.probe
	$(BIN)/python -m bench.runtimes
	$(BIN)/python -m bench.hnsw_params
	$(BIN)/python -m bench.load
	$(BIN)/python -m bench.sync
	$(BIN)/python -m bench.watch --out bench/results/epyc-avx512-bf16
	$(BIN)/python -m bench.filtered
	$(BIN)/python -m bench.captions
	$(BIN)/python -m bench.duplicates
	$(BIN)/python -m bench.places
	$(BIN)/python -m bench.ocr

## Each benchmark in a tiny configuration, to check the scripts still run (not for timing).
# Each benchmark in its tiny form checks that the script runs; three at a time, since most of
# their time goes to starting servers and workers (output kept together per benchmark). The
# longest start first, so that the short ones fill in around them rather than wait at the end.
BENCH_TINY := first_start profile indexing watch load sync search filtered isa_caps probe runtimes hnsw_params duplicates places ocr

bench-tiny: $(VENV)/.bench-installed
	@$(MAKE) --no-print-directory -j3 --output-sync=target $(addprefix bench-tiny-,$(BENCH_TINY))

bench-tiny-%: $(VENV)/.bench-installed
	$(BIN)/python -m bench.$* --tiny --out $(or $(BENCH_OUT),/tmp/clipseek-bench-tiny)

# Tiny runs check that the scripts run and time nothing: those that time a precision keep the
# safe one instead of measuring `auto`'s choice (a minute or more each). The indexing run,
# whose subject the choice is, measures; its model cache (the ONNX exports) lives with the
# results, where a rerun finds it. first_start keeps an empty one: a first start is what it
# measures.
BENCH_TINY_SHARED_CACHE := indexing
$(addprefix bench-tiny-,$(BENCH_TINY_SHARED_CACHE)): \
  export CLIPSEEK_MODEL_CACHE = $(or $(BENCH_OUT),/tmp/clipseek-bench-tiny)/model-cache

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
