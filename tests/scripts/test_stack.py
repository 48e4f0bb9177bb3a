"""``make demo``'s programs (scripts/stack.py): the gateway queues retrain jobs, the supervised
trainer runs them with the same ``RETRAIN_*`` and ``TORCHSERVE_*``."""

from __future__ import annotations

import socket

from devstack.ports import free_ports
from scripts.stack import Ports, busy_ports, programs


def test_the_demo_runs_a_trainer_beside_a_gateway_that_only_queues() -> None:
    keys = {"GATEWAY_API_KEYS": "u", "GATEWAY_ADMIN_API_KEYS": "a"}
    by_name = {p.name: p for p in programs(Ports(), keys)}

    trainer, gateway = by_name["controller"], by_name["gateway"]
    assert list(trainer.command[1:]) == ["-m", "yoloserve.controller", "run"]
    assert gateway.env["RETRAIN_LAUNCHER"] == "queue"
    shared = ("RETRAIN_", "TORCHSERVE_")
    retrain = {k: v for k, v in gateway.env.items() if k.startswith(shared)}
    assert {k: v for k, v in trainer.env.items() if k.startswith(shared)} == retrain
    assert retrain["TORCHSERVE_MANAGEMENT_URL"] == "http://127.0.0.1:8086"
    assert retrain["TORCHSERVE_INFERENCE_URL"] == "http://127.0.0.1:8085"
    assert not any(k.startswith("GATEWAY_") for k in trainer.env), "no API keys in the trainer"
    names = list(by_name)
    assert names.index("controller") > names.index("gateway") > names.index("torchserve")


def test_the_demo_tracks_runs_in_its_own_mlflow_server() -> None:
    keys = {"GATEWAY_API_KEYS": "u", "GATEWAY_ADMIN_API_KEYS": "a"}
    services = programs(Ports(), keys)
    by_name = {p.name: p for p in services}

    mlflow = by_name["mlflow"]
    assert services[0] is mlflow, "started first: its first start is the slowest"
    args = list(mlflow.command)
    assert args[1:4] == ["-m", "mlflow", "server"]
    assert args[args.index("--port") + 1] == "8083"
    assert args[args.index("--host") + 1] == "127.0.0.1"
    store = args[args.index("--backend-store-uri") + 1]
    assert store.startswith("sqlite:///") and store.endswith(".run/mlflow/mlflow.db")
    assert args[args.index("--artifacts-destination") + 1].endswith(".run/mlflow/artifacts")
    assert by_name["controller"].env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:8083"
    assert by_name["gateway"].env["GATEWAY_MLFLOW_UI_URL"] == "http://127.0.0.1:8083"
    assert "MLFLOW_TRACKING_URI" not in by_name["gateway"].env, "the gateway tracks nothing"


def test_a_port_someone_else_holds_is_named_before_anything_starts() -> None:
    """A fresh machine may already run something on 8080 (the compose stack publishes it too):
    ``make demo`` names the port at once instead of waiting for a gateway that cannot bind."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        (free,) = free_ports(1)
        ports = Ports(gateway=taken, webapp=free, evidently=free, inference=free,
                      management=free, metrics=free, prometheus=free, mlflow=free)
        assert busy_ports(ports) == [f"gateway {taken}"]
    assert busy_ports(ports) == []
