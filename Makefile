# toolboxai jobs — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Test services: real Postgres and Redis (a dedicated Redis database number).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/toolboxai
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install browser nginx run test test-fast lint format migrate clean compose-check monitoring-check soak chaos measure-recovery bench bench-profile docs docs-build docs-screenshots docs-mermaid schema schema-check schema-validate

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "No Python 3.12+ found; run 'make PYTHON=/path/to/python3.12 $(MAKECMDGOALS)'." >&2; exit 1; }
	@echo "Installing into $(VENV) with $(PYTHON)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,run]'
	@touch $(STAMP)

# The Chromium the admin browser test drives through Playwright: one on PATH if there is
# one; else apt-get's, when root on Debian or Ubuntu; else Playwright's download
# (tests/browser.py). Prints which it uses.
browser: install
	@$(PY) -m tests.browser

# The events-service tests run Debian's nginx with deploy/nginx/toolboxai.conf (the path split).
nginx:
	@command -v nginx >/dev/null || test -x /usr/sbin/nginx || { \
		echo "Installing Debian's nginx-light for the path-split test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light; }

run: install
	@$(PY) scripts/dev.py

# Four test processes on two cores: most end-to-end tests wait on the processes they start.
test: install browser nginx
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest -n 4 --dist loadfile $(PYTEST_ARGS)

# The 2,000-job kill -9 soak alone (it also runs in `make test`).
soak: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) -m pytest -s -m soak $(PYTEST_ARGS)

# The chaos scenarios' full form: 2,000 jobs through a Postgres restart, a Sentinel failover and
# network cuts, on private servers; prints a table (the short form runs in `make test`).
chaos: install
	@$(PY) scripts/chaos.py $(CHAOS_ARGS)

# Recovery time after kill -9 with production defaults (median of 3 runs; a few minutes).
measure-recovery: install
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} REDIS_URL=$${REDIS_URL:-$(TEST_REDIS_URL)} \
		$(PY) scripts/measure_recovery.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run
	@$(MAKE) --no-print-directory compose-check
	@$(MAKE) --no-print-directory monitoring-check
	@$(MAKE) --no-print-directory schema-check
	@$(MAKE) --no-print-directory schema-validate
	@$(MAKE) --no-print-directory docs-build

# Parses docker-compose.yml with Debian's docker-compose (no Docker engine needed), with
# .env.example as the .env: once with the secrets filled in (must pass), once without
# (must refuse, naming the secret). Installs docker-compose when it is missing.
COMPOSE_SECRETS := DJANGO_SECRET_KEY=compose-check POSTGRES_PASSWORD=compose-check REDIS_PASSWORD=compose-check METRICS_TOKEN=compose-check
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

# Prometheus's own checks, with Debian's promtool (installed when missing): the alert rules
# and the scrape config of deploy/monitoring/, then `promtool check metrics` on a live
# scrape of the web's and a worker's /metrics (scripts/monitoring_check.py: a scratch
# database on DATABASE_URL's server, a private Redis).
monitoring-check: install
	@command -v promtool >/dev/null 2>&1 || { \
		echo "Installing Debian's prometheus (for promtool)"; \
		apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; }
	@promtool check rules deploy/monitoring/alerts.yml
	@promtool check config --syntax-only deploy/monitoring/prometheus.yml
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) scripts/monitoring_check.py

# The docs site (mkdocs.yml, docs/), served with live reload on http://127.0.0.1:$(DOCS_PORT)/.
DOCS_PORT ?= 8001
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

# The site built as CI builds it, into a temporary directory: a broken link or anchor,
# or a page missing from the nav, fails.
docs-build: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet --site-dir "$$tmp/site" && \
		echo "docs: built ($$(find "$$tmp/site" -name index.html | wc -l) pages)"

# Screenshots of the admin for the docs (docs/img/*.png): starts a private Redis, a
# scratch database on DATABASE_URL's server, the web server and a worker, then Chromium.
docs-screenshots: install browser
	@DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} $(PY) scripts/docs_screenshots.py

# The Mermaid the docs site renders its diagrams with, vendored from the npm registry so
# that reading the site fetches nothing (Material uses it instead of its CDN copy).
MERMAID_VERSION ?= 11.17.2
docs-mermaid:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		(cd "$$tmp" && npm pack --silent mermaid@$(MERMAID_VERSION) >/dev/null && tar xzf mermaid-*.tgz) && \
		cp "$$tmp/package/dist/mermaid.min.js" "$$tmp/package/LICENSE" docs/assets/vendor/mermaid/ && \
		echo "mermaid $(MERMAID_VERSION) (npm), dist/mermaid.min.js" > docs/assets/vendor/mermaid/VERSION
	@cat docs/assets/vendor/mermaid/VERSION

# docs/api/openapi.yaml, the schema drf-spectacular generates from the code.
SCHEMA_ENV := DJANGO_SETTINGS_MODULE=toolboxai.settings DJANGO_DEBUG=1
schema: install
	@env $(SCHEMA_ENV) $(PY) manage.py spectacular --validate --file docs/api/openapi.yaml
	@echo "docs/api/openapi.yaml: regenerated"

# Fails when the committed schema is not what the code serves (run `make schema`).
schema-check: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		env $(SCHEMA_ENV) $(PY) manage.py spectacular --validate --file "$$tmp/openapi.yaml" && \
		if ! diff -u docs/api/openapi.yaml "$$tmp/openapi.yaml" >"$$tmp/diff"; then \
			head -60 "$$tmp/diff" >&2; \
			echo "docs/api/openapi.yaml is not the schema the code serves: run 'make schema' and commit it." >&2; \
			exit 1; \
		fi
	@echo "docs/api/openapi.yaml: matches the code"

# docs/api/openapi.yaml, and the JSON form the server serves at /api/v1/schema/?format=json,
# checked against the OpenAPI 3 specification by openapi-spec-validator.
schema-validate: install
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		env $(SCHEMA_ENV) $(PY) manage.py spectacular --format openapi-json --file "$$tmp/openapi.json" && \
		$(VENV)/bin/openapi-spec-validator docs/api/openapi.yaml "$$tmp/openapi.json"

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: install
	$(PY) manage.py migrate

# Benchmark against raw Dramatiq, Celery and Huey, over loopback and through a 0.5 ms
# proxy (bench/README.md; options in BENCH_ARGS, e.g. "--scale 0.1 --rounds 1"). Celery,
# django-celery-results and Huey go only into this separate environment, never the project's.
BENCH_VENV ?= .venv-bench
BENCH_PY := $(BENCH_VENV)/bin/python
BENCH_STAMP := $(BENCH_VENV)/.installed
BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tbx_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/8

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
