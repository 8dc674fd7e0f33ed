"""The Chromium that the admin browser test and ``make docs-screenshots`` drive, and ``make browser``.

One is looked for in this order, and the first found is used:

1. a Chromium or Chrome already on ``PATH`` (``chromium``, ``chromium-browser``,
   ``google-chrome``, ``google-chrome-stable``);
2. Playwright's own Chromium, once ``playwright install chromium`` has downloaded it.

``python -m tests.browser`` (``make browser``) makes sure one exists: with none on
``PATH`` it runs ``apt-get install chromium`` when it is root on Debian or Ubuntu,
and ``playwright install chromium`` otherwise (macOS, a user without root, another
Linux). It prints which one it used.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Names a Chromium (or Chrome) goes by on PATH, most likely first.
PATH_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
OS_RELEASE = Path("/etc/os-release")
#: The package's name on Debian and on Ubuntu.
APT_PACKAGE = "chromium"


@dataclass(frozen=True)
class Chromium:
    """A Chromium to launch.

    Parameters:
      executable: its path, or None for Playwright's own (launched without a path).
      source: where it came from, as ``make browser`` prints it.
    """

    executable: str | None
    source: str


def find_chromium() -> Chromium | None:
    """The Chromium to use (PATH first, then Playwright's download), or None."""
    for name in PATH_NAMES:
        found = shutil.which(name)
        if found:
            return Chromium(found, f"{name} on PATH ({found})")
    bundled = _playwright_chromium()
    if bundled:
        return Chromium(None, f"Playwright's Chromium ({bundled})")
    return None


def missing_message() -> str:
    return (
        "No Chromium found: none of " + ", ".join(PATH_NAMES) + " is on PATH and Playwright "
        "has not downloaded its own. Run `make browser`."
    )


def _playwright_chromium() -> str | None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        path = playwright.chromium.executable_path
    return path if path and Path(path).exists() else None


def _debian_like() -> bool:
    if not OS_RELEASE.exists():
        return False
    fields = dict(line.split("=", 1) for line in OS_RELEASE.read_text().splitlines() if "=" in line)
    ids = {fields.get("ID", "").strip('"'), *fields.get("ID_LIKE", "").strip('"').split()}
    return bool(ids & {"debian", "ubuntu"})


def _can_use_apt() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "geteuid")
        and os.geteuid() == 0
        and shutil.which("apt-get") is not None
        and _debian_like()
    )


def _apt_install() -> bool:
    print(f"make browser: installing {APT_PACKAGE} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", APT_PACKAGE],
    ):
        if subprocess.run(command, env=env, check=False).returncode:
            print(f"make browser: `{' '.join(command)}` failed", file=sys.stderr, flush=True)
            return False
    return True


def _playwright_install() -> bool:
    print("make browser: downloading Playwright's Chromium (playwright install chromium)")
    command = [sys.executable, "-m", "playwright", "install", "chromium"]
    return subprocess.run(command, check=False).returncode == 0


def main() -> int:
    """Find a Chromium, installing one when there is none; print which one is used."""
    chromium = find_chromium()
    if chromium is None and _can_use_apt() and _apt_install():
        chromium = find_chromium()
    if chromium is None and _playwright_install():
        chromium = find_chromium()
    if chromium is None:
        print(f"make browser: {missing_message()}", file=sys.stderr)
        return 1
    print(f"make browser: using {chromium.source}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
