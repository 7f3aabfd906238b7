"""The page's icon: linked from the page and served at ``/favicon.ico`` too, so loading
the page asks for nothing that is not there."""

from __future__ import annotations

import re
from typing import Any

import httpx
from devsupport import Dev, page_ready


def test_the_favicon_is_served(dev: Dev, page: Any) -> None:
    failed: list[str] = []
    page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
    page.reload()
    page_ready(page)
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert icon is not None
    for path in (icon.lstrip("/"), "favicon.ico"):
        response = httpx.get(dev.page_url + path, trust_env=False, timeout=30)
        assert response.status_code == 200, path
        assert response.headers["content-type"].startswith("image/svg+xml")
        assert re.match(rb"<svg ", response.content)
    assert failed == []
