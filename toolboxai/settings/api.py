"""Settings of the REST API (jobs/api, tenants/api): limits, streams, DRF and its schema."""

from __future__ import annotations

from toolboxai.env import (
    env_int,
    env_str,
)

# Largest request body the API reads, in bytes (413 above it). A batch of
# 1,000 small jobs fits in well under a megabyte.
API_MAX_BODY_BYTES = env_int("API_MAX_BODY_BYTES", 5 * 1024 * 1024, minimum=1024)
# Django's own limit on a body read into memory follows, so a body under
# API_MAX_BODY_BYTES is never refused by it (its default, 2.5 MiB, was lower).
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# Jobs per page of GET /api/v1/jobs/ (clients may ask for up to API_MAX_PAGE_SIZE).
API_PAGE_SIZE = env_int("API_PAGE_SIZE", 50, minimum=1)
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 500, minimum=1)
# How often the SSE stream reads the job's ledger row, and how long one stream
# may stay open before the client must reconnect (it replays the state then).
API_EVENTS_POLL_MS = env_int("API_EVENTS_POLL_MS", 250, minimum=20)
API_EVENTS_MAX_SECONDS = env_int("API_EVENTS_MAX_SECONDS", 3600, minimum=1)
# A comment line this often on an idle stream: writing to a client that left fails,
# which ends the stream and frees its thread and its slots.
API_EVENTS_HEARTBEAT_SECONDS = env_int("API_EVENTS_HEARTBEAT_SECONDS", 5, minimum=1)
# Open streams at once, across web processes (429 above). A browser follows a few jobs
# at once; each stream polls the ledger every API_EVENTS_POLL_MS (80 streams: 320
# queries/s), which is as much as one organization should impose.
API_EVENTS_MAX_STREAMS_PER_KEY = env_int("API_EVENTS_MAX_STREAMS_PER_KEY", 60, minimum=1)
API_EVENTS_MAX_STREAMS_PER_ORGANIZATION = env_int(
    "API_EVENTS_MAX_STREAMS_PER_ORGANIZATION", 80, minimum=1
)
# Threads of one web process (gunicorn.conf.py reads the same variable). On the threaded
# server each open stream holds one, so at most half of them stream; the rest serve
# other requests (/healthz, other tenants). The ASGI server streams without a thread.
WEB_THREADS = env_int("WEB_THREADS", 16, minimum=1)
API_EVENTS_MAX_STREAMS_PER_PROCESS = env_int(
    "API_EVENTS_MAX_STREAMS_PER_PROCESS", max(1, WEB_THREADS // 2), minimum=1
)
# Database connections of one async (ASGI) web process, shared by all its event streams:
# each ledger read borrows one for a short query (jobs/api/ledger_pool.py). Count them
# against Postgres's max_connections (docs/deployment.md).
API_EVENTS_DB_CONNECTIONS = env_int("API_EVENTS_DB_CONNECTIONS", 4, minimum=1)
# With no proxy in front (make run), the threaded web process relays the event-stream
# path to the events service at this URL (jobs/api/stream_forwarding.py); empty: it
# serves streams itself.
API_EVENTS_FORWARD_URL = env_str("API_EVENTS_FORWARD_URL", "")
# Retry-After of a 503 answered while Postgres or Redis is unreachable.
API_UNAVAILABLE_RETRY_AFTER_SECONDS = env_int("API_UNAVAILABLE_RETRY_AFTER_SECONDS", 5, minimum=1)
# How long a web process trusts an API key it looked up (with its organization's limits
# and active flag); a revocation takes effect in other processes within this time. 0: never.
API_KEY_CACHE_SECONDS = env_int("API_KEY_CACHE_SECONDS", 5, minimum=0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "tenants.api.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # An organization first (an inactive one answers 403 organization_inactive), then the
    # API key's scope for the operation (403 missing_scope).
    "DEFAULT_PERMISSION_CLASSES": [
        "jobs.api.permissions.HasOrganization",
        "jobs.api.permissions.HasScope",
    ],
    "DEFAULT_PARSER_CLASSES": ["jobs.api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": [
        "jobs.api.renderers.SafeJSONRenderer",
        "jobs.api.renderers.SafeBrowsableAPIRenderer",
    ],
    "DEFAULT_THROTTLE_CLASSES": [],
    "EXCEPTION_HANDLER": "jobs.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "toolboxai jobs API",
    "DESCRIPTION": (
        "Submit, follow, stream, cancel and retry background jobs. Authenticate with "
        "`Authorization: Bearer <api key>`. Every error has the shape "
        '`{"error": {"status", "code", "message", "fields"}}`.'
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "jobs.api.schema.add_error_responses",
    ],
}
