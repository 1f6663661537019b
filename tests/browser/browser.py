"""A real headless Chromium for the browser tests, driven by playwright-core from npm
(tests/browser/driver.mjs) with the Debian ``chromium`` binary (or a Chrome/Chromium on PATH).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.mjs")
DEBIAN_CHROMIUM = "/usr/bin/chromium"
#: Looked up on PATH when the Debian binary is not there (e.g. macOS with Chrome).
ON_PATH = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
MAC_CHROME = "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"
HOW_TO_INSTALL = (
    "install it with `make setup` as root on Debian/Ubuntu (apt-get install chromium "
    "chromium-driver), or install Google Chrome / Chromium and put it on PATH"
)
ANSWER_TIMEOUT = 60.0


def find_chromium() -> str | None:
    if os.access(DEBIAN_CHROMIUM, os.X_OK):
        return DEBIAN_CHROMIUM
    for name in ON_PATH:
        found = shutil.which(name)
        if found:
            return found
    if os.access(MAC_CHROME, os.X_OK):
        return MAC_CHROME
    return None


class BrowserError(AssertionError):
    """The browser could not do what the test asked (the message carries the page's log)."""


class Browser:
    """One Chromium (fresh profile) for a test session; ``new_page()`` per test."""

    def __init__(self, chromium: str, workdir: Path) -> None:
        self.workdir = workdir
        #: Where a failing test's screenshot goes (its tmp dir; the conftest sets it).
        self.artifacts = workdir
        profile = workdir / "profile"
        profile.mkdir(parents=True, exist_ok=True)
        self.stderr_path = workdir / "driver.log"
        self._stderr = open(self.stderr_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            ["node", str(DRIVER), chromium, str(profile)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            text=True, bufsize=1,
        )  # fmt: skip
        self._answers: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._next_id = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def call(self, cmd: str, **args: Any) -> Any:
        self._next_id += 1
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"id": self._next_id, "cmd": cmd, **args}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BrowserError(f"the browser driver has exited:\n{self.driver_log()}") from None
        try:
            line = self._answers.get(timeout=ANSWER_TIMEOUT)
        except queue.Empty:
            raise BrowserError(f"no answer to {cmd} in {ANSWER_TIMEOUT:g}s") from None
        if line is None:
            raise BrowserError(f"the browser driver exited during {cmd}:\n{self.driver_log()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise BrowserError(f"{cmd} {args}: {reply.get('error')}\npage log: {self.page_log()}")
        return reply.get("result")

    def driver_log(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")[-4000:]
        except OSError:
            return ""

    def page_log(self) -> list[str]:
        try:
            answer: list[str] = self.call("log")
        except BrowserError:
            return []
        return answer

    # ------------------------------------------------------------------ page helpers
    def new_page(self) -> None:
        self.call("newPage")

    def goto(self, url: str) -> str:
        return str(self.call("goto", url=url))

    def url(self) -> str:
        return str(self.call("url"))

    def wait_for(self, selector: str, state: str = "visible") -> None:
        self.call("waitFor", selector=selector, state=state)

    def click(self, selector: str) -> None:
        self.call("click", selector=selector)

    def fill(self, selector: str, value: str) -> None:
        self.call("fill", selector=selector, value=value)

    def check(self, selector: str) -> None:
        self.call("check", selector=selector)

    def text(self, selector: str) -> str:
        return str(self.call("text", selector=selector))

    def status(self) -> dict[str, Any]:
        result: dict[str, Any] = self.call("status")
        return result

    def act(self, selector: str) -> dict[str, Any]:
        """Click a button of the sample; the status it then announces."""
        result: dict[str, Any] = self.call("act", selector=selector)
        return result

    def evaluate(self, expression: str) -> Any:
        return self.call("evaluate", expression=expression)

    def responses(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.call("responses")
        return result

    def screenshot(self, path: Path) -> Path:
        self.call("screenshot", path=str(path))
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write(json.dumps({"cmd": "close"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(30)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(10)
        self._stderr.close()
