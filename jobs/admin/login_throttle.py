"""Throttle failed admin logins per username and per client address (HTTP 429).

Once a username, or a client address, has ADMIN_LOGIN_MAX_FAILURES failed logins
in its window (ADMIN_LOGIN_WINDOW_SECONDS from its first failure), every login
POST for that username or from that address gets HTTP 429 with ``Retry-After``,
before authentication (so also with the right password), until the window ends.
A successful login clears the username's count. :class:`LoginThrottleMiddleware`
refuses; Django's ``user_login_failed`` and ``user_logged_in`` signals count
(:func:`connect`, from ``JobsConfig.ready``). The counters live in Redis
(:mod:`jobs.transport.login_attempts`), so every web process shares them.

The client address is REMOTE_ADDR: the connecting peer, which behind a reverse
proxy is the proxy (gunicorn does not rewrite it). With
ADMIN_LOGIN_TRUST_X_FORWARDED_FOR it is the last address of X-Forwarded-For,
the one the proxy appended. An IPv6 client counts by its /64, which one client
usually holds whole.

If Redis does not answer, logins are let through unthrottled (and an error is
logged): an outage must not lock the operators out of the admin they need then.
"""

from __future__ import annotations

import hashlib
import logging
import math
import unicodedata
from collections.abc import Callable
from ipaddress import IPv6Address, ip_address, ip_network
from typing import Any

import redis
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from jobs.conf import jobs_settings
from jobs.transport.broker import get_broker
from jobs.transport.login_attempts import (
    login_failure_record,
    login_failures,
    login_failures_forget,
)

logger = logging.getLogger(__name__)

#: Longest username that goes into a log line (a long one is cut, never the whole body).
_LOGGED_USERNAME_CHARS = 150


class LoginThrottleMiddleware:
    """Answers a login POST to the admin with 429 while its username or address is over the limit."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        match = request.resolver_match
        if request.method != "POST" or match is None or match.view_name != "admin:login":
            return None
        username = request.POST.get("username", "")
        address = client_address(request)
        try:
            counts = login_failures(
                get_broker().client,
                namespace=jobs_settings.redis_namespace,
                username_hash=_username_hash(username),
                address=address,
            )
        except redis.RedisError as exc:
            logger.error("Admin login throttle skipped: Redis did not answer (%s).", exc)
            return None
        limit = jobs_settings.admin_login_max_failures
        over = [count for count in counts if count.failures >= limit]
        if not over:
            return None
        retry_after = max(1, *(math.ceil(count.remaining_ms / 1000) for count in over))
        logger.warning(
            "Admin login refused for username %r from %s: %d failed logins within %d s "
            "(username %d, address %d); retry in %d s.",
            _loggable(username),
            address,
            limit,
            jobs_settings.admin_login_window_seconds,
            counts[0].failures,
            counts[1].failures,
            retry_after,
        )
        return HttpResponse(
            "Too many failed logins for this username or from this address. "
            f"Try again in {retry_after} s.\n",
            status=429,
            content_type="text/plain; charset=utf-8",
            headers={"Retry-After": str(retry_after)},
        )


def client_address(request: HttpRequest) -> str:
    """The address a login counts against (see the module docstring), or ``unknown``."""
    raw = str(request.META.get("REMOTE_ADDR", ""))
    if jobs_settings.admin_login_trust_x_forwarded_for:
        forwarded = str(request.META.get("HTTP_X_FORWARDED_FOR", "")).split(",")[-1].strip()
        raw = forwarded or raw
    try:
        address = ip_address(raw.strip())
    except ValueError:
        return "unknown"
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ip_network(f"{address}/64", strict=False))
    return str(address)


def on_login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    """``user_login_failed``: count a failed web login (never looks at the password)."""
    if request is None:  # authenticate() outside a request: no address to count
        return
    username = str(credentials.get("username", ""))
    address = client_address(request)
    try:
        user_failures, address_failures = login_failure_record(
            get_broker().client,
            namespace=jobs_settings.redis_namespace,
            username_hash=_username_hash(username),
            address=address,
            window_ms=jobs_settings.admin_login_window_seconds * 1000,
        )
    except redis.RedisError as exc:
        logger.warning(
            "Admin login failed for username %r from %s (not counted: Redis did not answer: %s).",
            _loggable(username),
            address,
            exc,
        )
        return
    logger.warning(
        "Admin login failed for username %r from %s (failures in %d s: username %d, "
        "address %d; %d allowed).",
        _loggable(username),
        address,
        jobs_settings.admin_login_window_seconds,
        user_failures,
        address_failures,
        jobs_settings.admin_login_max_failures,
    )


def on_logged_in(
    sender: Any, request: HttpRequest | None, user: AbstractBaseUser, **kwargs: Any
) -> None:
    """``user_logged_in``: a successful login clears its username's failures."""
    try:
        login_failures_forget(
            get_broker().client,
            namespace=jobs_settings.redis_namespace,
            username_hash=_username_hash(user.get_username()),
        )
    except redis.RedisError as exc:
        logger.error(
            "Could not clear the failed logins of %r: %s", _loggable(user.get_username()), exc
        )


def connect() -> None:
    """Connect the counting receivers (from ``JobsConfig.ready``; idempotent)."""
    user_login_failed.connect(on_login_failed, dispatch_uid="jobs.admin.login_throttle.failed")
    user_logged_in.connect(on_logged_in, dispatch_uid="jobs.admin.login_throttle.logged_in")


def _username_hash(username: str) -> str:
    """The username as the login form cleans it (stripped, NFKC), case-folded, hashed."""
    normalized = unicodedata.normalize("NFKC", username.strip()).casefold()
    return hashlib.sha256(normalized.encode()).hexdigest()


def _loggable(value: object) -> str:
    text = str(value)
    if len(text) > _LOGGED_USERNAME_CHARS:
        return f"{text[:_LOGGED_USERNAME_CHARS]}…"
    return text
