"""Browser fixtures: the whole local stack with the web sample, and a headless Chromium.

Chromium is the Debian package's (``make setup`` installs it as root), else a Chrome or
Chromium on PATH. Without one, these tests (only these) skip with how to install it; under
``CI=true`` they fail instead, so CI can never pass by skipping them. A failing test saves a
screenshot of the page under its tmp dir and names it in the report.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from localdev.stack import Stack

from ..e2e.helpers import StackClient
from .browser import HOW_TO_INSTALL, Browser, find_chromium


def require_chromium() -> str:
    """The browser to use; else skip (a developer's machine) or fail (``CI=true``)."""
    found = find_chromium()
    if found is None:
        message = f"no Chromium or Chrome found for the browser tests: {HOW_TO_INSTALL}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the browser tests must run)", pytrace=False)
        pytest.skip(message)
    return found


@pytest.fixture(scope="session")
def chromium() -> str:
    return require_chromium()


def web_stack_at(data_dir: Path, settings: Mapping[str, str] | None = None) -> Stack:
    """The stack as ``make run`` starts it, web sample included, on free ports (not started:
    use it in ``with``). ``settings`` are explicit app settings: like ``localdev.stack``'s
    options they win over the environment and the stack's defaults."""
    return Stack(data_dir, web_port=0, use_func=False, timers=False, extra_settings=settings)


@pytest.fixture(scope="session")
def web_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack as ``make run`` starts it, web sample included, on free ports."""
    with web_stack_at(tmp_path_factory.mktemp("web-stack")) as running:
        yield running


@pytest.fixture(scope="module")
def scoped_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The web stack with the service requiring a delegated scope the web sample never asks
    for (it asks for ``.../access_as_user``): as when an API requires a permission the client
    app was not given. AUTH_REQUIRED_SCOPES is an explicit setting here: the stack never
    takes that one from the environment."""
    with web_stack_at(tmp_path_factory.mktemp("scoped-stack"),
                      {"AUTH_REQUIRED_SCOPES": "Token.Issue"}) as running:
        yield running


@pytest.fixture(scope="session")
def web_client(web_stack: Stack) -> StackClient:
    return StackClient(web_stack)


@pytest.fixture(scope="session")
def browser_session(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    browser = Browser(chromium, tmp_path_factory.mktemp("chromium"))
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def browser(browser_session: Browser, tmp_path: Path) -> Browser:
    """A fresh page (so fresh sessionStorage: signed out) for each test."""
    browser_session.new_page()
    browser_session.artifacts = tmp_path
    return browser_session


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    browser = getattr(item, "funcargs", {}).get("browser")
    if report.when != "call" or not report.failed or not isinstance(browser, Browser):
        return
    path = browser.artifacts / "failure.png"
    try:
        browser.screenshot(path)
        note = f"screenshot of the failing page: {path}"
    except AssertionError as exc:
        note = f"could not save a screenshot: {exc}"
    try:
        url = browser.url()
    except AssertionError:
        url = "?"
    report.sections.append(("browser", f"{note}\nURL: {url}\npage log: {browser.page_log()}"))
    terminal = item.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is not None:
        terminal.write_line(f"\n{item.nodeid}: {note}")
