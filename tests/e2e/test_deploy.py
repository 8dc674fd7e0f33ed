"""The commands of docker-compose.yml, run as local processes with production settings.

No Docker engine runs here, so the test reads each service's ``command:`` from
docker-compose.yml and starts it as a process: the compose Redis command (AOF,
noeviction, requirepass) on a free port, then migrate, web (gunicorn with threaded
WSGI workers), the workers and the scheduler against the test Postgres
database, with ``DJANGO_DEBUG=0`` and a real secret key. The only change to a
command is the web server's bind address (a free loopback port, not 0.0.0.0:8000).
"""

from __future__ import annotations

import http.client
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from django.db import connection
from dramatiq.brokers.redis import RedisBroker

from jobs.models import Job, JobStatus
from jobs.selectors.queues import workers
from jobs.transport.client import connect_redis
from tests.e2e.commands import run_manage
from tests.servers import Process, RedisServer, free_port, redis_server_binary, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
BIN = Path(sys.executable).parent

#: Application services this test starts, in order.
STARTED = ["web", "worker", "worker-high-priority", "scheduler"]
#: Application services not started yet, with the reason.
NOT_STARTED_YET: dict[str, str] = {
    "events": "its command is the events service tests/e2e/test_events_service.py starts",
}
#: The web service's compose healthcheck path.
WEB_PROBE_PATH = "/healthz"
#: Services whose compose healthcheck command is run against the started processes.
HEALTHCHECKED = ["web", "worker", "worker-high-priority", "scheduler"]


def compose_command(service: str) -> list[str]:
    command = COMPOSE["services"][service]["command"]
    assert isinstance(command, list), f"{service}: write command: as a list"
    return [str(part) for part in command]


def healthcheck_argv(service: str, web_port: int) -> list[str]:
    """The service's ``healthcheck: test: ["CMD", ...]``, aimed at the local web port."""
    kind, *command = COMPOSE["services"][service]["healthcheck"]["test"]
    assert kind == "CMD", f"{service}: write the healthcheck as a CMD list"
    command = [part.replace("127.0.0.1:8000", f"127.0.0.1:{web_port}") for part in command]
    return local_argv(command)


def local_argv(command: list[str]) -> list[str]:
    """The compose command with this venv's executables (the image has them on PATH)."""
    program, *args = command
    if program == "python":
        return [sys.executable, *args]
    return [str(BIN / program), *args]


def test_the_compose_file_runs_every_application_service_from_one_image_as_non_root() -> None:
    services = COMPOSE["services"]
    app_services = {name for name, spec in services.items() if "build" in spec}
    assert app_services == {"migrate", *STARTED, *NOT_STARTED_YET}
    for name in app_services:
        spec = services[name]
        assert spec["read_only"] is True, name
        assert spec["user"].split(":")[0] in {"1005", "1006", "1007"}, name
        assert "healthcheck" in spec, name
        assert spec["environment"]["DJANGO_DEBUG"] == "0", name
    assert compose_command("worker")[-1] == "rundramatiq"
    assert compose_command("worker-high-priority")[-2:] == ["--queues", "high_priority"]
    assert compose_command("scheduler")[-1] == "periodiq"
    # The workers' exporters are reachable from a Prometheus container, with the token.
    for name in ("worker", "worker-high-priority"):
        assert services[name]["environment"]["PROMETHEUS_HOST"] == "0.0.0.0", name
    for name in app_services:
        assert "METRICS_TOKEN" in services[name]["environment"]["METRICS_TOKEN"], name
    assert "ports" not in services["worker"] and "container_name" not in services["worker"]
    assert services["worker"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "manage.py",
        "jobs",
        "ping",
    ]
    for name, spec in services.items():
        assert "healthcheck" in spec, f"{name} has no healthcheck"


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """The compose ``redis`` command, on a free loopback port instead of 6379."""
    command = COMPOSE["services"]["redis"]["command"]
    assert command[:2] == ["sh", "-c"]
    port = free_port()
    script = (
        command[2]
        .replace("$$", "$")
        .replace(
            "exec redis-server",
            f"exec {redis_server_binary()} --port {port} --bind 127.0.0.1 --dir {tmp_path / 'redis'}",
            1,
        )
    )
    password = secrets.token_hex(16)
    server = RedisServer(
        tmp_path / "redis",
        argv=["sh", "-c", script],
        port=port,
        password=password,
        env={"REDIS_PASSWORD": password, "PATH": "/usr/bin:/bin"},
    )
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


