"""Debian's ``chromium`` under Playwright, as the console's screenshots and browser tests run
it: headless, and with nothing that reaches out to the network (a closed network has none)."""

from __future__ import annotations

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
