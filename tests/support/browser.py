"""Headless Chromium for page tests: the rendered DOM and a screenshot of a local HTML file.

Uses Debian's ``chromium`` (``.ci/run`` installs it); `require_chromium` skips a test with the
reason when it is missing. Every call starts a fresh browser with a fresh profile directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync")


def require_chromium() -> str:
    """The Chromium executable, or skip the test saying how to get it (fail instead when
    EVOFORGE_REQUIRE_CHROMIUM is set, as CI does)."""
    for name in ("chromium", "chromium-browser"):
        if path := shutil.which(name):
            return path
    reason = "headless Chromium is not installed (apt-get install chromium; .ci/run does this)"
    if os.environ.get("EVOFORGE_REQUIRE_CHROMIUM"):
        pytest.fail(reason)
    pytest.skip(reason)


def _run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="evoforge-chromium-") as profile:
        return subprocess.run(
            [require_chromium(), *FLAGS, f"--user-data-dir={profile}", "--window-size=1300,2600",
             "--virtual-time-budget=10000", *extra, page.resolve().as_uri()],
            capture_output=True, text=True, timeout=120,
        )


def rendered_dom(page: Path) -> str:
    """The page's DOM after its scripts ran."""
    result = _run(page, "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def screenshot(page: Path, out: Path) -> Path:
    """A PNG screenshot of the page's first 1300x2600 pixels."""
    result = _run(page, f"--screenshot={out.resolve()}")
    assert result.returncode == 0 and out.exists(), result.stderr[-2000:]
    return out
