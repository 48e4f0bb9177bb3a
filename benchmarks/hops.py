"""The hops section: what each way of reaching TorchServe costs, and the gateway route's own work.

Per image (the real photos, else the synthetic squares), one client, paired turns:

  rest-multipart  POST /predictions/yolo with the multipart part ``data`` (what the gateway sends)
  rest-body       POST /predictions/yolo with the image as the whole body
  grpc            TorchServe's gRPC inference API (``inference.proto``, ``Predictions``), one
                  channel kept open, as the gateway would hold it

and, in this process, what the gateway's route does to a request besides the model call: the
header sniff of the upload (``inspect_image``) and the parse of the handler's answer with and
without the schema validation of each box. ``docs/benchmarks.md`` records what was kept.

The gRPC stubs are compiled at run time from the ``.proto`` files inside TorchServe's own
frontend jar (grpcio-tools, a dev dependency), so they always match the server.

    python -m benchmarks --sections hops --requests 60
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
from rich.table import Table

from benchmarks.context import BenchContext
from benchmarks.measure import Turn, measure_paired
from benchmarks.serving import BenchImage, bench_images
from devstack.torchserve import read_properties
from yoloserve.modelserver.packaging import MODEL_NAME


def grpc_stubs(workdir: Path) -> tuple[ModuleType, ModuleType]:
    """``inference_pb2`` and ``inference_pb2_grpc``, compiled from TorchServe's jar."""
    import ts
    from grpc_tools import protoc

    jar = Path(ts.__file__).parent / "frontend" / "model-server.jar"
    protos = workdir / "protos"
    with zipfile.ZipFile(jar) as archive:
        for member in archive.namelist():
            if member.endswith(".proto") and not member.startswith("proto/"):
                archive.extract(member, protos)
    include = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    code = protoc.main(["protoc", f"-I{protos}", f"-I{include}", f"--python_out={workdir}",
                        f"--grpc_python_out={workdir}", str(protos / "inference.proto")])
    if code != 0:
        raise RuntimeError(f"protoc failed on {protos / 'inference.proto'} ({code})")
    sys.path.insert(0, str(workdir))
    import inference_pb2
    import inference_pb2_grpc

    return inference_pb2, inference_pb2_grpc


def _grpc_target(ctx: BenchContext) -> str:
    props = read_properties(ctx.stack.torchserve.config_path)
    return f"127.0.0.1:{props['grpc_inference_port']}"


def _timed(send: Callable[[], Any]) -> Callable[[], Turn]:
    def once() -> Turn:
        t0 = time.perf_counter()
        send()
        return (time.perf_counter() - t0) * 1e3, {}, {}

    return once


def _hops_image(ctx: BenchContext, image: BenchImage, http: httpx.Client, stub: Any,
                pb2: ModuleType) -> dict[str, Any]:
    url = f"{ctx.stack.torchserve.inference_url}/predictions/{MODEL_NAME}"

    def check(response: httpx.Response) -> None:
        if response.status_code != 200:
            raise RuntimeError(f"{url}: {response.status_code} {response.text[:200]}")

    def multipart() -> None:
        check(http.post(url, files={"data": ("image", image.data, "application/octet-stream")}))

    def body() -> None:
        check(http.post(url, content=image.data,
                        headers={"Content-Type": "application/octet-stream"}))

    def grpc_call() -> None:
        request = pb2.PredictionsRequest(model_name=MODEL_NAME, input={"data": image.data})
        json.loads(stub.Predictions(request, timeout=60).prediction)

    targets = {"rest-multipart": _timed(multipart), "rest-body": _timed(body),
               "grpc": _timed(grpc_call)}
    runs = measure_paired(targets, ctx.requests, ctx.warmup)
    return {name: run.summary() for name, run in runs.items()}


