"""Django settings for toolboxai jobs.

Every value comes from the environment, with embedded defaults that make
``make run`` work on a fresh machine (SQLite plus a local Redis). This is the
only module that reads the environment; README.md documents every variable.
"""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(env_str("TOOLBOXAI_STATE_DIR", str(BASE_DIR / ".state")))

INSECURE_DEFAULT_SECRET_KEY = "django-insecure-toolboxai-development-only-key-change-me"  # noqa: S105
SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", True)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "tenants",
    "jobs",
]

MIDDLEWARE = [
    # First and last: request count and latency for /metrics (django-prometheus).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "toolboxai.urls"
WSGI_APPLICATION = "toolboxai.wsgi.application"
ASGI_APPLICATION = "toolboxai.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL", f"sqlite:///{STATE_DIR / 'db.sqlite3'}"), base_dir=BASE_DIR
    )
}
# django-prometheus's wrappers of the same backends count queries and errors for /metrics.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# Workers keep their connection between messages; the DB-connections
# middleware closes it when it is older than this or broken.
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 60, minimum=0)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(STATE_DIR / "static")))

# --- Redis and Dramatiq -----------------------------------------------------
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")

# Worker pool size for `manage.py rundramatiq` (flags override these).
JOBS_WORKER_PROCESSES = env_int("JOBS_WORKER_PROCESSES", 2, minimum=1)
JOBS_WORKER_THREADS = env_int("JOBS_WORKER_THREADS", 8, minimum=1)
# How long an idle consumer waits between polls of Redis, at most.
JOBS_WORKER_POLL_MS = env_int("JOBS_WORKER_POLL_MS", 100, minimum=5)
# How long SIGTERM waits for jobs in flight before the worker exits.
JOBS_WORKER_SHUTDOWN_TIMEOUT_MS = env_int("JOBS_WORKER_SHUTDOWN_TIMEOUT_MS", 30_000, minimum=0)
# Redis key prefix of the broker, so several deployments can share one Redis.
JOBS_REDIS_NAMESPACE = env_str("JOBS_REDIS_NAMESPACE", "dramatiq")
# A worker whose heartbeat is older than this is dead; its messages are requeued.
# With the recovery interval this bounds recovery after a `kill -9` (about 35 s).
JOBS_HEARTBEAT_TIMEOUT_MS = env_int("JOBS_HEARTBEAT_TIMEOUT_MS", 30_000, minimum=1_000)
# --- Recovery (jobs/recovery.py, `manage.py recover`) ---
# How often the recovery loop runs a pass.
JOBS_RECOVERY_INTERVAL_MS = env_int("JOBS_RECOVERY_INTERVAL_MS", 5_000, minimum=50)
# Most rows or workers one pass handles per step; the rest wait for the next pass.
JOBS_RECOVERY_BATCH_SIZE = env_int("JOBS_RECOVERY_BATCH_SIZE", 500, minimum=1)
# A queued row that has not reached Redis this long after it was created is re-sent.
JOBS_OUTBOX_GRACE_MS = env_int("JOBS_OUTBOX_GRACE_MS", 10_000, minimum=0)
# A job whose worker died this many times while running it fails as a poison message.
JOBS_POISON_THRESHOLD = env_int("JOBS_POISON_THRESHOLD", 3, minimum=1)
# How long Redis keeps dead-lettered messages (the ledger keeps them for good).
JOBS_DEAD_MESSAGE_TTL_MS = env_int("JOBS_DEAD_MESSAGE_TTL_MS", 7 * 86_400_000, minimum=60_000)

