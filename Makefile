# The two commands of the README: `make run` and `make test`. Both set everything up on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PORT   ?= 3000

.PHONY: run test bench docker lint format sandbox clean lock

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@echo "Starting wechat-oa-auth in sandbox mode: open http://localhost:$(PORT)/"
	SANDBOX=1 PORT=$(PORT) LOG_FORMAT=text $(BIN)/python -m service

sandbox: $(STAMP)
	$(BIN)/python -m service.sandbox --port 3100

# openid-client (npm) for tests/test_oidc_interop.py; without Node.js those tests are skipped.
INTEROP       := tests/interop
INTEROP_STAMP := $(INTEROP)/node_modules/.installed
$(INTEROP_STAMP): $(INTEROP)/package-lock.json
	@if command -v npm >/dev/null; then \
	  npm ci --prefix $(INTEROP) --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: the OpenID Connect interop tests will be skipped"; fi

test: $(STAMP) $(INTEROP_STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Speed and memory figures (not pass/fail); MONGODB_URI=... for the production-sized runs.
# BENCH_ARGS go to the web-token sweep, LOAD_ARGS to the load benchmark, LATENCY_ARGS to the
# sign-in latency with a slow WeChat, POLL_ARGS to the waiting QR sign-ins, CEILING_ARGS to the
# wrk ceiling benchmark
# (bench/README.md); that one needs wrk (apt-get install wrk).
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m bench.sweep $(BENCH_ARGS)
	$(BIN)/python -m bench.load $(LOAD_ARGS)
	$(BIN)/python -m bench.signin_latency $(LATENCY_ARGS)
	$(BIN)/python -m bench.long_polls $(POLL_ARGS)
	@if command -v wrk >/dev/null; then $(BIN)/python -m bench.ceiling $(CEILING_ARGS); \
	else echo "bench.ceiling skipped: wrk is not installed (apt-get install wrk)"; fi

# The production image (needs a Docker engine; none runs on our development machines).
docker:
	docker build -t wechat-oa-auth:latest .

# requirements.lock: exact runtime versions with hashes, which the image installs (LOCK_ARGS=--upgrade).
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes \
	  --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host \
	  --output-file requirements.lock $(LOCK_ARGS) pyproject.toml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info build dist
