"""Typed access to the JOBS_* settings, read at call time.

Settings are read on every access rather than copied at import, so tests and
``override_settings`` see the value in force. Only ``toolboxai.settings`` reads
the environment; this accessor supplies the defaults when a setting is absent.
"""

from __future__ import annotations

import os
import socket
import tempfile
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Any

from django.conf import settings


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class JobsSettings:
    @property
    def redis_url(self) -> str:
        return str(_get("REDIS_URL", "redis://127.0.0.1:6379/0"))

    @property
    def redis_tls_ca_file(self) -> str:
        return str(_get("REDIS_TLS_CA_FILE", "") or "")

    @property
    def redis_tls_cert_file(self) -> str:
        return str(_get("REDIS_TLS_CERT_FILE", "") or "")

    @property
    def redis_tls_key_file(self) -> str:
        return str(_get("REDIS_TLS_KEY_FILE", "") or "")

    @property
    def redis_sentinels(self) -> list[tuple[str, int]]:
        return [(str(host), int(port)) for host, port in _get("REDIS_SENTINELS", [])]

    @property
    def redis_sentinel_master(self) -> str:
        return str(_get("REDIS_SENTINEL_MASTER", "mymaster"))

    @property
    def redis_sentinel_username(self) -> str:
        return str(_get("REDIS_SENTINEL_USERNAME", "") or "")

    @property
    def redis_sentinel_password(self) -> str:
        return str(_get("REDIS_SENTINEL_PASSWORD", "") or "")

    @property
    def redis_namespace(self) -> str:
        return str(_get("JOBS_REDIS_NAMESPACE", "dramatiq"))

    @property
    def worker_processes(self) -> int:
        return int(_get("JOBS_WORKER_PROCESSES", 2))

    @property
    def worker_threads(self) -> int:
        return int(_get("JOBS_WORKER_THREADS", 8))

    @property
    def worker_poll_ms(self) -> int:
        return int(_get("JOBS_WORKER_POLL_MS", 100))

    @property
    def worker_wakeups(self) -> bool:
        return bool(_get("JOBS_WORKER_WAKEUPS", True))

    @property
    def worker_wakeup_poll_ms(self) -> int:
        return int(_get("JOBS_WORKER_WAKEUP_POLL_MS", 1_000))

    @property
    def worker_shutdown_timeout_ms(self) -> int:
        return int(_get("JOBS_WORKER_SHUTDOWN_TIMEOUT_MS", 30_000))

    @property
    def worker_max_jobs(self) -> int:
        return int(_get("JOBS_WORKER_MAX_JOBS", 0))

    @property
    def worker_max_rss_mb(self) -> int:
        return int(_get("JOBS_WORKER_MAX_RSS_MB", 0))

    @property
    def worker_host(self) -> str:
        """This machine's name on attempts and worker entries (``JOBS_WORKER_HOST``, else the host name)."""
        return str(_get("JOBS_WORKER_HOST", "") or "") or socket.gethostname()

    @property
    def heartbeat_timeout_ms(self) -> int:
        return int(_get("JOBS_HEARTBEAT_TIMEOUT_MS", 30_000))

    @property
    def recovery_interval_ms(self) -> int:
        return int(_get("JOBS_RECOVERY_INTERVAL_MS", 5_000))

    @property
    def recovery_batch_size(self) -> int:
        return int(_get("JOBS_RECOVERY_BATCH_SIZE", 500))

    @property
    def outbox_grace_ms(self) -> int:
        return int(_get("JOBS_OUTBOX_GRACE_MS", 10_000))

    @property
    def outbox_delete_linger_ms(self) -> int:
        return int(_get("JOBS_OUTBOX_DELETE_LINGER_MS", 20))

    @property
    def ledger_prepared_statements(self) -> bool:
        return bool(_get("JOBS_LEDGER_PREPARED_STATEMENTS", True))

    @property
    def poison_threshold(self) -> int:
        return int(_get("JOBS_POISON_THRESHOLD", 3))

    @property
    def dead_message_ttl_ms(self) -> int:
        return int(_get("JOBS_DEAD_MESSAGE_TTL_MS", 7 * 86_400_000))

    @property
    def default_max_retries(self) -> int:
        return int(_get("JOBS_DEFAULT_MAX_RETRIES", 3))

    @property
    def default_min_backoff_ms(self) -> int:
        return int(_get("JOBS_DEFAULT_MIN_BACKOFF_MS", 2_000))

    @property
    def default_max_backoff_ms(self) -> int:
        return int(_get("JOBS_DEFAULT_MAX_BACKOFF_MS", 300_000))

    @property
    def default_time_limit_ms(self) -> int:
        return int(_get("JOBS_DEFAULT_TIME_LIMIT_MS", 300_000))

    @property
    def default_soft_time_limit_ms(self) -> int:
        return int(_get("JOBS_DEFAULT_SOFT_TIME_LIMIT_MS", 240_000))

    @property
    def default_max_age_ms(self) -> int:
        return int(_get("JOBS_DEFAULT_MAX_AGE_MS", 7 * 86_400_000))

    @property
    def fairness_cache_seconds(self) -> float:
        return float(_get("JOBS_FAIRNESS_CACHE_SECONDS", 5))

    @property
    def fairness_defer_ms(self) -> int:
        return int(_get("JOBS_FAIRNESS_DEFER_MS", 1_000))

    @property
    def max_payload_bytes(self) -> int:
        return int(_get("JOBS_MAX_PAYLOAD_BYTES", 256 * 1024))

    @property
    def max_payload_depth(self) -> int:
        return int(_get("JOBS_MAX_PAYLOAD_DEPTH", 64))

    @property
    def max_result_bytes(self) -> int:
        return int(_get("JOBS_MAX_RESULT_BYTES", 64 * 1024))

    # --- Scheduler -------------------------------------------------------------
    @property
    def scheduler_lock_ttl_ms(self) -> int:
        return int(_get("JOBS_SCHEDULER_LOCK_TTL_MS", 30_000))

    @property
    def scheduler_poll_ms(self) -> int:
        return int(_get("JOBS_SCHEDULER_POLL_MS", 500))

    @property
    def scheduler_missed_run_grace_ms(self) -> int:
        return int(_get("JOBS_SCHEDULER_MISSED_RUN_GRACE_MS", 3_600_000))

    # --- ToolBoxAI job types ---------------------------------------------------
    @property
    def retention_days(self) -> int:
        return int(_get("JOBS_RETENTION_DAYS", 30))

    @property
    def failed_retention_days(self) -> int:
        return int(_get("JOBS_FAILED_RETENTION_DAYS", 90))

    @property
    def cleanup_batch_size(self) -> int:
        return int(_get("JOBS_CLEANUP_BATCH_SIZE", 1_000))

    @property
    def cleanup_pause_ms(self) -> int:
        return int(_get("JOBS_CLEANUP_PAUSE_MS", 100))

    @property
    def openai_api_key(self) -> str:
        return str(_get("OPENAI_API_KEY", ""))

    @property
    def openai_model(self) -> str:
        return str(_get("OPENAI_MODEL", "gpt-4o-mini"))

    @property
    def openai_base_url(self) -> str:
        return str(_get("OPENAI_BASE_URL", "https://api.openai.com/v1"))

    @property
    def openai_timeout_ms(self) -> int:
        return int(_get("OPENAI_TIMEOUT_MS", 120_000))

    @property
    def sendgrid_api_key(self) -> str:
        return str(_get("SENDGRID_API_KEY", ""))

    @property
    def sendgrid_host(self) -> str:
        return str(_get("SENDGRID_HOST", "https://api.sendgrid.com"))

    @property
    def email_from(self) -> str:
        return str(_get("EMAIL_FROM", "ToolBoxAI <no-reply@toolboxai.local>"))

    @property
    def email_rate_limit_per_minute(self) -> int:
        return int(_get("EMAIL_RATE_LIMIT_PER_MINUTE", 100))

    @property
    def email_timeout_ms(self) -> int:
        return int(_get("EMAIL_TIMEOUT_MS", 30_000))

    @property
    def roblox_api_key(self) -> str:
        return str(_get("ROBLOX_API_KEY", ""))

    @property
    def roblox_base_url(self) -> str:
        return str(_get("ROBLOX_BASE_URL", "https://apis.roblox.com"))

    @property
    def roblox_timeout_ms(self) -> int:
        return int(_get("ROBLOX_TIMEOUT_MS", 30_000))

    @property
    def prometheus_port(self) -> int:
        return int(_get("PROMETHEUS_PORT", 9540))

    @property
    def prometheus_host(self) -> str:
        return str(_get("PROMETHEUS_HOST", "127.0.0.1"))

    @property
    def metrics_token(self) -> str:
        return str(_get("METRICS_TOKEN", "") or "")

    @property
    def metrics_allowed_networks(self) -> tuple[IPv4Network | IPv6Network, ...]:
        return tuple(ip_network(str(v)) for v in _get("METRICS_ALLOWED_NETWORKS", ()))

    @property
    def metrics_dir(self) -> str:
        """The worker's multiprocess metrics directory (one per exporter port by default)."""
        configured = str(_get("JOBS_METRICS_DIR", "") or "")
        if configured:
            return configured
        return os.path.join(
            tempfile.gettempdir(), f"toolboxai-worker-metrics-{self.prometheus_port}"
        )

    @property
    def metrics_organization_ids(self) -> frozenset[int]:
        return frozenset(int(v) for v in _get("JOBS_METRICS_ORGANIZATION_IDS", ()))

    @property
    def redact_keys(self) -> tuple[str, ...]:
        """Extra words that mark a key as secret (see ``jobs.redaction``)."""
        return tuple(map(str, _get("JOBS_REDACT_KEYS", ())))

    @property
    def admin_exact_count_limit(self) -> int:
        """Above this many estimated rows the admin list shows an estimate, not a COUNT(*)."""
        return int(_get("JOBS_ADMIN_EXACT_COUNT_LIMIT", 10_000))

    @property
    def dashboard_refresh_seconds(self) -> int:
        return int(_get("JOBS_DASHBOARD_REFRESH_SECONDS", 15))

    @property
    def admin_login_max_failures(self) -> int:
        return int(_get("ADMIN_LOGIN_MAX_FAILURES", 5))

    @property
    def admin_login_window_seconds(self) -> int:
        return int(_get("ADMIN_LOGIN_WINDOW_SECONDS", 900))

    @property
    def admin_login_trust_x_forwarded_for(self) -> bool:
        return bool(_get("ADMIN_LOGIN_TRUST_X_FORWARDED_FOR", False))

    @property
    def api_max_body_bytes(self) -> int:
        return int(_get("API_MAX_BODY_BYTES", 5 * 1024 * 1024))

    @property
    def api_page_size(self) -> int:
        return int(_get("API_PAGE_SIZE", 50))

    @property
    def api_max_page_size(self) -> int:
        return int(_get("API_MAX_PAGE_SIZE", 500))

    @property
    def api_events_poll_ms(self) -> int:
        return int(_get("API_EVENTS_POLL_MS", 250))

    @property
    def api_events_max_seconds(self) -> int:
        return int(_get("API_EVENTS_MAX_SECONDS", 3600))

    @property
    def api_events_heartbeat_seconds(self) -> int:
        return int(_get("API_EVENTS_HEARTBEAT_SECONDS", 5))

    @property
    def api_events_max_streams_per_key(self) -> int:
        return int(_get("API_EVENTS_MAX_STREAMS_PER_KEY", 60))

    @property
    def api_events_max_streams_per_organization(self) -> int:
        return int(_get("API_EVENTS_MAX_STREAMS_PER_ORGANIZATION", 80))

    @property
    def api_events_max_streams_per_process(self) -> int:
        """Streams one threaded (WSGI) web process serves at once: half its threads by default."""
        return int(
            _get("API_EVENTS_MAX_STREAMS_PER_PROCESS", max(1, int(_get("WEB_THREADS", 16)) // 2))
        )

    @property
    def api_events_db_connections(self) -> int:
        """Database connections (and threads) an async web process reads its streams' ledger with."""
        return int(_get("API_EVENTS_DB_CONNECTIONS", 4))

    @property
    def api_events_forward_url(self) -> str:
        """Where a threaded web process relays event streams ('' serves them itself)."""
        return str(_get("API_EVENTS_FORWARD_URL", ""))

    @property
    def api_unavailable_retry_after_seconds(self) -> int:
        return int(_get("API_UNAVAILABLE_RETRY_AFTER_SECONDS", 5))


jobs_settings = JobsSettings()
