"""``webapp.client``: the web app's settings and test hook build its ``GatewayClient``.

The client itself is tested in ``tests/gateway_client/``.
"""

from __future__ import annotations

import httpx
import pytest

from tests.gateway_client.fake_gateway import FakeGateway
from webapp import client
from webapp.client import make_client
from webapp.config import Settings


def test_make_client_uses_settings_and_transport_hook(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGateway()
    monkeypatch.setattr(client, "TRANSPORT", httpx.MockTransport(fake.handle))
    settings = Settings(gateway_url="http://gw.example:9000", api_key="abc", timeout_s=5.0)
    with make_client(settings, timeout_s=1.0) as gw:
        gw.retrain()
    request = fake.last("POST", "/retrain")
    assert str(request.url) == "http://gw.example:9000/retrain"
    assert request.headers["X-API-Key"] == "abc"
    assert request.extensions["timeout"]["read"] == 1.0
    assert request.extensions["timeout"]["connect"] == settings.connect_timeout_s