def _route_work(ctx: BenchContext, image: BenchImage, http: httpx.Client) -> dict[str, float]:
    """Microseconds per call of the gateway route's own steps, on this image's real answer."""
    from gateway.prediction import _parse_handler_answer
    from yoloserve.images import inspect_image

    url = f"{ctx.stack.torchserve.inference_url}/predictions/{MODEL_NAME}"
    raw = http.post(url, params={"conf": 0.01},
                    files={"data": ("image", image.data, "application/octet-stream")}).content
    info = inspect_image(image.data, 40_000_000)
    answer = json.loads(raw)

    def per_call_us(fn: Callable[[], Any], n: int = 200) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        return round((time.perf_counter() - t0) / n * 1e6, 1)

    return {
        "boxes": len(answer.get("boxes", [])),
        "inspect_image_us": per_call_us(lambda: inspect_image(image.data, 40_000_000)),
        "json_loads_us": per_call_us(lambda: json.loads(raw)),
        "parse_and_validate_us": per_call_us(lambda: _parse_handler_answer(json.loads(raw), info)),
    }


def hops_section(ctx: BenchContext) -> dict[str, Any]:
    """REST multipart vs REST body vs gRPC to TorchServe, and the gateway route's own work."""
    import grpc

    images = [i for i in bench_images(ctx) if i.label.startswith("photo")] or bench_images(ctx)
    out: dict[str, Any] = {"images": {}}
    with tempfile.TemporaryDirectory(prefix="grpc-stubs-") as tmp:
        pb2, pb2_grpc = grpc_stubs(Path(tmp))
        with grpc.insecure_channel(_grpc_target(ctx)) as channel, \
                httpx.Client(timeout=120.0) as http:
            stub = pb2_grpc.InferenceAPIsServiceStub(channel)
            for image in images:
                out["images"][image.label] = {
                    "title": image.title,
                    "transport": _hops_image(ctx, image, http, stub, pb2),
                    "route_work": _route_work(ctx, image, http),
                }
    _print_hops(ctx, out)
    return out


def _print_hops(ctx: BenchContext, out: dict[str, Any]) -> None:
    table = Table(title=f"hops to TorchServe, 1 client, {ctx.requests} paired requests")
    for column in ("image", "transport", "p50 ms", "p95 ms", "p50 / multipart"):
        table.add_column(column, justify="left" if column in ("image", "transport") else "right")
    for label, figures in out["images"].items():
        base = figures["transport"]["rest-multipart"]["p50_ms"]
        for name, run in figures["transport"].items():
            table.add_row(label, name, f"{run['p50_ms']:.1f}", f"{run['p95_ms']:.1f}",
                          f"{run['p50_ms'] / base:.2f}")
    ctx.console.print(table)
    for label, figures in out["images"].items():
        work = figures["route_work"]
        ctx.console.print(
            f"  {label}: gateway route work per request ({work['boxes']} boxes): header sniff "
            f"{work['inspect_image_us']} us, json.loads {work['json_loads_us']} us, parse + "
            f"validate {work['parse_and_validate_us']} us"
        )


def hops_markdown(report: dict[str, Any], hops: dict[str, Any]) -> list[str]:
    """The hops figures as a Markdown table."""
    lines = ["| image | transport | p50 ms | p95 ms | p50 / multipart |", "|---|---|---|---|---|"]
    for label, figures in hops["images"].items():
        base = figures["transport"]["rest-multipart"]["p50_ms"]
        for name, run in figures["transport"].items():
            lines.append(f"| {label} | {name} | {run['p50_ms']:.1f} | {run['p95_ms']:.1f} | "
                         f"{run['p50_ms'] / base:.2f} |")
    lines.append("")
    for label, figures in hops["images"].items():
        work = figures["route_work"]
        lines.append(
            f"- {label}, gateway route work ({work['boxes']} boxes): header sniff "
            f"{work['inspect_image_us']} us, `json.loads` {work['json_loads_us']} us, parse + "
            f"validate {work['parse_and_validate_us']} us per request."
        )
    return lines
