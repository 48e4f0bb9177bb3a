"""``python -m gateway``: serve the gateway with uvicorn, configured by ``GATEWAY_*``."""

from __future__ import annotations

import uvicorn

from gateway.config import get_settings


def main() -> None:
    """Run uvicorn on the configured host and port."""
    settings = get_settings()
    uvicorn.run(
        "gateway.main:app",
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The gateway is usually behind nothing or a trusted proxy only; no proxy header trust.
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
