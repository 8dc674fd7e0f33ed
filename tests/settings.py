"""Settings for the test suite: real Postgres and a dedicated Redis database.

The defaults match the services CI starts; DATABASE_URL and REDIS_URL override them.
"""

from __future__ import annotations

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/toolboxai")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

# Under pytest-xdist each worker gets its own Redis database (15, 14, ...), as
# pytest-django gives each its own test database; tests flush theirs freely.
_xdist_worker = os.environ.get("PYTEST_XDIST_WORKER", "")
if _xdist_worker.startswith("gw") and not os.environ.get("TOOLBOXAI_TEST_REDIS_FIXED"):
    _base, _, _db = os.environ["REDIS_URL"].rpartition("/")
    if _db.isdigit():
        os.environ["REDIS_URL"] = f"{_base}/{int(_db) - int(_xdist_worker[2:])}"
    os.environ["TOOLBOXAI_TEST_REDIS_FIXED"] = "1"
os.environ.setdefault("DJANGO_DEBUG", "0")
# Production refuses the development key; the suite uses its own throwaway one.
os.environ.setdefault(
    "DJANGO_SECRET_KEY", "tests-only-secret-key-never-used-outside-the-test-suite-0123456789"
)
# The test client and live servers speak plain HTTP (tests/e2e/test_deploy.py covers HTTPS settings).
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")
os.environ.setdefault("DJANGO_SECURE_COOKIES", "0")
os.environ.setdefault("LOG_FORMAT", "text")

from toolboxai.settings import *  # noqa: E402,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests"]  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# django.tasks backends of tests/tasks.py: "retrying" retries once; "send_now"
# sends without waiting for the surrounding transaction to commit.
TASKS = {
    **TASKS,  # noqa: F405
    "retrying": {
        "BACKEND": "jobs.backends.DramatiqBackend",
        "QUEUES": [],
        "OPTIONS": {"max_retries": 1},
    },
    "send_now": {
        "BACKEND": "jobs.backends.DramatiqBackend",
        "QUEUES": [],
        "OPTIONS": {"enqueue_on_commit": False},
    },
}
