"""Settings of the job system: Redis and Dramatiq, workers, recovery, limits, job types, metrics."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import (
    env_bool,
    env_host_ports,
    env_int,
    env_list,
    env_networks,
    env_str,
)
from toolboxai.settings.base import DEBUG

# --- Redis and Dramatiq -----------------------------------------------------
# redis://[:password@]host:port/db, or rediss://... for TLS (certificates always verified).
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
# TLS material for rediss:// (and TLS Sentinels): the CA that signed the server's
# certificate (empty: the system's CAs), and an optional client certificate and key.
REDIS_TLS_CA_FILE = env_str("REDIS_TLS_CA_FILE", "")
REDIS_TLS_CERT_FILE = env_str("REDIS_TLS_CERT_FILE", "")
REDIS_TLS_KEY_FILE = env_str("REDIS_TLS_KEY_FILE", "")
# Redis Sentinel: "host:port,host:port". When set, the master comes from the
# Sentinels, and REDIS_URL supplies only the password, database number and scheme.
REDIS_SENTINELS = env_host_ports("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = env_str("REDIS_SENTINEL_MASTER", "mymaster")
# Password (and ACL user) of the Sentinels themselves, when they require one.
REDIS_SENTINEL_USERNAME = env_str("REDIS_SENTINEL_USERNAME", "")
REDIS_SENTINEL_PASSWORD = env_str("REDIS_SENTINEL_PASSWORD", "")

# Worker pool size for `manage.py rundramatiq` (flags override these).
JOBS_WORKER_PROCESSES = env_int("JOBS_WORKER_PROCESSES", 2, minimum=1)
JOBS_WORKER_THREADS = env_int("JOBS_WORKER_THREADS", 8, minimum=1)
# How long an idle consumer waits between polls of Redis, at most.
JOBS_WORKER_POLL_MS = env_int("JOBS_WORKER_POLL_MS", 100, minimum=5)
# Enqueuers publish each filled queue's name on a Redis pub/sub channel and idle
# workers wait for it instead of polling (jobs/wakeups.py). 0: poll only.
JOBS_WORKER_WAKEUPS = env_bool("JOBS_WORKER_WAKEUPS", True)
# With wake-ups, how often an idle consumer fetches anyway (bounds a lost notification).
JOBS_WORKER_WAKEUP_POLL_MS = env_int("JOBS_WORKER_WAKEUP_POLL_MS", 1_000, minimum=5)
# This machine's name on the attempts its workers run (empty: the host name). A worker
# starting on a host recovers at once the jobs of that host's dead workers, so it must be
# unique per machine (or per container with its own process table).
JOBS_WORKER_HOST = env_str("JOBS_WORKER_HOST", "")
# How long SIGTERM waits for jobs in flight before the worker exits.
JOBS_WORKER_SHUTDOWN_TIMEOUT_MS = env_int("JOBS_WORKER_SHUTDOWN_TIMEOUT_MS", 30_000, minimum=0)
# Worker recycling: a worker process that has started this many jobs, or whose resident
# memory is over this many MiB after a job, stops fetching, finishes what it runs, hands
# back what it fetched, exits and is replaced by a fresh one (0: no limit).
JOBS_WORKER_MAX_JOBS = env_int("JOBS_WORKER_MAX_JOBS", 0, minimum=0)
JOBS_WORKER_MAX_RSS_MB = env_int("JOBS_WORKER_MAX_RSS_MB", 0, minimum=0)
# Redis key prefix of the broker, so several deployments can share one Redis.
JOBS_REDIS_NAMESPACE = env_str("JOBS_REDIS_NAMESPACE", "dramatiq")
# A worker whose heartbeat is older than this is dead; its messages are requeued.
# With the recovery interval this bounds recovery after a `kill -9` (docs/reliability.md).
JOBS_HEARTBEAT_TIMEOUT_MS = env_int("JOBS_HEARTBEAT_TIMEOUT_MS", 30_000, minimum=1_000)
# --- Recovery (jobs/services/recovery.py, `manage.py recover`) ---
# How often the recovery loop runs a pass.
JOBS_RECOVERY_INTERVAL_MS = env_int("JOBS_RECOVERY_INTERVAL_MS", 5_000, minimum=50)
# Most rows or workers one pass handles per step; the rest wait for the next pass.
JOBS_RECOVERY_BATCH_SIZE = env_int("JOBS_RECOVERY_BATCH_SIZE", 500, minimum=1)
# A queued row that has not reached Redis this long after it was created is re-sent.
JOBS_OUTBOX_GRACE_MS = env_int("JOBS_OUTBOX_GRACE_MS", 10_000, minimum=0)
# How long a process's outbox forgetter gathers sent submissions' outbox rows before it
# deletes them in one statement (jobs/services/outbox.py).
JOBS_OUTBOX_DELETE_LINGER_MS = env_int("JOBS_OUTBOX_DELETE_LINGER_MS", 20, minimum=0)
# A job whose worker died this many times while running it fails as a poison message.
JOBS_POISON_THRESHOLD = env_int("JOBS_POISON_THRESHOLD", 3, minimum=1)
# Prepare the worker's ledger statements on the server (set 0 behind a transaction-mode
# pooler that cannot keep prepared statements, such as PgBouncer before 1.21).
JOBS_LEDGER_PREPARED_STATEMENTS = env_bool("JOBS_LEDGER_PREPARED_STATEMENTS", True)
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
# Deepest nesting of objects and lists in a payload (400 beyond it). At most 200:
# validation, JSON encoding, redaction and rendering recurse a few frames per
# level, and Python's recursion limit (1,000 frames) must stay out of reach.
JOBS_MAX_PAYLOAD_DEPTH = env_int("JOBS_MAX_PAYLOAD_DEPTH", 64, minimum=1, maximum=200)
JOBS_MAX_RESULT_BYTES = env_int("JOBS_MAX_RESULT_BYTES", 64 * 1024, minimum=1)

# --- Scheduler (manage.py periodiq) ------------------------------------------
# Leader lock: one scheduler at a time holds it; another takes over when it expires.
JOBS_SCHEDULER_LOCK_TTL_MS = env_int("JOBS_SCHEDULER_LOCK_TTL_MS", 30_000, minimum=1_000)
# How often a scheduler wakes up (leader: due ticks; standby: try the lock).
JOBS_SCHEDULER_POLL_MS = env_int("JOBS_SCHEDULER_POLL_MS", 500, minimum=10)
# After downtime, the most recent missed tick still runs if it is at most this late.
JOBS_SCHEDULER_MISSED_RUN_GRACE_MS = env_int(
    "JOBS_SCHEDULER_MISSED_RUN_GRACE_MS", 3_600_000, minimum=0
)

# --- ToolBoxAI job types -------------------------------------------------------
# Retention of job history (cleanup.remove_old_jobs), in days.
JOBS_RETENTION_DAYS = env_int("JOBS_RETENTION_DAYS", 30, minimum=1)
JOBS_FAILED_RETENTION_DAYS = env_int("JOBS_FAILED_RETENTION_DAYS", 90, minimum=1)
JOBS_CLEANUP_BATCH_SIZE = env_int("JOBS_CLEANUP_BATCH_SIZE", 1_000, minimum=1)
# Pause between two delete batches, leaving Postgres to the live work.
JOBS_CLEANUP_PAUSE_MS = env_int("JOBS_CLEANUP_PAUSE_MS", 100, minimum=0)

# content.generate_lesson: any OpenAI-compatible chat completions server.
OPENAI_API_KEY = env_str("OPENAI_API_KEY", "")
OPENAI_MODEL = env_str("OPENAI_MODEL", "gpt-4o-mini")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_TIMEOUT_MS = env_int("OPENAI_TIMEOUT_MS", 120_000, minimum=1_000)

# email.send_transactional: SendGrid when SENDGRID_API_KEY is set, else SMTP.
SENDGRID_API_KEY = env_str("SENDGRID_API_KEY", "")
SENDGRID_HOST = env_str("SENDGRID_HOST", "https://api.sendgrid.com")
EMAIL_FROM = env_str("EMAIL_FROM", "ToolBoxAI <no-reply@toolboxai.local>")
EMAIL_RATE_LIMIT_PER_MINUTE = env_int("EMAIL_RATE_LIMIT_PER_MINUTE", 100, minimum=1)
EMAIL_TIMEOUT_MS = env_int("EMAIL_TIMEOUT_MS", 30_000, minimum=1_000)
# Django 6.1 configures email through MAILERS (the EMAIL_* settings are deprecated).
MAILERS = {
    "default": {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": env_str("SMTP_HOST", "localhost"),
            "port": env_int("SMTP_PORT", 25, minimum=1),
            "username": env_str("SMTP_USER", ""),
            "password": env_str("SMTP_PASSWORD", ""),
            "use_tls": env_bool("SMTP_USE_TLS", False),
            "timeout": EMAIL_TIMEOUT_MS / 1000,
        },
    }
}
DEFAULT_FROM_EMAIL = EMAIL_FROM

# roblox.publish_message: Roblox Open Cloud Messaging Service.
ROBLOX_API_KEY = env_str("ROBLOX_API_KEY", "")
ROBLOX_BASE_URL = env_str("ROBLOX_BASE_URL", "https://apis.roblox.com")
ROBLOX_TIMEOUT_MS = env_int("ROBLOX_TIMEOUT_MS", 30_000, minimum=1_000)
# --- Admin ------------------------------------------------------------------
# Extra words that mark a payload/result key as secret (password, secret, token,
# api_key, authorization, ... are always redacted).
JOBS_REDACT_KEYS = env_list("JOBS_REDACT_KEYS", [])
# Above this many (estimated) rows the job list shows Postgres's estimate, not COUNT(*).
JOBS_ADMIN_EXACT_COUNT_LIMIT = env_int("JOBS_ADMIN_EXACT_COUNT_LIMIT", 10_000, minimum=0)
# How often the admin dashboard updates itself in place (it fetches its live part).
JOBS_DASHBOARD_REFRESH_SECONDS = env_int("JOBS_DASHBOARD_REFRESH_SECONDS", 15, minimum=2)
# Failed admin logins: after this many for one username, or from one address, within the
# window (counted from the first failure), that username or address gets HTTP 429 until
# the window has passed. Counted in Redis, so every web process sees the same numbers.
ADMIN_LOGIN_MAX_FAILURES = env_int("ADMIN_LOGIN_MAX_FAILURES", 5, minimum=1)
ADMIN_LOGIN_WINDOW_SECONDS = env_int("ADMIN_LOGIN_WINDOW_SECONDS", 900, minimum=1)
# The address is REMOTE_ADDR, which behind a reverse proxy is the proxy's (gunicorn does not
# rewrite it). 1 behind a proxy that appends the client's address to X-Forwarded-For (nginx:
# $proxy_add_x_forwarded_for): then that last address counts. Never 1 without such a proxy.
ADMIN_LOGIN_TRUST_X_FORWARDED_FOR = env_bool("ADMIN_LOGIN_TRUST_X_FORWARDED_FOR", False)

# --- django.tasks -----------------------------------------------------------
# Every app's @task runs on our workers, as a ledger job (docs/django-tasks.md).
TASKS = {
    "default": {
        "BACKEND": "jobs.backends.DramatiqBackend",
        "QUEUES": [],  # [] allows every queue the workers consume
        "OPTIONS": {"enqueue_on_commit": True, "max_retries": 0},
    }
}
# --- Metrics ----------------------------------------------------------------
# Port (and address) of the worker's Prometheus exporter, served by `rundramatiq`.
# Loopback unless configured: beyond it the exporter needs METRICS_TOKEN or
# METRICS_ALLOWED_NETWORKS in production (docker-compose.yml sets 0.0.0.0 and a token).
PROMETHEUS_PORT = env_int("PROMETHEUS_PORT", 9540, minimum=0)
PROMETHEUS_HOST = env_str("PROMETHEUS_HOST", "127.0.0.1")
# Who may read /metrics (the web's, and a worker exporter's beyond loopback): a request with
# `Authorization: Bearer <METRICS_TOKEN>`, or from one of METRICS_ALLOWED_NETWORKS (the
# connecting address, REMOTE_ADDR: behind a proxy, the proxy's). Development: loopback.
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
METRICS_ALLOWED_NETWORKS = env_networks(
    "METRICS_ALLOWED_NETWORKS", ["127.0.0.0/8", "::1/128"] if DEBUG else []
)
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
