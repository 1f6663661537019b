"""Which browser the browser tests use, and what happens without one."""

from __future__ import annotations

import os
import shutil

import pytest

from . import browser as browser_module
from .conftest import require_chromium


def no_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(shutil, "which", lambda name: None)


def test_without_a_browser_the_tests_skip_and_say_how_to_install(
        monkeypatch: pytest.MonkeyPatch) -> None:
    no_browser(monkeypatch)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium chromium-driver"):
        require_chromium()


def test_under_ci_a_missing_browser_fails_instead(monkeypatch: pytest.MonkeyPatch) -> None:
    no_browser(monkeypatch)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: the browser tests must run"):
        require_chromium()


def test_debian_chromium_first_then_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access",
                        lambda path, mode: path == browser_module.DEBIAN_CHROMIUM)
    assert browser_module.find_chromium() == "/usr/bin/chromium"
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setattr(shutil, "which",
                        lambda name: "/opt/bin/google-chrome" if name == "google-chrome" else None)
    assert browser_module.find_chromium() == "/opt/bin/google-chrome"
