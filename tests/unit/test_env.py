from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import parse_database_url, redact_url


@pytest.mark.parametrize(
    "url", ["sqlite:///.state/db.sqlite3", "sqlite:////var/lib/app/db.sqlite3", "sqlite3://x"]
)
def test_a_sqlite_url_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(ImproperlyConfigured) as refused:
        parse_database_url(url)
    message = str(refused.value)
    assert "needs Postgres" in message
    assert "postgres://user:password@host:5432/dbname" in message
    assert "make run" in message


def test_a_postgres_url_is_split_into_django_settings() -> None:
    db = parse_database_url("postgres://u:p%40ss@db.example:6543/app?sslmode=require")
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "app",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_an_unknown_scheme_is_refused_with_the_supported_ones() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"Use postgres://user:password@host"):
        parse_database_url("mysql://x/y")


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
