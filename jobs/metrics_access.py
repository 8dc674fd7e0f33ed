"""Who may read the Prometheus metrics: the holder of a bearer token, or an allowed network.

The web's ``/metrics`` (:mod:`jobs.api.metrics`) and the worker exporter
(:mod:`jobs.exporter`, when it listens beyond loopback) both ask
:func:`metrics_denial`. A request passes with ``Authorization: Bearer
<METRICS_TOKEN>`` (compared in constant time), or from an address in
METRICS_ALLOWED_NETWORKS. The address is the connecting peer (REMOTE_ADDR),
never a forwarded header: behind a reverse proxy it is the proxy's, so
allow Prometheus's network, never the proxy's, or use the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address

from jobs.conf import jobs_settings


@dataclass(frozen=True)
class MetricsDenial:
    """A refused metrics request: ``status`` 401 (the token would do) or 403, and its headers."""

    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)


def metrics_denial(*, authorization: str, address: str) -> MetricsDenial | None:
    """None when the request may read the metrics, else why not.

    Args:
        authorization: the request's ``Authorization`` header ("" when absent).
        address: the connecting peer's IP address (REMOTE_ADDR).
    """
    token = jobs_settings.metrics_token
    if token and _bearer_matches(authorization, token):
        return None
    if address_allowed(address, jobs_settings.metrics_allowed_networks):
        return None
    if token:
        challenge = 'Bearer realm="metrics"'
        if authorization:
            challenge += ', error="invalid_token"'
        return MetricsDenial(
            401,
            "The metrics need a token: send Authorization: Bearer <METRICS_TOKEN>.",
            {"WWW-Authenticate": challenge},
        )
    return MetricsDenial(403, "This address may not read the metrics.")


def address_allowed(address: str, networks: Iterable[IPv4Network | IPv6Network]) -> bool:
    """Whether ``address`` lies in one of ``networks`` (an IPv4-mapped IPv6 address as IPv4)."""
    try:
        ip = ip_address(address.strip().split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)


def is_loopback_host(host: str) -> bool:
    """Whether a listening address stays on this machine (``localhost`` or a loopback IP)."""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def exporter_exposure_problem() -> str | None:
    """Why the worker exporter must not start as configured, or None.

    Beyond loopback, an exporter that answers everyone would publish queue names,
    job types and volumes to the network: it needs METRICS_TOKEN or
    METRICS_ALLOWED_NETWORKS (which DJANGO_DEBUG=1 sets to loopback by default).
    """
    host, port = jobs_settings.prometheus_host, jobs_settings.prometheus_port
    if not port or is_loopback_host(host):
        return None
    if jobs_settings.metrics_token or jobs_settings.metrics_allowed_networks:
        return None
    return (
        f"The worker metrics exporter would answer anyone on PROMETHEUS_HOST={host!r} "
        f"(port {port}): set METRICS_TOKEN to a long random value (Prometheus sends it as "
        "`authorization: {type: Bearer, credentials_file: ...}`), or METRICS_ALLOWED_NETWORKS "
        "to Prometheus's network (e.g. 10.0.0.0/8). Or keep the exporter on this host with "
        "PROMETHEUS_HOST=127.0.0.1, or turn it off with PROMETHEUS_PORT=0."
    )


def _bearer_matches(authorization: str, token: str) -> bool:
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(credentials.strip().encode(), token.encode())
