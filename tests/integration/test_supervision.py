"""Crash recovery: TorchServe and the gateway killed with SIGKILL under traffic come back by
themselves (supervisord), and TorchServe comes back with the registry's default version.

Four client threads loop on ``POST /predict`` through the real gateway of the session stack.
First a new version is hot-swapped in, so that "the registry's default" differs from the version
TorchServe was first started with. Then the Java frontend is SIGKILLed (what the kernel's OOM
killer does), and later the gateway. Each must serve a 200 again within 30 s. While TorchServe is
down the gateway must answer every request, with 200 or a clean 503 (JSON error body and
``Retry-After``), never anything else; while the gateway itself is down a client gets no answer
at all (connection refused), which is the only failure allowed then.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.integration.conftest import USER_KEY, Stack
from tests.integration.loop_support import Traffic, restore_default, wait_no_active_job
from yoloserve.modelserver.deploy import hot_swap_sync
from yoloserve.modelserver.packaging import package

pytestmark = pytest.mark.integration

BACK_WITHIN_S = 30.0


def _java_frontend(launcher_pid: int) -> psutil.Process:
    frontends = [p for p in psutil.Process(launcher_pid).children(recursive=True)
                 if "org.pytorch.serve.ModelServer" in " ".join(p.cmdline())]
    assert len(frontends) == 1, frontends
    return frontends[0]


def test_sigkilled_torchserve_and_gateway_come_back_under_traffic(stack: Stack) -> None:
    registry = stack.registry
    wait_no_active_job(registry)
    first = registry.load().default_version
    assert first is not None
    newer = package(stack.weights, registry, store_dir=stack.store_dir, reuse=False)
    urls = (stack.torchserve.management_url, stack.torchserve.inference_url)
    hot_swap_sync(*urls, registry, newer.version, drain_s=0.5)
    supervisor = stack.supervisor
    image = (stack.data_dir / "samples" / "shapes_1.jpg").read_bytes()
    try:
        with Traffic(stack.gateway_url, image, threads=4, api_key=USER_KEY) as traffic:
            traffic.first_ok_after(time.monotonic() - 60, newer.version, 60)

            launcher = supervisor.pid("torchserve")
            assert launcher is not None
            _java_frontend(launcher).kill()
            ts_killed = time.monotonic()
            ts_back = traffic.first_ok_after(ts_killed, newer.version, BACK_WITHIN_S)
            assert supervisor.pid("torchserve") != launcher

            gateway = supervisor.pid("gateway")
            assert gateway is not None
            gw_killed = time.monotonic()
            os.kill(gateway, signal.SIGKILL)
            gw_back = traffic.first_ok_after(gw_killed, newer.version, BACK_WITHIN_S)
            assert supervisor.pid("gateway") != gateway
            time.sleep(1.0)  # a few more answers from the restarted pair
    finally:
        restore_default(stack, first)

    answers = sorted(traffic.answers, key=lambda a: a.ended)
    unexpected = [a for a in answers if a.status not in (0, 200, 503)]
    assert unexpected == [], unexpected[:3]
    unclean = [a for a in answers if a.status == 503
               and (a.retry_after is None or '"error"' not in a.body)]
    assert unclean == [], unclean[:3]
    # Until the gateway was killed, every request got an answer, TorchServe down or not.
    unanswered = [a for a in answers if a.status == 0 and a.ended < gw_killed]
    assert unanswered == [], unanswered[:3]
    served_503 = sum(a.status == 503 for a in answers)
    refused = sum(a.status == 0 for a in answers)
    print(f"\nTorchServe SIGKILL -> 200 from v{newer.version} after {ts_back:.1f} s; gateway "
          f"SIGKILL -> 200 after {gw_back:.1f} s; {len(answers)} requests: "
          f"{sum(a.status == 200 for a in answers)} x 200, {served_503} x clean 503, "
          f"{refused} without answer while the gateway was down")
