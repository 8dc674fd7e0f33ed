"""``tests/browser.py``: which Chromium ``make browser`` and the browser tests use."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests import browser


def _fake_executable(directory: Path, name: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_a_chromium_on_path_is_used_first_by_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chrome = _fake_executable(tmp_path, "google-chrome")
    monkeypatch.setenv("PATH", str(tmp_path))

    found = browser.find_chromium()

    assert found == browser.Chromium(str(chrome), f"google-chrome on PATH ({chrome})")


def test_chromium_is_preferred_to_chrome_when_both_are_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_executable(tmp_path, "google-chrome")
    chromium = _fake_executable(tmp_path, "chromium")
    monkeypatch.setenv("PATH", str(tmp_path))

    found = browser.find_chromium()

    assert found is not None and found.executable == str(chromium)


@pytest.mark.parametrize(
    ("os_release", "debian_like"),
    [
        ('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n', True),
        ('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\n', True),
        ('NAME="Linux Mint"\nID=linuxmint\nID_LIKE="ubuntu debian"\n', True),
        ('NAME="Fedora Linux"\nID=fedora\n', False),
        ('NAME="Alpine Linux"\nID=alpine\n', False),
    ],
)
def test_apt_is_used_only_on_debian_and_ubuntu(
    os_release: str, debian_like: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = tmp_path / "os-release"
    release.write_text(os_release)
    monkeypatch.setattr(browser, "OS_RELEASE", release)

    assert browser._debian_like() is debian_like


def test_without_os_release_apt_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(browser, "OS_RELEASE", tmp_path / "missing")

    assert browser._debian_like() is False
    assert browser._can_use_apt() is False
