"""The production path, run for real: every image built, the compose stack started and operated.

One module-scoped stack (its own compose project, free host ports, its own volumes) built from
the local Debian base (no hub is reachable here) with the same code `make images` / `make up` /
`make down` run (scripts.containers). The engine is podman + podman-compose where no Docker
engine answers; `make setup` installs both and debootstrap. Checked, in order:

- every service's healthcheck passes; the gateway answers real photos with boxes;
- feedback is accepted and written;
- a redeploy through the operator verb changes ``X-Model-Version`` while 4 clients keep
  predicting, with no failed request;
- TorchServe's management API is reachable neither from the host nor from the frontend
  network (the web app's container), and the gateway image cannot import torch;
- ``down`` then ``up`` finds the feedback rows and the redeployed default version again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.ports import free_ports
from scripts import containers

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "data" / "samples"
PHOTOS = [SAMPLES / "photo_1.jpg", SAMPLES / "photo_2.jpg", SAMPLES / "shapes_640.png"]
BASE = "localhost/yoloserve-base:bookworm"

pytestmark = pytest.mark.containers


class Compose:
    """The test's compose project, driven through ``python -m scripts.containers``."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def cli(self, *args: str, timeout: float = 1800, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "scripts.containers", *args], cwd=ROOT,
                                env=self.env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"scripts.containers {' '.join(args)} failed "
                                 f"({result.returncode}):\n{result.stdout[-3000:]}\n"
                                 f"{result.stderr[-6000:]}")
        return result

    def engine(self) -> str:
        return containers.engine()  # the one make up uses (CONTAINER_ENGINE, else detected)

    def container(self, service: str) -> str:
        out = subprocess.run(
            [self.engine(), "ps", "--filter",
             f"label=com.docker.compose.project={self.env['COMPOSE_PROJECT']}",
             "--filter", f"label=com.docker.compose.service={service}",
             "--format", "{{.Names}}"],
            env=self.env, capture_output=True, text=True, check=True)
        names = out.stdout.split()
        assert names, f"no running container for {service}"
        return names[0]

    def logs(self, service: str, lines: int = 60) -> str:
        out = subprocess.run([self.engine(), "logs", "--tail", str(lines), self.container(service)],
                             env=self.env, capture_output=True, text=True, check=False)
        return f"--- {service} ---\n{out.stdout}{out.stderr}"

    def exec(self, service: str, *cmd: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.engine(), "exec", self.container(service), *cmd],
                              env=self.env, capture_output=True, text=True, timeout=120,
                              check=False)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Compose]:
    gateway, webapp, evidently = free_ports(3)
    env = {
        **os.environ,
        "COMPOSE_PROJECT": f"yoloserve-test-{os.getpid()}",
        "GATEWAY_PORT": str(gateway),
        "WEBAPP_PORT": str(webapp),
        "EVIDENTLY_PORT": str(evidently),
        # Published on every address, as in production: the check below sees what is published.
        "PUBLISH_ADDRESS": "0.0.0.0",
        "BASE_IMAGE": BASE,
        "IMAGE_TAG": "test",  # the layers are shared with `make images`, the names are not
        "GATEWAY_API_KEYS": "test-user",
        "GATEWAY_ADMIN_API_KEYS": "test-admin",
    }
    compose = Compose(env)
    started = time.monotonic()
    compose.cli("local-base", "--tag", BASE)
    compose.cli("images", "--base", BASE)
    built = time.monotonic()
    compose.cli("up")
    print(f"\ncontainer test: images {built - started:.0f} s, up {time.monotonic() - built:.0f} s")
    try:
        yield compose
    finally:
        compose.cli("down", "--volumes", check=False, timeout=300)


@pytest.fixture(scope="module")
def gateway_url(compose: Compose) -> str:
    return f"http://127.0.0.1:{compose.env['GATEWAY_PORT']}"


def _predict(client: httpx.Client, url: str, photo: Path) -> httpx.Response:
    with photo.open("rb") as fh:
        return client.post(f"{url}/predict", files={"file": (photo.name, fh)}, timeout=60)


def test_every_service_is_healthy(compose: Compose) -> None:
    compose.cli("wait", "--timeout", "60")
    for service in ("serving", "controller", "gateway", "webapp", "reporting", "reporting-worker"):
        assert compose.container(service)


