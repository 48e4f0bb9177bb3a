"""The web app asks nothing of the internet: every page, its forms, its icons and its favicon.

Every browser test already fails on a request that leaves the machine (``conftest.py``'s
``nothing_leaves_the_machine``); these tests make sure that check can fail, and walk each page
a user opens (Detect with a detection and its feedback form, Review, Models), waiting for the
favicon, which the browser fetches by itself (a ``:material/...:`` page icon once made it fetch
an SVG from a font CDN).
"""

from __future__ import annotations

import http.server
import threading
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import TIMEOUT_MS
from tests.browser.offline import OutsideRecorder
from tests.browser.test_browser_e2e import settle
from yoloserve import paths

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SAMPLE = paths.ROOT / "data" / "samples" / "shapes_1.jpg"
LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]", "::1")


GUARD_PAGE = (
    b'<html><head><link rel="icon" href="http://icons.example.invalid/favicon.svg">'
    b'<link rel="stylesheet" href="https://fonts.example.invalid/css?family=X"></head>'
    b'<body><img src="http://images.example.invalid/x.png"></body></html>'
)


class _GuardPage(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(GUARD_PAGE)))
        self.end_headers()
        self.wfile.write(GUARD_PAGE)

    def log_message(self, *args: object) -> None:
        pass


def test_the_check_catches_a_request_that_leaves(
    browser: Browser, outside: OutsideRecorder
) -> None:
    """A page served here that asks other hosts for its favicon, a font and an image: all three
    are caught (the favicon is the browser's own fetch, which page-level interception misses)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _GuardPage)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    context = browser.new_context()
    try:
        tab = context.new_page()
        tab.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        for _ in range(50):  # the favicon comes after load
            if len(outside.seen) >= 3:
                break
            tab.wait_for_timeout(200)
    finally:
        context.close()
        server.shutdown()
        server.server_close()
    seen = " ".join(outside.take())
    for host in ("icons.example.invalid", "fonts.example.invalid", "images.example.invalid"):
        assert host in seen, f"{host} was not caught: {seen!r}"


def _favicon(page: Page) -> str:
    page.wait_for_function("() => document.querySelector(\"link[rel*='icon']\") !== null")
    href = page.locator("link[rel*='icon']").first.get_attribute("href") or ""
    return str(page.evaluate("h => new URL(h, document.baseURI).href", href))


def _is_local(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "data" or parts.hostname in LOCAL_HOSTS


def test_every_page_stays_on_this_machine(page: Page, webapp_url: str) -> None:
    page.goto(webapp_url)
    page.get_by_role("heading", name="Detect objects").wait_for()
    page.get_by_text("Gateway is up").wait_for()
    icon = _favicon(page)
    assert _is_local(icon), f"the favicon is fetched from {icon}"
    assert page.request.get(icon).ok, icon  # served by the web app itself

    # Detect, then the feedback form under the detection.
    page.locator("[data-testid='stFileUploader'] input[type='file']").set_input_files(SAMPLE)
    page.get_by_text(SAMPLE.name).first.wait_for()
    page.get_by_role("button", name="Detect", exact=True).click()
    page.get_by_role("button", name="Send feedback").wait_for(timeout=TIMEOUT_MS)
    settle(page)

    for name, heading in (("Review", "Review queue"), ("Models", "Models")):
        page.get_by_role("link", name=name).click()
        page.get_by_role("heading", name=heading).wait_for()
        settle(page)
        assert _is_local(_favicon(page))
    page.evaluate("document.fonts.ready")
    page.wait_for_timeout(1000)  # late fetches (fonts, favicon) have time to show up
