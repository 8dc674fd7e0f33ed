"""Typed access to the tenants app's settings, read at call time.

Only ``toolboxai.settings`` reads the environment; this accessor supplies the
defaults when a setting is absent.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings


def _get(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


class TenantsSettings:
    @property
    def api_key_cache_seconds(self) -> float:
        """How long a web process trusts an API key it looked up (0: look up every request)."""
        return float(_get("API_KEY_CACHE_SECONDS", 5))


tenants_settings = TenantsSettings()
