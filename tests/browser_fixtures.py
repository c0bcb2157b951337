"""A real browser for the tests that look at pages: Playwright for Python driving Debian's
``chromium`` (``make install`` installs it; browser downloads are impossible on a closed network).

Import the fixtures into a test module (``from tests.browser_fixtures import browser, page``).
A test that fails keeps a full-page screenshot under ``.run/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tools.common.browser import CHROMIUM_ARGS

SCREENSHOTS = Path(".run/screenshots")


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("chromium is not installed: run `make install` (apt-get install chromium)")
    return path


# Module scope: each module imports its own copy of this fixture, and two Playwright instances
# must not be alive at once (the sync API runs one event loop).
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh context (no shared storage) at a control-room screen's size, 1366 x 768."""
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    pg = context.new_page()
    failed_before = request.session.testsfailed
    try:
        yield pg
    finally:
        # The call phase is reported before fixtures are torn down: a new failure shows here.
        if request.session.testsfailed > failed_before:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
            pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        context.close()
