# Two commands matter: `make demo` and `make test`. Each bootstraps what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8080
DATA ?= .demo-data

.PHONY: demo test test-fast lint typecheck compose-check pytest system-deps postgres bench screenshots clean

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m demo --data-dir $(DATA) --host $(HOST) --port $(PORT)

# Debian's Chromium drives the browser tests; docker-compose validates docker/ offline.
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v docker-compose >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium docker-compose >/dev/null; \
	fi

postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 || \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start || true

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

compose-check: system-deps
	docker-compose -f docker/compose.yaml config --quiet

# Two workers, one per core: each test makes its own database, folders and ports.
pytest: $(STAMP) system-deps postgres
	$(BIN)/pytest -q -n 2 --durations=15

test: lint typecheck compose-check pytest

# Unit and API tests on SQLite but the slow few: no PostgreSQL, browser, server or site processes; two workers.
test-fast: $(STAMP)
	$(BIN)/pytest -q -n 2 -m "(unit or api) and not postgres and not slow" tests/unit tests/api

bench: $(STAMP) system-deps
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.media_images
	$(BIN)/python -m bench.rural_link
	$(BIN)/python -m bench.console_flow

# Remakes the README's screenshots (a browser test that otherwise writes to a temporary folder).
screenshots: $(STAMP) system-deps
	TP_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q tests/browser/test_screenshots.py

clean:
	rm -rf $(VENV) $(DATA)
