from __future__ import annotations

from django.apps import AppConfig


class TestsConfig(AppConfig):
    """Registers the test-only job types in ``tests/actors.py``."""

    name = "tests"
    label = "tests"
