"""docs/configuration.md lists exactly the environment variables the project reads.

Where a variable is read, and so where this test looks:

- ``toolboxai/settings/*.py``: every ``env_*("NAME", default)`` call (the settings
  package is the only code that reads the environment for Django);
- ``jobs/conf.py`` and ``tenants/conf.py``: every ``_get("NAME", default)`` (the
  typed accessors, which read Django settings of the same names);
- ``os.environ`` / ``os.getenv`` reads with a literal name in the project's own code,
  ``gunicorn.conf.py`` and ``scripts/dev.py`` (``make run``);
- ``docker-compose.yml``: every ``${NAME...}`` interpolation (compose-only variables
  such as ``POSTGRES_PASSWORD``).

Every one of those must have a row. A row may also name a variable that only a
dependency reads for us (gunicorn's ``WEB_CONCURRENCY`` and ``FORWARDED_ALLOW_IPS``,
prometheus_client's ``PROMETHEUS_MULTIPROC_DIR``): those count as read when the
installed package's source reads them, so a row for a variable nothing reads fails.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gunicorn
import prometheus_client

from tests.docs_pages import DOCS, ROOT

PAGE = DOCS / "configuration.md"
ENV_READERS = {"env_str", "env_int", "env_bool", "env_list", "env_networks", "env_host_ports"}
TYPES = {
    "env_int": {"integer"},
    "env_bool": {"boolean"},
    "env_list": {"list"},
    "env_networks": {"list of CIDRs"},
    "env_host_ports": {"list of host:port"},
    "env_str": {"string", "URL", "path"},
}
UNITS = {"_MS": "ms", "_SECONDS": "s", "_BYTES": "bytes", "_DAYS": "days"}
_ROW = re.compile(r"^\| `(?P<name>[A-Z][A-Z0-9_]*)` \|(?P<rest>.*)\|\s*$")
_ENVIRON_LITERAL = re.compile(
    r"""environ(?:\.get)?[\[(]\s*["']([A-Z][A-Z0-9_]+)["']|getenv\(\s*["']([A-Z][A-Z0-9_]+)["']"""
)
_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Mult: operator.mul,
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.FloorDiv: operator.floordiv,
}


@dataclass(frozen=True)
class Row:
    name: str
    type: str
    default: str
    unit: str
    meaning: str


@dataclass(frozen=True)
class EnvRead:
    name: str
    reader: str
    default: ast.expr | None
    where: str


def documented() -> dict[str, Row]:
    rows: dict[str, Row] = {}
    for number, line in enumerate(PAGE.read_text().splitlines(), start=1):
        match = _ROW.match(line)
        if match is None:
            continue
        cells = [cell.strip() for cell in match["rest"].split(" | ")]
        assert len(cells) == 4, f"{PAGE.name}:{number}: a row has type | default | unit | meaning"
        assert match["name"] not in rows, f"{PAGE.name}:{number}: {match['name']} twice"
        rows[match["name"]] = Row(match["name"], *cells)
    return rows


def _calls(path: Path) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def env_reads() -> list[EnvRead]:
    reads = []
    for path in sorted((ROOT / "toolboxai" / "settings").glob("*.py")):
        for call in _calls(path):
            if isinstance(call.func, ast.Name) and call.func.id in ENV_READERS:
                first = call.args[0] if call.args else None
                where = f"{path.relative_to(ROOT)}:{call.lineno}"
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{where}: name the variable literally, so docs/configuration.md is checked"
                )
                default = call.args[1] if len(call.args) > 1 else None
                reads.append(EnvRead(first.value, call.func.id, default, where))
    return reads


def accessor_reads() -> set[str]:
    names = set()
    for path in (ROOT / "jobs" / "conf.py", ROOT / "tenants" / "conf.py"):
        for call in _calls(path):
            if isinstance(call.func, ast.Name) and call.func.id == "_get":
                first = call.args[0]
                assert isinstance(first, ast.Constant), f"{path}:{call.lineno}"
                names.add(str(first.value))
    return names


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "env"  # scripts/dev.py's copy of it
    )


