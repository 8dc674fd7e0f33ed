# toolboxai jobs — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Test services: real Postgres and Redis (a dedicated Redis database number).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/toolboxai
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-fast lint format migrate clean bench bench-profile

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found; run 'make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)'." >&2; exit 1; }
	@echo "Installing into $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,run]'
	@touch $(STAMP)

run: install
	@$(PY) scripts/dev.py

test: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) manage.py migrate

# Benchmark against raw Dramatiq and Celery (README, "Benchmark"). Celery and
# django-celery-results go only into this separate environment, never the project's.
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tbx_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/12

$(BENCH_STAMP): pyproject.toml bench/requirements.txt
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found; run 'make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)'." >&2; exit 1; }
	@echo "Installing the bench environment into $(BENCH_VENV) with $(PYTHON)"
	@test -x $(BENCH_PY) || $(PYTHON) -m venv $(BENCH_VENV)
	@$(BENCH_PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BENCH_PY) -m pip install --quiet --disable-pip-version-check -e . -r bench/requirements.txt
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	@BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) \
		$(BENCH_PY) -m bench.run $(BENCH_ARGS)

bench-profile: $(BENCH_STAMP)
	@BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) BENCH_REDIS_URL=$(BENCH_REDIS_URL) \
		$(BENCH_PY) -m bench.run --profile $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(BENCH_VENV) .state .pytest_cache .mypy_cache .ruff_cache
