from __future__ import annotations

from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import parse_database_url, redact_url


def test_a_relative_sqlite_url_is_resolved_against_the_project(tmp_path: Path) -> None:
    db = parse_database_url("sqlite:///.state/db.sqlite3", base_dir=tmp_path)
    assert db["NAME"] == str(tmp_path / ".state" / "db.sqlite3")


def test_an_absolute_sqlite_url_keeps_its_path(tmp_path: Path) -> None:
    db = parse_database_url("sqlite:////var/lib/app/db.sqlite3", base_dir=tmp_path)
    assert db["NAME"] == "/var/lib/app/db.sqlite3"


def test_a_postgres_url_is_split_into_django_settings() -> None:
    db = parse_database_url(
        "postgres://u:p%40ss@db.example:6543/app?sslmode=require", base_dir=Path(".")
    )
    assert (db["USER"], db["PASSWORD"], db["HOST"], db["PORT"], db["NAME"]) == (
        "u",
        "p@ss",
        "db.example",
        "6543",
        "app",
    )
    assert db["OPTIONS"] == {"sslmode": "require"}


def test_an_unknown_scheme_is_refused_with_the_supported_ones() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"postgres://\.\.\. or sqlite:///"):
        parse_database_url("mysql://x/y", base_dir=Path("."))


def test_passwords_are_redacted_from_urls() -> None:
    assert redact_url("redis://:hunter2@host:6379/0") == "redis://:***@host:6379/0"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"
