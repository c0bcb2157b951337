"""Every HTTP service's Swagger UI, opened in chromium, lists the operations its document has."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser_fixtures import browser, page  # noqa: F401  (fixtures)

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", ["ingest_gateway", "query_api", "auth"])
def test_swagger_ui_lists_every_operation(
    urls: dict[str, str],
    page: Page,  # noqa: F811
    service: str,
) -> None:
    document = httpx.get(f"{urls[service]}/openapi.json", timeout=10).json()
    operations = sum(
        1 for item in document["paths"].values() for method in item if method != "parameters"
    )
    assert operations > 0
    page.goto(f"{urls[service]}/docs")
    expect(page.locator(".opblock")).to_have_count(operations, timeout=15_000)
    expect(page.get_by_text("Unable to render this definition")).to_have_count(0)
    # Each operation's summary is visible, not only the counted blocks.
    first_path = next(iter(document["paths"]))
    expect(page.locator(".opblock-summary-path", has_text=first_path).first).to_be_visible()
