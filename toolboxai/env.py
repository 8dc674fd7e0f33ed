"""Parse environment variables into typed settings values.

Only ``toolboxai.settings`` imports this module: the rest of the code reads
settings through the per-app accessors (``jobs.conf``, ``tenants.conf``).
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name}={raw!r} is not a boolean. Use 1/0, true/false, yes/no or on/off."
    )


def env_int(
    name: str, default: int, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at least {minimum}.")
    if maximum is not None and value > maximum:
        raise ImproperlyConfigured(f"{name}={value!r} must be at most {maximum}.")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_networks(name: str, default: list[str]) -> list[str]:
    """Comma-separated CIDRs (``10.0.0.0/8,::1/128``; a bare address is one host), validated."""
    networks = env_list(name, default)
    for item in networks:
        try:
            ipaddress.ip_network(item)
        except ValueError as exc:
            raise ImproperlyConfigured(
                f"{name} has {item!r}, which is not a network ({exc}). Use comma-separated "
                f"CIDRs with the host bits zero, such as {name}=127.0.0.1/32,10.0.0.0/8."
            ) from None
    return networks


def env_host_ports(name: str) -> list[tuple[str, int]]:
    """``host:port,host:port`` (IPv6 as ``[::1]:26379``) as a list of pairs; empty when unset."""
    pairs: list[tuple[str, int]] = []
    for item in env_list(name, []):
        host, sep, port = item.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(
                f"{name} has {item!r}, which is not host:port. "
                f"Use a comma-separated list such as {name}=sentinel-1:26379,sentinel-2:26379."
            )
        pairs.append((host, int(port)))
    return pairs


def parse_database_url(url: str) -> dict[str, Any]:
    """Turn ``postgres://user:pass@host:port/name`` into DATABASES['default'] (SQLite is refused)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = dict(parse_qsl(parts.query))
    if scheme.startswith("sqlite"):
        raise ImproperlyConfigured(
            f"DATABASE_URL {redact_url(url)!r} is SQLite, which the job ledger does not run on: "
            "it needs Postgres. Use postgres://user:password@host:5432/dbname, or unset "
            "DATABASE_URL and run `make run`, which starts an embedded Postgres."
        )
    if scheme in {"postgres", "postgresql", "pgsql"}:
        if not parts.path.strip("/"):
            raise ImproperlyConfigured(
                f"DATABASE_URL {redact_url(url)!r} names no database. "
                "Use postgres://user:password@host:5432/dbname."
            )
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")),
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {scheme!r} is not supported. "
        "Use postgres://user:password@host:5432/dbname."
    )


def redact_url(url: str) -> str:
    """Hide the password of a URL, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