def production_env(redis_server: RedisServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    database_url = (
        f"postgres://{db['USER'] or 'postgres'}{password}@{db['HOST'] or '127.0.0.1'}:"
        f"{db['PORT'] or 5432}/{db['NAME']}"
    )
    env = {
        "PATH": f"{BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "TMPDIR": str(tmp_path),
        "PYTHONUNBUFFERED": "1",
        "DJANGO_SETTINGS_MODULE": "toolboxai.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_ALLOWED_HOSTS": "localhost",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "1",
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
        "TOOLBOXAI_STATE_DIR": str(tmp_path / "state"),
        "DATABASE_URL": database_url,
        "REDIS_URL": f"redis://:{redis_server.password}@127.0.0.1:{redis_server.port}/0",
        "JOBS_WORKER_PROCESSES": "1",
        "JOBS_WORKER_THREADS": "2",
        "JOBS_WORKER_POLL_MS": "50",
        "WEB_CONCURRENCY": "1",
        "METRICS_TOKEN": secrets.token_urlsafe(32),
    }
    env.update(extra)
    return env


def http_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers={"Host": "localhost", **(headers or {})})
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def metrics_status(port: int, headers: dict[str, str] | None = None) -> int:
    """Status of GET /metrics on a local port, 0 while nothing listens."""
    try:
        return http_get(port, "/metrics", headers).status
    except OSError:
        return 0


def web_answers(web: Process, port: int) -> bool:
    assert web.alive(), f"web exited:\n{web.output()}"
    try:
        http_get(port, WEB_PROBE_PATH)
    except OSError:
        return False
    return True


