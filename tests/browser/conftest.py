"""The real web app (``python -m webapp``) in front of the integration stack's real gateway.

The stack (real TorchServe + gateway over isolated models/ and data/) is the integration tests'
session fixture, reused as is; the web app runs as its own Streamlit process on a free port,
configured only through its ``WEBAPP_*`` variables, as ``make demo`` starts it.

One Chromium serves the session, and every request it sends off this machine goes to
``OutsideRecorder`` (a refusing proxy) instead: after each browser test, whatever it caught fails
that test. The app must work offline and tell no third party who opens it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from devstack.ports import free_ports
from devstack.supervisor import Program
from devstack.waiting import url_ready
from tests.browser.offline import OutsideRecorder
from tests.integration.conftest import USER_KEY, Stack
from yoloserve import paths

ARTIFACTS = paths.ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
TIMEOUT_MS = 60_000  # a cold TorchServe worker on a busy 2-core machine takes seconds
# Chromium's own services (sign-in, Google APIs, component and autofill servers) are pointed at
# a closed loopback port: that traffic is the browser's, not our pages', and a machine with no
# network has none of it. What reaches the recorder is then what our pages ask for.
_NOWHERE = "http://127.0.0.1:9"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--disable-quic", "--disable-domain-reliability", "--no-pings",
                 "--disable-client-side-phishing-detection",
                 f"--gaia-url={_NOWHERE}", f"--google-apis-url={_NOWHERE}", f"--lso-url={_NOWHERE}",
                 f"--autofill-server-url={_NOWHERE}/",
                 f"--component-updater=url-source={_NOWHERE}"]


@pytest.fixture(scope="session")
def outside() -> Iterator[OutsideRecorder]:
    """The refusing proxy every browser request bound off this machine goes to."""
    with OutsideRecorder() as recorder:
        yield recorder


@pytest.fixture(scope="module")
def browser(outside: OutsideRecorder) -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright (no browser download), via ``outside``.

    Per module, not per session: Playwright's sync API keeps an event loop running in the main
    thread while it is open, and every later test that calls ``asyncio.run`` would fail.
    """
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make setup` installs it (apt package chromium)")
    with sync_playwright() as p:
        # --proxy-server as a plain flag: Playwright's own proxy option would route loopback
        # through the proxy too; Chromium alone sends loopback direct.
        chromium = p.chromium.launch(executable_path=str(CHROMIUM),
                                     args=[*CHROMIUM_ARGS, outside.chromium_arg])
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def page(browser: Browser, webapp_url: str) -> Iterator[Page]:
    """A fresh tab (its own context: no cookies or cache from another module)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    try:
        tab = context.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        yield tab
    finally:
        context.close()


@pytest.fixture(autouse=True)
def nothing_leaves_the_machine(outside: OutsideRecorder) -> Iterator[None]:
    """Fail the test if its pages asked for anything outside this machine."""
    outside.take()
    yield
    seen = outside.take()
    assert not seen, f"the browser asked for addresses off this machine: {seen}"


@pytest.fixture(scope="session")
def webapp_url(stack: Stack) -> Iterator[str]:
    """Base URL of a running web app that talks to the stack's gateway with the user key.

    It runs under the stack's supervisord, like every other service of the stack.
    """
    (port,) = free_ports(1)
    env = {
        "WEBAPP_PORT": str(port),
        "WEBAPP_ADDRESS": "127.0.0.1",
        "WEBAPP_GATEWAY_URL": stack.gateway_url,
        "WEBAPP_API_KEY": USER_KEY,
        "WEBAPP_SAMPLES_DIR": str(stack.data_dir / "samples"),
    }
    url = f"http://127.0.0.1:{port}"
    program = Program("webapp", [sys.executable, "-m", "webapp"], env, cwd=paths.ROOT,
                      ready=url_ready(f"{url}/_stcore/health"))
    stack.start_program(program, 90)
    try:
        yield url
    finally:
        stack.supervisor.stop("webapp")


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for screenshots (gitignored), kept after the run for a human to look at."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
