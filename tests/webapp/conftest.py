"""Fixtures of the web app's tests: the app wired to a fake gateway at the transport level."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.gateway_client.fake_gateway import FakeGateway
from tests.webapp.app_under_test import API_KEY, APP_PATH
from webapp import client


@pytest.fixture
def samples_dir(tmp_path: Path) -> Path:
    """An empty folder the app lists samples from (tests add files when they need some)."""
    folder = tmp_path / "samples"
    folder.mkdir()
    return folder


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch, samples_dir: Path) -> Iterator[FakeGateway]:
    """A fake gateway wired in at the transport, with the app's env pointing at test values."""
    fake = FakeGateway()
    monkeypatch.setattr(client, "TRANSPORT", httpx.MockTransport(fake.handle))
    monkeypatch.setenv("WEBAPP_GATEWAY_URL", "http://gateway.test:8080")
    monkeypatch.setenv("WEBAPP_API_KEY", API_KEY)
    monkeypatch.setenv("WEBAPP_SAMPLES_DIR", str(samples_dir))
    monkeypatch.setenv("WEBAPP_EVIDENTLY_URL", "http://evidently.test:8082")
    for name in ("WEBAPP_TIMEOUT_S", "WEBAPP_CONNECT_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    yield fake


@pytest.fixture
def make_app(gateway: FakeGateway) -> Callable[[], AppTest]:
    """Build (and run once) the app against the fake gateway."""

    def build() -> AppTest:
        return AppTest.from_file(APP_PATH, default_timeout=20).run()

    return build
