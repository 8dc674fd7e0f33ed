# toolboxai jobs — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Test services: real Postgres and Redis (a dedicated Redis database number).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/toolboxai
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install browser run test test-fast lint format migrate clean compose-check

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found; run 'make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)'." >&2; exit 1; }
	@echo "Installing into $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,run]'
	@touch $(STAMP)

# The admin browser test drives Debian's chromium through Playwright (no downloaded browser).
browser:
	@command -v chromium >/dev/null || { \
		echo "Installing Debian's chromium for the admin browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

run: install
	@$(PY) scripts/dev.py

test: install browser
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	@$(MAKE) --no-print-directory compose-check

# Parses docker-compose.yml with Debian's docker-compose (no Docker engine needed), with
# .env.example as the .env: once with the secrets filled in (must pass), once without
# (must refuse, naming the secret). Installs docker-compose when it is missing.
COMPOSE_SECRETS := DJANGO_SECRET_KEY=compose-check POSTGRES_PASSWORD=compose-check REDIS_PASSWORD=compose-check
compose-check:
	@command -v docker-compose >/dev/null 2>&1 || { \
		echo "Installing Debian's docker-compose (to validate docker-compose.yml)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; }
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		cp docker-compose.yml "$$tmp/" && cp .env.example "$$tmp/.env" && cd "$$tmp" && \
		env $(COMPOSE_SECRETS) docker-compose -f docker-compose.yml config -q && \
		if docker-compose -f docker-compose.yml config -q 2>err.txt \
			|| ! grep -q "Set [A-Z_]* in .env" err.txt; then \
			echo "docker-compose.yml must refuse to start while a secret of .env.example is empty." >&2; \
			cat err.txt >&2; exit 1; \
		fi
	@echo "docker-compose.yml: valid ($$(docker-compose version --short))"

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) manage.py migrate

clean:
	rm -rf $(VENV) .state .pytest_cache .mypy_cache .ruff_cache