# Defaults for every job type; each type may override them.
JOBS_DEFAULT_MAX_RETRIES = env_int("JOBS_DEFAULT_MAX_RETRIES", 3, minimum=0)
JOBS_DEFAULT_MIN_BACKOFF_MS = env_int("JOBS_DEFAULT_MIN_BACKOFF_MS", 2_000, minimum=1)
JOBS_DEFAULT_MAX_BACKOFF_MS = env_int("JOBS_DEFAULT_MAX_BACKOFF_MS", 300_000, minimum=1)
JOBS_DEFAULT_TIME_LIMIT_MS = env_int("JOBS_DEFAULT_TIME_LIMIT_MS", 300_000, minimum=1)
JOBS_DEFAULT_SOFT_TIME_LIMIT_MS = env_int("JOBS_DEFAULT_SOFT_TIME_LIMIT_MS", 240_000, minimum=1)
# Messages older than this (since enqueue) are dead-lettered without running.
JOBS_DEFAULT_MAX_AGE_MS = env_int("JOBS_DEFAULT_MAX_AGE_MS", 7 * 86_400_000, minimum=1_000)

# How long a worker caches an organization's active flag and concurrency cap.
JOBS_FAIRNESS_CACHE_SECONDS = env_int("JOBS_FAIRNESS_CACHE_SECONDS", 5, minimum=0)
# How long a job over its organization's concurrency cap waits before another try.
JOBS_FAIRNESS_DEFER_MS = env_int("JOBS_FAIRNESS_DEFER_MS", 1_000, minimum=10)

JOBS_MAX_PAYLOAD_BYTES = env_int("JOBS_MAX_PAYLOAD_BYTES", 256 * 1024, minimum=1)
JOBS_MAX_RESULT_BYTES = env_int("JOBS_MAX_RESULT_BYTES", 64 * 1024, minimum=1)

# --- django.tasks -----------------------------------------------------------
# Every app's @task runs on our workers, as a ledger job (README, "Django tasks").
TASKS = {
    "default": {
        "BACKEND": "jobs.backends.DramatiqBackend",
        "QUEUES": [],  # [] allows every queue the workers consume
        "OPTIONS": {"enqueue_on_commit": True, "max_retries": 0},
    }
}
# --- Metrics ----------------------------------------------------------------
# Port (and address) of the worker's Prometheus exporter, served by `rundramatiq`.
PROMETHEUS_PORT = env_int("PROMETHEUS_PORT", 9540, minimum=0)
PROMETHEUS_HOST = env_str("PROMETHEUS_HOST", "0.0.0.0")  # noqa: S104
# Where the worker processes of one `rundramatiq` share their counters; emptied at start.
# Empty: a directory under the system temp dir, one per PROMETHEUS_PORT.
JOBS_METRICS_DIR = env_str("JOBS_METRICS_DIR", "")
# Organization ids that get their own `organization` label on job metrics (others: "other").
# Empty: job metrics have no organization label at all (cardinality).
_metrics_org_ids = env_list("JOBS_METRICS_ORGANIZATION_IDS", [])
if not all(v.isdigit() for v in _metrics_org_ids):
    raise ImproperlyConfigured(
        f"JOBS_METRICS_ORGANIZATION_IDS={','.join(_metrics_org_ids)!r} must be comma-separated "
        "organization ids (numbers), e.g. 12,34."
    )
JOBS_METRICS_ORGANIZATION_IDS = [int(v) for v in _metrics_org_ids]

# --- Logging ---------------------------------------------------------------
LOG_LEVEL = env_str("LOG_LEVEL", "INFO").upper()
LOG_FORMAT = env_str("LOG_FORMAT", "text" if DEBUG else "json").lower()

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "job_context": {"()": "jobs.logging.JobContextFilter"},
        "deferred_skips": {"()": "jobs.logging.DeferredSkipFilter"},
        "redact_secrets": {"()": "jobs.logging.RedactSecretsFilter"},
    },
    "formatters": {
        "text": {
            "format": "%(asctime)s %(levelname)s %(name)s [job=%(job_id)s org=%(organization_id)s] %(message)s",
        },
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in {"text", "json"} else "text",
            "filters": ["job_context", "deferred_skips", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
    },
}
