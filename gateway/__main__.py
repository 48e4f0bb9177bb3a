"""``python -m gateway``: serve the gateway with uvicorn, configured by ``GATEWAY_*``."""

from __future__ import annotations

import sys

import uvicorn

from gateway.config import get_settings

SWITCH_INTERVAL_S = 0.001


def main() -> None:
    """Run uvicorn on the configured host and port."""
    settings = get_settings()
    # The event loop and the worker threads (recording, embedding, store) share one GIL. With
    # CPython's 5 ms switch interval the loop waited up to 5 ms for it after each socket event
    # while a worker ran numpy on small arrays; at 1 ms, 32 feedback writers through one gateway
    # went from 251-292 to 320-332 rows/s on a 2-core AMD EPYC (docs/benchmarks.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)
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
