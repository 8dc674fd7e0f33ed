"""The import contract of pyproject.toml holds, and it catches an import that points up."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _copy_of_the_project(tmp_path: Path) -> Path:
    for package in ("jobs", "tenants", "toolboxai"):
        shutil.copytree(
            ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def test_the_layers_hold_and_an_upward_import_breaks_them(tmp_path: Path) -> None:
    project = _copy_of_the_project(tmp_path)
    assert _lint_imports(project).returncode == 0

    (project / "jobs" / "transport" / "upward.py").write_text(
        "from jobs.services import job_submit\n"
    )
    broken = _lint_imports(project)

    assert broken.returncode != 0
    assert "jobs.transport is not allowed to import jobs.services" in broken.stdout
    assert "jobs.transport.upward -> jobs.services" in broken.stdout


def test_a_middleware_that_imports_a_sibling_breaks_the_contract(tmp_path: Path) -> None:
    project = _copy_of_the_project(tmp_path)
    (project / "jobs" / "middleware" / "sibling.py").write_text(
        "from jobs.middleware.ledger import Ledger\n"
    )

    broken = _lint_imports(project)

    assert broken.returncode != 0
    assert "each middleware stands alone BROKEN" in broken.stdout
