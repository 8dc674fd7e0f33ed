"""Redis connections from the settings: passwords, rediss:// with verified certificates, bad input."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from jobs.transport.client import connect_redis
from tests.servers import RedisServer, free_port, wait_until

PASSWORD = "tls-test-password"


def openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    if binary is None:
        pytest.fail("openssl is not installed; the TLS tests make their certificates with it.")
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, and a server certificate it signed for the name ``localhost`` only."""
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
            "-keyout", "ca.key", "-out", "ca.pem", cwd=d)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.pem", cwd=d)  # fmt: skip
    # A second CA that signed nothing here: trusting it must not be enough.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=other CA",
            "-keyout", "other.key", "-out", "other.pem", cwd=d)  # fmt: skip
    return d


@pytest.fixture(scope="module")
def tls_redis(certificates: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """redis-server speaking only TLS (its plain port is 0: off), with a password; yields its port."""
    port = free_port()
    server = RedisServer(
        tmp_path_factory.mktemp("tls-redis"),
        port=port,
        password=PASSWORD,
        args=[
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(certificates / "server.pem"),
            "--tls-key-file", str(certificates / "server.key"),
            "--tls-ca-cert-file", str(certificates / "ca.pem"),
            "--tls-auth-clients", "no",
        ],
    )  # fmt: skip
    try:
        client = connect_redis(
            url=f"rediss://:{PASSWORD}@localhost:{port}/0",
            tls_ca_file=str(certificates / "ca.pem"),
        )

        def ready() -> bool:
            assert server.process.alive(), server.process.output()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(ready, timeout=20, what="the TLS Redis answering")
        yield port
    finally:
        server.stop()


def test_rediss_with_the_signing_ca_connects_with_the_password(
    tls_redis: int, certificates: Path
) -> None:
    client = connect_redis(
        url=f"rediss://:{PASSWORD}@localhost:{tls_redis}/3",
        tls_ca_file=str(certificates / "ca.pem"),
    )
    assert client.set("deploy:tls", "ok")
    assert client.get("deploy:tls") == b"ok"
    assert client.connection_pool.connection_kwargs["db"] == 3
    client.flushdb()


def test_rediss_refuses_a_certificate_from_an_untrusted_ca(
    tls_redis: int, certificates: Path
) -> None:
    client = connect_redis(
        url=f"rediss://:{PASSWORD}@localhost:{tls_redis}/0",
        tls_ca_file=str(certificates / "other.pem"),
    )
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()


def test_rediss_refuses_a_certificate_for_another_host_name(
    tls_redis: int, certificates: Path
) -> None:
    # The certificate names localhost; 127.0.0.1 is the same server but not the same name.
    client = connect_redis(
        url=f"rediss://:{PASSWORD}@127.0.0.1:{tls_redis}/0",
        tls_ca_file=str(certificates / "ca.pem"),
    )
    with pytest.raises(redis.ConnectionError, match=r"(?i)(hostname|IP address) mismatch"):
        client.ping()


def test_a_wrong_password_is_refused(tls_redis: int, certificates: Path) -> None:
    client = connect_redis(
        url=f"rediss://:wrong@localhost:{tls_redis}/0", tls_ca_file=str(certificates / "ca.pem")
    )
    with pytest.raises(redis.AuthenticationError):
        client.ping()


def test_turning_certificate_verification_off_in_the_url_is_refused() -> None:
    with pytest.raises(ImproperlyConfigured, match=r"ssl_cert_reqs='none'.*REDIS_TLS_CA_FILE"):
        connect_redis(url="rediss://:pw@localhost:6380/0?ssl_cert_reqs=none")


def test_tls_files_with_a_plain_redis_url_are_refused_naming_the_setting(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("unused")
    with pytest.raises(ImproperlyConfigured, match=r"REDIS_TLS_CA_FILE set.*rediss://"):
        connect_redis(url="redis://localhost:6379/0", tls_ca_file=str(ca))


def test_an_unreadable_ca_file_is_refused_naming_the_setting() -> None:
    with pytest.raises(
        ImproperlyConfigured, match=re.escape("REDIS_TLS_CA_FILE='/nonexistent/ca.pem'")
    ):
        connect_redis(url="rediss://localhost:6380/0", tls_ca_file="/nonexistent/ca.pem")


def test_a_url_that_is_not_redis_is_refused_naming_the_setting() -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL is not a Redis URL"):
        connect_redis(url="http://localhost:6379/0")
