"""Connects to Redis from the settings: a URL (password, ``rediss://`` TLS) or Redis Sentinel.

:func:`build_redis_client` is the broker's client; everything else that needs
Redis uses ``get_broker().client``, so one configuration reaches every
connection of a process.
"""

from __future__ import annotations

import os
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.connection import parse_url
from redis.sentinel import Sentinel

from jobs.conf import jobs_settings

#: Applied to every connection: detect dead connections, and never hang on connect.
COMMON_OPTIONS: dict[str, Any] = {
    "health_check_interval": 30,
    "socket_connect_timeout": 10,
    "socket_keepalive": True,
}
#: Sentinel queries are short; a silent Sentinel is skipped for the next one.
SENTINEL_SOCKET_TIMEOUT_SECONDS = 5


def build_redis_client() -> redis.Redis:
    """The broker's Redis client: REDIS_URL (password, TLS) or the master Redis Sentinel names."""
    return connect_redis(
        url=jobs_settings.redis_url,
        tls_ca_file=jobs_settings.redis_tls_ca_file,
        tls_cert_file=jobs_settings.redis_tls_cert_file,
        tls_key_file=jobs_settings.redis_tls_key_file,
        sentinels=jobs_settings.redis_sentinels,
        sentinel_master=jobs_settings.redis_sentinel_master,
        sentinel_username=jobs_settings.redis_sentinel_username,
        sentinel_password=jobs_settings.redis_sentinel_password,
    )


def connect_redis(
    *,
    url: str,
    tls_ca_file: str = "",
    tls_cert_file: str = "",
    tls_key_file: str = "",
    sentinels: list[tuple[str, int]] | None = None,
    sentinel_master: str = "mymaster",
    sentinel_username: str = "",
    sentinel_password: str = "",
) -> redis.Redis:
    """A Redis client for ``url``, or for the master that ``sentinels`` name.

    ``rediss://`` always verifies the server's certificate and host name,
    against ``tls_ca_file`` when given (else the system's CAs). With
    ``sentinels``, the URL's host and port are ignored: the client asks the
    Sentinels for the current master of ``sentinel_master`` on every
    reconnect, and uses the URL's user, password, database number and scheme.
    No connection is opened here.
    """
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"REDIS_URL is not a Redis URL ({exc}). "
            "Use redis://:password@host:6379/0, or rediss://... for TLS."
        ) from None
    connection_class = options.pop("connection_class", redis.Connection)
    if connection_class is redis.connection.UnixDomainSocketConnection and sentinels:
        raise ImproperlyConfigured(
            "REDIS_URL is a unix:// socket, which Sentinel cannot name. Use redis:// or rediss://."
        )
    tls = issubclass(connection_class, redis.SSLConnection)
    tls_options = _tls_options(
        tls=tls,
        options=options,
        ca_file=tls_ca_file,
        cert_file=tls_cert_file,
        key_file=tls_key_file,
    )
    if not sentinels:
        pool = redis.ConnectionPool(
            connection_class=connection_class, **options, **tls_options, **COMMON_OPTIONS
        )
        return redis.Redis(connection_pool=pool)

    options.pop("host", None)
    options.pop("port", None)
    sentinel_options: dict[str, Any] = {
        "socket_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
        "socket_connect_timeout": SENTINEL_SOCKET_TIMEOUT_SECONDS,
        "socket_keepalive": True,
    }
    if sentinel_username:
        sentinel_options["username"] = sentinel_username
    if sentinel_password:
        sentinel_options["password"] = sentinel_password
    if tls:
        sentinel_options.update(ssl=True, **tls_options)
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_options)
    return sentinel.master_for(sentinel_master, ssl=tls, **options, **tls_options, **COMMON_OPTIONS)


def _tls_options(
    *, tls: bool, options: dict[str, Any], ca_file: str, cert_file: str, key_file: str
) -> dict[str, Any]:
    given = {
        "REDIS_TLS_CA_FILE": ca_file,
        "REDIS_TLS_CERT_FILE": cert_file,
        "REDIS_TLS_KEY_FILE": key_file,
    }
    if not tls:
        named = [name for name, value in given.items() if value]
        if named:
            raise ImproperlyConfigured(
                f"{', '.join(named)} set, but REDIS_URL uses plain redis://. "
                "Use rediss:// to connect over TLS."
            )
        return {}
    requested = str(options.pop("ssl_cert_reqs", "required")).lower()
    if requested != "required":
        raise ImproperlyConfigured(
            f"REDIS_URL asks for ssl_cert_reqs={requested!r}; certificate verification is "
            "always on. Remove the parameter and set REDIS_TLS_CA_FILE to the CA that "
            "signed the Redis server's certificate."
        )
    options.pop("ssl_check_hostname", None)
    url_ca_file = options.pop("ssl_ca_certs", None)
    url_cert_file = options.pop("ssl_certfile", None)
    url_key_file = options.pop("ssl_keyfile", None)
    for name, path in given.items():
        if path and not os.access(path, os.R_OK):
            raise ImproperlyConfigured(f"{name}={path!r} is not a readable file.")
    if bool(cert_file) != bool(key_file):
        raise ImproperlyConfigured(
            "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together: set both for a client "
            "certificate, or neither."
        )
    return {
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": ca_file or url_ca_file,
        "ssl_certfile": cert_file or url_cert_file,
        "ssl_keyfile": key_file or url_key_file,
    }


def server_eviction_policy(client: redis.Redis) -> str | None:
    """The server's ``maxmemory-policy``, from CONFIG GET or, if CONFIG is refused, INFO."""
    try:
        value = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        # Managed Redis services and ACLs often refuse CONFIG; INFO reports it too.
        value = client.info("memory").get("maxmemory_policy")
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)