def test_gateway_answers_real_photos(gateway_url: str) -> None:
    with httpx.Client() as client:
        for photo in PHOTOS:
            response = _predict(client, gateway_url, photo)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model"]["version"] == response.headers["X-Model-Version"]
            assert isinstance(body["boxes"], list)
        shapes = _predict(client, gateway_url, SAMPLES / "shapes_1.jpg").json()
        assert shapes["boxes"], "the shipped model finds shapes in its own kind of scene"


def _feedback(client: httpx.Client, url: str, photo: Path) -> dict[str, Any]:
    labels = {"boxes": [{"xyxy": [10, 10, 120, 120], "name": "square"}]}
    with photo.open("rb") as fh:
        response = client.post(f"{url}/feedback", headers={"X-API-Key": "test-user"},
                               files={"file": (photo.name, fh)},
                               data={"labels": json.dumps(labels)}, timeout=120)
    assert response.status_code == 201, response.text
    return dict(response.json())


def prod_rows(compose: Compose) -> int:
    out = compose.exec("gateway", "python", "-c",
                       "import csv; print(sum(1 for _ in csv.reader(open('/data/prod_data.csv')))"
                       " - 1)")
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip())


def wait_prod_rows(compose: Compose, expected: int, timeout_s: float = 30.0) -> None:
    """Wait until ``prod_data.csv`` holds ``expected`` rows: the gateway appends the store's
    rows to it moments after each commit (docs/api-contract.md), not inside the request."""
    deadline = time.monotonic() + timeout_s
    while (found := prod_rows(compose)) != expected:
        assert time.monotonic() < deadline, f"prod_data.csv has {found} rows, not {expected}"
        time.sleep(0.2)


def test_feedback_is_written(compose: Compose, gateway_url: str) -> None:
    with httpx.Client() as client:
        answers = [_feedback(client, gateway_url, p) for p in PHOTOS[:2]]
    assert all(a["rows_written"] >= 1 for a in answers)
    wait_prod_rows(compose, answers[-1]["prod_rows_total"])


def other_weights(tmp_path: Path) -> Path:
    """The shipped model with other bytes (a changed note), so packaging makes a new version."""
    import torch

    ckpt = torch.load(ROOT / "models" / "default" / "best.pt", map_location="cpu",
                      weights_only=False)
    ckpt["date"] = f"container test {time.time()}"
    out = tmp_path / "best.pt"
    torch.save(ckpt, out)
    return out


def test_redeploy_swaps_versions_with_no_failed_request(
    compose: Compose, gateway_url: str, tmp_path: Path
) -> None:
    with httpx.Client() as client:
        before = _predict(client, gateway_url, PHOTOS[0]).headers["X-Model-Version"]
    versions: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client() as client:
            while not stop.is_set():
                sent = time.strftime("%H:%M:%S")
                try:
                    response = _predict(client, gateway_url, PHOTOS[0])
                except httpx.HTTPError as exc:
                    failures.append(f"sent {sent}: {exc!r}")
                    continue
                if response.status_code != 200:
                    failures.append(f"sent {sent}, failed {time.strftime('%H:%M:%S')}: "
                                    f"{response.status_code} {response.text[:200]}")
                else:
                    versions.append(response.headers["X-Model-Version"])

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        # onnx named: the bootstrap already ran auto in the containers; a swap is what this tests.
        compose.cli("redeploy", "--weights", str(other_weights(tmp_path)), "--runtime", "onnx",
                    timeout=600)
        time.sleep(3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if failures:
        report = ROOT / "tests" / "artifacts" / "containers-redeploy.log"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text("\n".join([*failures, compose.logs("gateway", 200),
                                      compose.logs("serving", 3000),
                                      compose.logs("controller", 100)]))
        raise AssertionError(f"{len(failures)} failed requests, first: {failures[0][:300]}; "
                             f"logs in {report}")
    assert versions[0] == before and versions[-1] != before, (before, versions[-5:])
    assert int(versions[-1]) > int(before)


def host_addresses() -> list[str]:
    """This machine's IPv4 addresses but loopback (where `make demo`'s TorchServe may listen)."""
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, check=False)
    return [a for a in out.stdout.split() if "." in a and not a.startswith("127.")]


