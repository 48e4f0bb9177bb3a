"""A real platform for integration tests: a real TorchServe on free ports, serving the real
``.mar`` of the shipped weights, and the real gateway (``python -m gateway``, uvicorn) in front.

Everything lives in an isolated copy of ``models/`` and ``data/`` under a temporary folder, so a
test run never touches the developer's registry, CSVs or a running ``make demo``. The stack is
started once per session (TorchServe takes ~10-30 s to load a worker on 2 cores). The start-up
code is :mod:`devstack.stack` (under the stack's own supervisord, as ``make demo``), shared with
the benchmark (``python -m benchmarks``).
The ``stack`` and ``gateway`` fixtures live in ``tests/conftest.py`` so that the integration and
browser folders share one stack per session; the names tests import stay here.
"""

from __future__ import annotations

from devstack.stack import LocalStack
from devstack.waiting import wait_http

ADMIN_KEY = "test-admin-key"
USER_KEY = "test-user-key"

# Tests import these names from here; they stay as thin aliases of the shared module.
Stack = LocalStack
__all__ = ["ADMIN_KEY", "USER_KEY", "Stack", "wait_http"]


def stack_environment(stack: Stack, gateway_port: int) -> dict[str, str]:
    """Environment of a gateway (or retrain job, or CLI) that belongs to ``stack``."""
    return stack.environment(gateway_port)


def start_gateway(stack: Stack) -> None:
    """Start ``python -m gateway`` for ``stack`` on a free port and wait for ``/ready``."""
    try:
        stack.start_gateway(90)
    except Exception:
        print(stack.gateway_log())
        raise


def stop_gateway(stack: Stack) -> None:
    """Stop the gateway process (SIGTERM, then SIGKILL)."""
    stack.stop_gateway()
