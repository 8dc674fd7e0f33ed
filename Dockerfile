# syntax=docker/dockerfile:1
# toolboxai jobs: one image for every process (web, events, workers, scheduler).
# Build:  docker compose build   (or: docker build -t toolboxai/jobs .)
# No secret is baked in: settings come from the environment at run time.

ARG PYTHON_IMAGE=python:3.12-slim

# --- build: install the dependencies declared in pyproject.toml into a venv --------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Only pyproject.toml first, so the dependency layer is rebuilt only when it changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && /opt/venv/bin/pip install --upgrade pip \
    && /opt/venv/bin/pip install -r requirements.txt

# --- runtime -------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="toolboxai jobs" \
      org.opencontainers.image.description="Django + Dramatiq background jobs with a Postgres ledger"
# Non-root users of the spec: 1005 workers, 1006 scheduler, 1007 web (compose picks per service).
# They share the group 1005; the code is owned by root and only readable by them.
RUN groupadd --system --gid 1005 toolboxai \
    && useradd --system --uid 1005 --gid 1005 --no-create-home --shell /usr/sbin/nologin toolboxai-worker \
    && useradd --system --uid 1006 --gid 1005 --no-create-home --shell /usr/sbin/nologin toolboxai-scheduler \
    && useradd --system --uid 1007 --gid 1005 --no-create-home --shell /usr/sbin/nologin toolboxai-web
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DJANGO_SETTINGS_MODULE=toolboxai.settings \
    DJANGO_STATIC_ROOT=/app/static \
    TOOLBOXAI_STATE_DIR=/tmp/toolboxai \
    HOME=/tmp
WORKDIR /app
COPY manage.py gunicorn.conf.py ./
COPY toolboxai ./toolboxai
COPY jobs ./jobs
COPY tenants ./tenants
# Byte-compile now (the root filesystem may be read-only at run time) and collect the
# static files WhiteNoise serves. DEBUG=1 here only lets settings load without a secret;
# no database or Redis is contacted.
RUN python -m compileall -q /app \
    && DJANGO_DEBUG=1 DATABASE_URL=sqlite:////tmp/build.sqlite3 python manage.py collectstatic --no-input -v 0 \
    && rm -f /tmp/build.sqlite3
USER 1007:1005
# 8000: the web server (threaded WSGI). 8001: the events service, the same image with
#   gunicorn toolboxai.asgi:application -k uvicorn_worker.UvicornWorker --bind 0.0.0.0:8001
# (compose's `events`), which serves the event streams deploy/nginx/toolboxai.conf sends it.
EXPOSE 8000 8001
# The web server; compose overrides the command for events, workers and the scheduler.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': 'localhost'}), timeout=4)"]
CMD ["gunicorn", "toolboxai.wsgi:application", "--bind", "0.0.0.0:8000"]
