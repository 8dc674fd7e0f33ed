"""Parsing of list-valued settings from the environment."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from toolboxai.env import env_host_ports


def test_sentinel_addresses_parse_as_host_port_pairs_including_ipv6(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "sentinel-1:26379, 10.0.0.2:26380,[::1]:26381")
    assert env_host_ports("REDIS_SENTINELS") == [
        ("sentinel-1", 26379),
        ("10.0.0.2", 26380),
        ("::1", 26381),
    ]


def test_unset_sentinel_addresses_mean_no_sentinel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REDIS_SENTINELS", raising=False)
    assert env_host_ports("REDIS_SENTINELS") == []


@pytest.mark.parametrize("bad", ["sentinel-1", "sentinel-1:", ":26379", "host:port", "host:70000"])
def test_a_sentinel_address_without_a_valid_port_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", f"ok:26379,{bad}")
    with pytest.raises(ImproperlyConfigured, match=f"REDIS_SENTINELS has '{bad}'"):
        env_host_ports("REDIS_SENTINELS")