def _environ_key(node: ast.AST) -> ast.expr | None:
    """The key of ``os.environ.get(key)``, ``os.getenv(key)`` or ``os.environ[key]``."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
        reads_environ = node.func.attr == "get" and _is_environ(node.func.value)
        return node.args[0] if reads_environ or node.func.attr == "getenv" else None
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.ctx, ast.Load)
        and _is_environ(node.value)
    ):
        return node.slice
    return None


def environ_reads() -> set[str]:
    paths = [
        ROOT / "gunicorn.conf.py",
        ROOT / "scripts" / "dev.py",
        *(
            path
            for package in ("jobs", "tenants", "toolboxai")
            for path in (ROOT / package).rglob("*.py")
        ),
    ]
    names = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            key = _environ_key(node)
            if isinstance(key, ast.Constant) and isinstance(key.value, str) and key.value.isupper():
                names.add(key.value)
    return names


def compose_reads() -> set[str]:
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))


def dependency_reads() -> set[str]:
    """Variables gunicorn and prometheus_client read from the environment themselves."""
    names = set()
    for package in (gunicorn, prometheus_client):
        for path in Path(str(package.__file__)).parent.rglob("*.py"):
            for match in _ENVIRON_LITERAL.finditer(path.read_text()):
                names.add(match[1] or match[2])
    return names


def read_by_the_project() -> set[str]:
    return {r.name for r in env_reads()} | accessor_reads() | environ_reads() | compose_reads()


def _literal(node: ast.expr | None) -> Any:
    """The value of a literal default (numbers may be multiplied out); None when it is not one."""
    if node is None:
        return None
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left, right = _literal(node.left), _literal(node.right)
        if isinstance(left, int) and isinstance(right, int):
            return _BINOPS[type(node.op)](left, right)
        return None
    try:
        return ast.literal_eval(node)
    except ValueError:
        return None


def _documented_default(value: Any) -> str | None:
    """What the default cell must start with for a literal default."""
    if value is None:
        return None
    if isinstance(value, bool):
        return f"`{int(value)}`"
    if value in ("", []):
        return "empty"
    if isinstance(value, list):
        return f"`{','.join(value)}`"
    return f"`{value}`"


def test_every_variable_the_project_reads_has_a_row_on_the_configuration_page() -> None:
    missing = sorted(read_by_the_project() - documented().keys())

    assert missing == [], f"add a row to docs/configuration.md for each of {missing}"


def test_every_row_of_the_configuration_page_names_a_variable_something_reads() -> None:
    stale = sorted(documented().keys() - read_by_the_project() - dependency_reads())

    assert stale == [], f"docs/configuration.md documents what nothing reads: {stale}"


def test_each_row_gives_the_type_default_and_unit_the_code_has() -> None:
    rows = documented()
    problems = []
    for row in rows.values():
        if not (row.type and row.default and row.unit and row.meaning):
            problems.append(f"{row.name}: a cell is empty")
        for suffix, unit in UNITS.items():
            if row.name.endswith(suffix) and row.unit != unit:
                problems.append(f"{row.name}: unit {row.unit!r}, the name says {unit!r}")
    for read in env_reads():
        row = rows[read.name]
        if row.type not in TYPES[read.reader]:
            problems.append(
                f"{read.name}: type {row.type!r}, {read.where} reads it with {read.reader}"
            )
        expected = _documented_default(_literal(read.default))
        if read.reader == "env_host_ports":
            expected = "empty"
        if expected is not None and not row.default.startswith(expected):
            problems.append(f"{read.name}: default {row.default!r}, {read.where} has {expected}")

    assert problems == []


def test_the_check_sees_each_kind_of_read() -> None:
    assert {"JOBS_WORKER_THREADS", "API_MAX_BODY_BYTES", "LOG_FORMAT"} <= {
        r.name for r in env_reads()
    }
    assert "API_KEY_CACHE_SECONDS" in accessor_reads()
    assert {
        "WEB_THREADS",
        "PORT",
        "TOOLBOXAI_STATE_DIR",
        "PROMETHEUS_MULTIPROC_DIR",
    } <= environ_reads()
    assert {"POSTGRES_PASSWORD", "TOOLBOXAI_IMAGE", "WEB_PORT"} <= compose_reads()
    assert {"WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"} <= dependency_reads()
