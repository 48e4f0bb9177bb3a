"""``make demo``'s programs (scripts/stack.py): the gateway queues retrain jobs, the supervised
trainer runs them with the same ``RETRAIN_*``."""

from __future__ import annotations

from scripts.stack import Ports, programs


def test_the_demo_runs_a_trainer_beside_a_gateway_that_only_queues() -> None:
    keys = {"GATEWAY_API_KEYS": "u", "GATEWAY_ADMIN_API_KEYS": "a"}
    by_name = {p.name: p for p in programs(Ports(), keys)}

    trainer, gateway = by_name["trainer"], by_name["gateway"]
    assert list(trainer.command[1:]) == ["-m", "yoloserve.retrain", "trainer"]
    assert gateway.env["RETRAIN_LAUNCHER"] == "queue"
    retrain = {k: v for k, v in gateway.env.items() if k.startswith("RETRAIN_")}
    assert {k: v for k, v in trainer.env.items() if k.startswith("RETRAIN_")} == retrain
    assert retrain["RETRAIN_MANAGEMENT_URL"] == "http://127.0.0.1:8086"
    assert not any(k.startswith("GATEWAY_") for k in trainer.env), "no API keys in the trainer"
    names = list(by_name)
    assert names.index("trainer") > names.index("gateway") > names.index("torchserve")
