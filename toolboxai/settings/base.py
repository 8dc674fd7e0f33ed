"""Core Django settings: secret key, hosts, HTTPS, CSP, apps, middleware, database, static files."""

from __future__ import annotations

from pathlib import Path

import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

from toolboxai.env import (
    env_bool,
    env_int,
    env_list,
    env_str,
    parse_database_url,
)

django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent.parent
STATE_DIR = Path(env_str("TOOLBOXAI_STATE_DIR", str(BASE_DIR / ".state")))

INSECURE_DEFAULT_SECRET_KEY = "django-insecure-toolboxai-development-only-key-change-me"  # noqa: S105
SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_DEFAULT_SECRET_KEY)
DEBUG = env_bool("DJANGO_DEBUG", True)
if not DEBUG and SECRET_KEY.strip() in {"", INSECURE_DEFAULT_SECRET_KEY}:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set, and production (DJANGO_DEBUG=0) refuses the built-in "
        "development key. Set DJANGO_SECRET_KEY to a long random value, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

# --- HTTPS (on by default in production; see docs/deployment.md) ---------
# Behind a TLS-terminating proxy, trust its X-Forwarded-Proto header so Django
# knows the request was HTTPS; never enable this without such a proxy.
if env_bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
# Container healthchecks and metrics scrapes speak plain HTTP from inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz/?$", r"^metrics/?$"]
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 31_536_000, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
# Content-Security-Policy of every response. Every asset is ours (the API docs' come from
# drf-spectacular-sidecar), so nothing loads from elsewhere, and an inline script or
# style runs only with the response's nonce (the `csp` context processor's `csp_nonce`).
# Inline images are data: URIs (Swagger UI's icons).
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_prometheus",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "tenants",
    "jobs",
]

MIDDLEWARE = [
    # First and last: request count and latency for /metrics (django-prometheus).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    # Event streams relayed to the events service when API_EVENTS_FORWARD_URL is set
    # (make run: no proxy splits the paths), before anything opens a database connection.
    "jobs.api.stream_forwarding.forward_event_streams",
    # API bodies over API_MAX_BODY_BYTES (413) or chunked (411), answered before anything reads them.
    "jobs.api.body_limits.api_body_limits",
    # Skips the SELECT 1 probe of a connection this thread used a moment ago.
    "jobs.api.connections.trust_recent_connections",
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    # Serves STATIC_ROOT (collected at image build) without a separate file server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # 429 for a login to the admin while its username or address has too many failures.
    "jobs.admin.login_throttle.LoginThrottleMiddleware",
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
                "django.template.context_processors.csp",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        env_str("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/toolboxai")
    )
}
# django-prometheus's wrappers of the same backends count queries and errors for /metrics.
DATABASES["default"]["ENGINE"] = DATABASES["default"]["ENGINE"].replace(
    "django.db.backends.", "django_prometheus.db.backends."
)
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
# WhiteNoise warns about a missing STATIC_ROOT; the image collects into it at build,
# and a checkout gets an empty one until `collectstatic` runs.
if not STATIC_ROOT.is_dir():
    STATIC_ROOT.mkdir(parents=True, exist_ok=True)
