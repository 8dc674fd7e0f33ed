# toolboxai jobs — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Test services: real Postgres and Redis (a dedicated Redis database number).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/toolboxai
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run test test-fast lint format migrate clean soak measure-recovery

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

# The 2,000-job kill -9 soak alone (it also runs in `make test`).
soak: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest -s -m soak $(PYTEST_ARGS)

# Recovery time after kill -9 with production defaults (median of 3 runs; a few minutes).
measure-recovery: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) scripts/measure_recovery.py

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

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
