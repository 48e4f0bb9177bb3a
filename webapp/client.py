"""The web app's gateway client: :func:`make_client` builds a ``gateway_client.GatewayClient``
from the web app's settings.

The client itself (transport, answers, errors) lives in the shared ``gateway_client`` package;
what is the web app's own is where the gateway is, which key to send and how long to wait.

Tests fake the network, not this code: set :data:`TRANSPORT` to an ``httpx.MockTransport`` and
every client that :func:`make_client` builds sends its requests there.

Example:
    >>> from webapp.config import Settings
    >>> with make_client(Settings(gateway_url="http://gw:8080")) as gw:
    ...     gw.base_url
    'http://gw:8080'
"""

from __future__ import annotations

import httpx

from gateway_client import GatewayClient
from webapp.config import Settings

#: Test hook: when set, clients built by :func:`make_client` send requests through it.
TRANSPORT: httpx.BaseTransport | None = None


def make_client(settings: Settings, *, timeout_s: float | None = None) -> GatewayClient:
    """Build a client from the settings, through :data:`TRANSPORT` when a test set one.

    Args:
        settings: Where the gateway is, its key and the default time limits.
        timeout_s: A tighter overall limit for this client (e.g. a health probe).
    """
    return GatewayClient(
        settings.gateway_url,
        api_key=settings.api_key,
        timeout_s=settings.timeout_s if timeout_s is None else min(timeout_s, settings.timeout_s),
        connect_timeout_s=settings.connect_timeout_s,
        transport=TRANSPORT,
    )
