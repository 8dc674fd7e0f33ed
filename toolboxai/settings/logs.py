"""Logging: text lines in development, JSON in production; every line redacted."""

from __future__ import annotations

from toolboxai.env import (
    env_str,
)
from toolboxai.settings.base import DEBUG

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
            # INFO and DEBUG lines written in batches by one thread; warnings at once (jobs.logging).
            "class": "jobs.logging.BatchingStreamHandler",
            "formatter": LOG_FORMAT if LOG_FORMAT in {"text", "json"} else "text",
            "filters": ["job_context", "deferred_skips", "redact_secrets"],
        },
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # Its DEBUG lines print request headers, the SendGrid API key included.
        "python_http_client": {"level": "INFO"},
    },
}