def test_management_api_is_not_reachable(compose: Compose, gateway_url: str) -> None:
    serving = compose.container("serving")
    ports = subprocess.run([compose.engine(), "port", serving], env=compose.env,
                           capture_output=True, text=True, check=False)
    assert ports.stdout.strip() == "", f"serving publishes ports: {ports.stdout}"
    inspect = subprocess.run([compose.engine(), "inspect", serving, "--format", "json"],
                             env=compose.env, capture_output=True, text=True, check=True)
    networks = json.loads(inspect.stdout)[0]["NetworkSettings"]["Networks"]
    addresses = [n["IPAddress"] for n in networks.values() if n.get("IPAddress")]
    assert addresses and all(name.endswith("backend") for name in networks), networks
    # From the host: its addresses answer on the gateway's published port, and on none of
    # TorchServe's. (The host's root namespace can still route to the backend bridge itself, as
    # with any bridge network: that is an operator on the machine, not a client.)
    hosts = host_addresses()
    assert hosts
    for host in hosts:
        published = httpx.get(f"http://{host}:{compose.env['GATEWAY_PORT']}/health", timeout=5)
        assert published.status_code == 200
        for port in (8085, 8086, 8087):
            with pytest.raises(httpx.HTTPError):
                httpx.get(f"http://{host}:{port}/models", timeout=3)
    probe = ("import sys, urllib.request\n"
             "for url in sys.argv[1:]:\n"
             "    try:\n"
             "        urllib.request.urlopen(url, timeout=3)\n"
             "    except Exception as exc:\n"
             "        print('refused', url, type(exc).__name__)\n"
             "    else:\n"
             "        print('REACHED', url)\n")
    urls = ["http://serving:8086/models", *(f"http://{a}:8086/models" for a in addresses)]
    out = compose.exec("webapp", "python", "-c", probe, *urls)  # the frontend network
    assert out.returncode == 0, out.stderr
    assert "REACHED" not in out.stdout and out.stdout.count("refused") == len(urls), out.stdout
    # The gateway reaches it (backend) and its image carries no torch.
    gateway = compose.exec("gateway", "python", "-c", "import torch")
    assert gateway.returncode != 0 and "No module named 'torch'" in gateway.stderr


def test_the_serving_image_is_lean(compose: Compose) -> None:
    """The worker image runs the export without Ultralytics or torchvision, on a CPU torch."""
    probe = ("import importlib.util, torch\n"
             "print([m for m in ('ultralytics', 'torchvision') if importlib.util.find_spec(m)])\n"
             "print(torch.version.cuda)\n")
    out = compose.exec("serving", "python", "-c", probe)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "None"], out.stdout
    # The worker's resident memory, for docs/benchmarks.md (a figure, not a limit: -s shows it).
    rss = ("import os, pathlib\n"
           "for proc in pathlib.Path('/proc').glob('[0-9]*'):\n"
           "    try:\n"
           "        if proc.name != str(os.getpid()) and \\\n"
           "                b'model_service_worker' in (proc / 'cmdline').read_bytes():\n"
           "            print([l for l in (proc / 'status').read_text().splitlines()\n"
           "                   if l.startswith('VmRSS')][0])\n"
           "    except OSError:\n"
           "        pass\n")
    print("\nserving worker", compose.exec("serving", "python", "-c", rss).stdout.strip())
    # What it serves answers, and the bootstrap's version 1 was packaged with RUNTIME=auto: the
    # runtime chosen inside the containers (the redeploy test may have made another the default).
    url = f"http://127.0.0.1:{compose.env['GATEWAY_PORT']}"
    with httpx.Client() as client:
        shapes = _predict(client, url, SAMPLES / "shapes_2.jpg")
        assert shapes.status_code == 200 and shapes.json()["boxes"], shapes.text
        models = client.get(f"{url}/models", headers={"X-API-Key": "test-user"}).json()
    first = next(v for v in models["versions"] if v["version"] == "1")
    assert first["selection"]["chosen"] == first["runtime"], first["selection"]
    print("auto in the containers chose", first["runtime"], first["selection"]["p50_ms"])


def test_down_then_up_keeps_feedback_and_version(compose: Compose, gateway_url: str) -> None:
    rows = prod_rows(compose)
    with httpx.Client() as client:
        version = _predict(client, gateway_url, PHOTOS[0]).headers["X-Model-Version"]
    compose.cli("down", timeout=300)
    compose.cli("up")
    wait_prod_rows(compose, rows)
    with httpx.Client() as client:
        response = _predict(client, gateway_url, PHOTOS[0])
        assert response.status_code == 200
        assert response.headers["X-Model-Version"] == version
        models = client.get(f"{gateway_url}/models").json()
    assert str(models["default_version"]) == version