def test_the_compose_commands_run_a_job_with_production_settings_and_a_password_protected_redis(
    compose_redis: RedisServer, tmp_path: Path
) -> None:
    # The compose Redis really has the production configuration, and refuses strangers.
    admin = compose_redis.client()
    assert admin.config_get("appendonly") == {"appendonly": "yes"}
    assert admin.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert admin.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    with pytest.raises(redis.AuthenticationError):
        compose_redis.client(password=None).ping()

    env = production_env(compose_redis, tmp_path)
    # What the image build does, then what the one-shot migrate service does.
    collected = run_manage(env, "collectstatic", "--no-input", "-v", "0")
    assert collected.returncode == 0, collected.stderr
    migrate = subprocess.run(
        local_argv(compose_command("migrate")),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr

    web_port = free_port()
    processes: dict[str, Process] = {}
    metrics_ports: dict[str, int] = {}
    try:
        for name in STARTED:
            argv = local_argv(compose_command(name))
            if name == "web":
                bind = argv.index("--bind")
                assert argv[bind + 1] == "0.0.0.0:8000"
                argv[bind + 1] = f"127.0.0.1:{web_port}"
            # Each worker's metrics exporter gets its own port (containers each have 9540).
            metrics_ports[name] = free_port()
            service_env = {**env, "PROMETHEUS_PORT": str(metrics_ports[name])}
            # The compose workers' exporters listen beyond loopback, guarded by METRICS_TOKEN.
            compose_env = COMPOSE["services"][name].get("environment", {})
            if "PROMETHEUS_HOST" in compose_env:
                service_env["PROMETHEUS_HOST"] = str(compose_env["PROMETHEUS_HOST"])
            if name == "web":
                service_env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "prometheus")
                (tmp_path / "prometheus").mkdir()
            processes[name] = Process(
                argv, log_path=tmp_path / f"{name}.log", env=service_env, cwd=ROOT
            )

        wait_until(
            lambda: web_answers(processes["web"], web_port),
            timeout=90,
            what="the web server answering",
        )
        # Production HTTPS: plain HTTP is redirected; through the proxy (X-Forwarded-Proto)
        # the page renders with HSTS, and WhiteNoise serves the collected static files.
        plain = http_get(web_port, "/admin/login/")
        assert plain.status == 301
        assert plain.getheader("Location") == "https://localhost/admin/login/"
        proxied = {"X-Forwarded-Proto": "https"}
        login = http_get(web_port, "/admin/login/", proxied)
        assert login.status == 200
        assert "max-age=31536000" in (login.getheader("Strict-Transport-Security") or "")
        css = http_get(web_port, "/static/admin/css/base.css", proxied)
        assert css.status == 200

        broker = RedisBroker(client=connect_redis(url=env["REDIS_URL"]), middleware=[])

        def both_workers_registered() -> bool:
            for name in ("worker", "worker-high-priority"):
                assert processes[name].alive(), f"{name} exited:\n{processes[name].output()}"
            queues = [set(w.queues) for w in workers(broker)]
            return len(queues) == 2 and any(
                q == {"high_priority", "high_priority.urgent", "high_priority.bulk"} for q in queues
            )

        wait_until(both_workers_registered, timeout=90, what="both workers registering in Redis")
        wait_until(
            lambda: "is now the leader" in processes["scheduler"].output(),
            timeout=90,
            what="the scheduler taking the leader lock",
        )

        # Prometheus reads the web's and the workers' metrics with the token, and only with it.
        bearer = {"Authorization": f"Bearer {env['METRICS_TOKEN']}"}
        exporters = [metrics_ports["worker"], metrics_ports["worker-high-priority"]]
        wait_until(
            lambda: all(metrics_status(port, bearer) == 200 for port in exporters),
            timeout=60,
            what="the workers' metrics exporters answering",
        )
        assert [metrics_status(port) for port in exporters] == [401, 401]
        assert metrics_status(web_port) == 401
        assert metrics_status(web_port, bearer) == 200

        # A tenant and its API key, with the management commands, then a job over HTTP.
        created = run_manage(env, "createorganization", "deployed", "--owner", "ops")
        assert created.returncode == 0, created.stderr
        issued = run_manage(env, "createapikey", "ops", "--organization", "deployed")
        assert issued.returncode == 0, issued.stderr
        api_key = issued.stdout.strip().splitlines()[-1]
        conn = http.client.HTTPConnection("127.0.0.1", web_port, timeout=10)
        conn.request(
            "POST",
            "/api/v1/jobs/",
            body=json.dumps({"type": "diagnostics.echo", "payload": {"message": "deployed"}}),
            headers={
                "Host": "localhost",
                "X-Forwarded-Proto": "https",
                "Authorization": f"Bearer {api_key}",
                "Content-Type": "application/json",
            },
        )
        response = conn.getresponse()
        body = response.read()
        conn.close()
        assert response.status == 201, body
        job_id = json.loads(body)["id"]

        wait_until(
            lambda: Job.objects.filter(pk=job_id, status=JobStatus.SUCCEEDED).exists(),
            timeout=60,
            what=f"job {job_id} succeeding",
        )
        job = Job.objects.get(pk=job_id)
        assert job.result == {"message": "deployed"}
        assert job.attempts == 1
        # The processes used the password-protected Redis, not the suite's.
        assert admin.exists("dramatiq:__workers__")

        for name in HEALTHCHECKED:
            check = subprocess.run(
                healthcheck_argv(name, web_port),
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            assert check.returncode == 0, f"{name} healthcheck: {check.stdout}{check.stderr}"
    finally:
        codes = {name: process.stop() for name, process in reversed(processes.items())}
    assert codes == dict.fromkeys(processes, 0), {
        name: processes[name].output()[-3000:] for name, code in codes.items() if code != 0
    }


def test_production_settings_refuse_to_start_with_the_default_secret_key(tmp_path: Path) -> None:
    env = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "toolboxai.settings",
        "DJANGO_DEBUG": "0",
        "TOOLBOXAI_STATE_DIR": str(tmp_path),
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    unset = run_manage(env, "check")
    assert unset.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in unset.stderr

    from toolboxai.settings import INSECURE_DEFAULT_SECRET_KEY

    default = run_manage({**env, "DJANGO_SECRET_KEY": INSECURE_DEFAULT_SECRET_KEY}, "check")
    assert default.returncode != 0
    assert "DJANGO_SECRET_KEY" in default.stderr

    # Development (DEBUG on) still starts with the built-in key.
    development = run_manage({**env, "DJANGO_DEBUG": "1"}, "check")
    assert development.returncode == 0, development.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    env: dict[str, Any] = {
        "PATH": f"{BIN}:/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "toolboxai.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "TOOLBOXAI_STATE_DIR": str(tmp_path),
        "DJANGO_STATIC_ROOT": str(tmp_path / "static"),
    }
    result = run_manage(env, "check", "--deploy", "--fail-level", "DEBUG")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues (0 silenced)" in result.stdout
