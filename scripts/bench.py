"""Benchmark the serving path side by side: in-process Ultralytics vs TorchServe vs the gateway.

The bench starts its OWN TorchServe and gateway on free ports over a temporary copy of the models
(yoloserve.local_stack), never the ones of `make demo`, and stops them at the end. Per image size
(seeded synthetic scenes resized to a square, JPEG) it measures:

  raw         YOLO(weights).predict(jpeg_file, imgsz=...) in this process, with the same torch
              thread count as one TorchServe worker (handler.torch_threads; 0 = one per core)
  torchserve  POST /predictions/yolo, multipart part `data` (what the gateway sends)
  gateway     POST /predict, multipart part `file`, end to end

and prints p50/p95 latency (1 client), the ratio to raw, and throughput with 1 and N concurrent
clients. Latency is measured in paired turns (one request of each target in rotating order), so
that a machine shared with other jobs slows all targets alike; throughput in closed loops.
Sections are independent functions of a BenchContext, listed in SECTIONS; `serving` is the one
above. docs/benchmarks.md has the figures and how to read them.

    python -m scripts.bench --requests 60
    python -m scripts.bench --set batchSize=1 --set handler.torch_threads=1 --set maxWorkers=2
    python -m scripts.bench --json .run/bench.json
"""

from __future__ import annotations

import os

# Idle OpenMP threads must sleep, as in the TorchServe worker (yoloserve.ts_process): spinning
# threads on a shared 2-core box would make the in-process figures unfairly slow.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402  (the environment above comes before torch is imported)
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Mapping  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Any  # noqa: E402

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import typer  # noqa: E402
import yaml  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from yoloserve import paths  # noqa: E402
from yoloserve.bench import (  # noqa: E402
    HttpCall,
    Run,
    TorchServeCounters,
    bench_image,
    load_average,
    measure_callable,
    measure_http,
    measure_paired,
    send,
)
from yoloserve.local_stack import LocalStack  # noqa: E402
from yoloserve.offline import configure_offline  # noqa: E402
from yoloserve.packaging import MODEL_CONFIG, MODEL_NAME  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__)

# Goals of the serving section (issue 2): the stack adds at most 10 % to a lone request at
# 640 px, and concurrent clients get at least the throughput of raw sequential predict.
GOAL_P50_RATIO = 1.10
GOAL_THROUGHPUT_RATIO = 1.0


@dataclass
class BenchContext:
    """What every section gets: the running stack, the images and the run options."""

    stack: LocalStack
    images: dict[int, bytes]
    image_files: dict[int, Path]
    requests: int
    warmup: int
    clients: int
    rounds: int
    model_config: dict[str, Any]
    console: Console
    raw_threads: int | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    @property
    def handler_config(self) -> dict[str, Any]:
        """The ``handler:`` section of the packed model YAML."""
        return dict(self.model_config.get("handler") or {})

    @property
    def torch_threads(self) -> int:
        """Torch threads of one worker, as serving/handler.py decides them."""
        return int(self.handler_config.get("torch_threads") or 0) or (os.cpu_count() or 1)

    @property
    def raw_torch_threads(self) -> int:
        """Torch threads of the in-process baseline: the worker's, unless set on purpose."""
        return self.raw_threads or self.torch_threads

    @property
    def imgsz(self) -> int:
        """Inference size of the served model."""
        return int(self.handler_config.get("imgsz", 320))


Section = Callable[[BenchContext], dict[str, Any]]


# ---------------------------------------------------------------------------------- measuring

def _merge(runs: list[Run]) -> Run:
    """Several rounds of one measurement as one run (latencies pooled, wall times added)."""
    first = runs[0]
    keys = {key for run in runs for key in run.server}
    server = {
        key: round(sum(r.server.get(key, 0.0) * r.requests for r in runs)
                   / max(1, sum(r.requests for r in runs if key in r.server)), 2)
        for key in keys
    }
    return Run(
        first.name,
        first.clients,
        [ms for run in runs for ms in run.latencies_ms],
        sum(run.wall_s for run in runs),
        sum(run.errors for run in runs),
        [stage for run in runs for stage in run.stages],
        server,
    )


def raw_predictor(ctx: BenchContext) -> Callable[[Path], object]:
    """``YOLO(weights).predict`` with the worker's thread count, loaded once per bench run."""
    if "raw" not in ctx.cache:
        import torch
        from ultralytics import YOLO

        model = YOLO(str(ctx.stack.weights))
        conf = float(ctx.handler_config.get("conf", 0.25))
        iou = float(ctx.handler_config.get("iou", 0.7))

        def predict(path: Path) -> object:
            return model.predict(str(path), imgsz=ctx.imgsz, conf=conf, iou=iou, verbose=False)

        # The first predict builds the predictor, whose select_device() sets torch's threads to
        # cpu_count - 1; the worker sets its own count after loading, so we do the same here.
        predict(next(iter(ctx.image_files.values())))
        torch.set_num_threads(ctx.raw_torch_threads)
        ctx.cache["raw"] = predict
    predictor: Callable[[Path], object] = ctx.cache["raw"]
    return predictor


def _handler_stages(body: Any) -> Mapping[str, float]:
    return dict(body.get("timing_ms") or {})


def _gateway_stages(body: Any) -> Mapping[str, float]:
    timing = body.get("timing_ms") or {}
    return {k: v for k, v in timing.items() if isinstance(v, int | float)}


def serving_calls(ctx: BenchContext, image: bytes) -> dict[str, HttpCall]:
    """The two HTTP requests of the serving section for one image."""
    ts = ctx.stack.torchserve
    return {
        "torchserve": HttpCall(
            "POST",
            f"{ts.inference_url}/predictions/{MODEL_NAME}",
            files={"data": ("image", image, "application/octet-stream")},
            stages=_handler_stages,
        ),
        "gateway": HttpCall(
            "POST",
            f"{ctx.stack.gateway_url}/predict",
            files={"file": ("bench.jpg", image, "image/jpeg")},
            headers={"X-API-Key": ctx.stack.user_key},
            stages=_gateway_stages,
        ),
    }


def _ratio(a: float, b: float) -> float:
    return round(a / b, 3) if b else float("nan")


def _paired_latency(ctx: BenchContext, size: int, http: httpx.Client) -> dict[str, Run]:
    predict, path = raw_predictor(ctx), ctx.image_files[size]
    calls = serving_calls(ctx, ctx.images[size])
    counters = TorchServeCounters(ctx.stack.torchserve.metrics_url)

    def raw() -> tuple[float, Mapping[str, float], Mapping[str, float]]:
        t0 = time.perf_counter()
        results: Any = predict(path)
        return (time.perf_counter() - t0) * 1e3, dict(results[0].speed), {}

    def over_http(call: HttpCall) -> Callable[[], tuple[float, Any, Mapping[str, float]]]:
        def once() -> tuple[float, Any, Mapping[str, float]]:
            before = counters.read()  # outside the timed part; TorchServe's own view of it
            ms, body = send(http, call)
            stages = call.stages(body) if call.stages is not None else {}
            return ms, stages, TorchServeCounters.means(before, counters.read())

        return once

    targets = {"raw": raw, **{f"{name}@1": over_http(call) for name, call in calls.items()}}
    return measure_paired(targets, ctx.requests, ctx.warmup)


def _serving_size(ctx: BenchContext, size: int) -> dict[str, Any]:
    with httpx.Client(timeout=120.0) as http:
        runs = _paired_latency(ctx, size, http)
    # Throughput: blocks of raw sequential predict and of N concurrent clients, in rounds that
    # interleave them, so that a change of background load hits all of them alike.
    predict, path = raw_predictor(ctx), ctx.image_files[size]
    calls = serving_calls(ctx, ctx.images[size])
    rounds: dict[str, list[Run]] = {}
    per_round = max(1, ctx.requests // ctx.rounds)
    for _ in range(ctx.rounds):
        rounds.setdefault("raw-sequential", []).append(
            measure_callable(lambda: predict(path), per_round, 1, "raw-sequential")
        )
        for name, call in calls.items():
            rounds.setdefault(f"{name}@{ctx.clients}", []).append(
                measure_http(call, per_round, ctx.warmup, ctx.clients, name)
            )
    runs.update({key: _merge(value) for key, value in rounds.items()})
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    out: dict[str, Any] = {"image_bytes": len(ctx.images[size]), "runs": {}}
    for key, run in runs.items():
        out["runs"][key] = run.summary()
    out["ratios"] = {
        name: {
            # Against the raw loop (the usual benchmark figure, and the stricter one: a tight
            # loop keeps caches and OpenMP threads hot, which turns between requests do not).
            "p50_vs_raw": _ratio(runs[f"{name}@1"].p50_ms, raw_seq.p50_ms),
            "p95_vs_raw": _ratio(runs[f"{name}@1"].p95_ms, raw_seq.p95_ms),
            # Median of the per-turn ratios: robust to load that moves both figures.
            "paired_median_vs_raw": round(float(np.median(
                np.array(runs[f"{name}@1"].latencies_ms) / np.array(raw.latencies_ms)
            )), 3),
            f"throughput_{ctx.clients}_vs_raw_sequential": _ratio(
                runs[f"{name}@{ctx.clients}"].throughput, raw_seq.throughput
            ),
        }
        for name in calls
    }
    _print_serving(ctx, size, runs, out["ratios"])
    return out


def _mean(run: Run) -> float:
    return float(sum(run.latencies_ms) / len(run.latencies_ms)) if run.latencies_ms else 0.0


def _breakdown(runs: dict[str, Run]) -> Table:
    """Where a lone request's time goes, from the client's clock and the servers' own."""
    raw, ts, gw = runs["raw"], runs["torchserve@1"], runs["gateway@1"]
    raw_stages, handler = raw.stage_means(), ts.stage_means()
    handler_sum = sum(handler.get(k, 0.0) for k in ("preprocess", "inference", "postprocess"))
    ts_front, ts_queue = ts.server.get("frontend_ms", 0.0), ts.server.get("queue_ms", 0.0)
    gw_stages = gw.stage_means()
    gw_total, gw_model = gw_stages.get("total", 0.0), gw_stages.get("model", 0.0)
    gw_front = gw.server.get("frontend_ms", 0.0)
    table = Table(title="where a lone request's time goes (mean ms, 1 client)")
    for column in ("stage", "raw", "torchserve", "gateway"):
        table.add_column(column, justify="left" if column == "stage" else "right")

    def row(stage: str, *values: float | None) -> None:
        table.add_row(stage, *("" if v is None else f"{v:.1f}" for v in values))

    row("client round trip / predict() call", _mean(raw), _mean(ts), _mean(gw))
    row("  client + uvicorn (outside the route)", None, None, _mean(gw) - gw_total)
    row("  gateway route (upload checks, JSON)", None, None, gw_total - gw_model)
    row("  client/gateway -> TorchServe HTTP", None, _mean(ts) - ts_front, gw_model - gw_front)
    row("  TorchServe frontend, receive -> answer", None, ts_front, gw_front)
    row("    queue + batch wait (maxBatchDelay)", None, ts_queue, gw.server.get("queue_ms"))
    row("    worker IPC + protocol + JSON", None, ts_front - ts_queue - handler_sum, None)
    for stage in ("preprocess", "inference", "postprocess"):
        row(f"    {stage} (handler / Ultralytics speed)", raw_stages.get(stage),
            handler.get(stage), None)
    return table


def _print_serving(
    ctx: BenchContext, size: int, runs: dict[str, Run], ratios: dict[str, dict[str, float]]
) -> None:
    raw, raw_seq = runs["raw"], runs["raw-sequential"]
    table = Table(title=f"serving, {size}x{size} px JPEG ({len(ctx.images[size]) // 1024} KiB), "
                        f"imgsz {ctx.imgsz}, {raw.requests} requests per figure")
    for column in ("target", "p50 ms", "p95 ms", "p50 / raw", "paired / raw", "req/s 1 client",
                   f"req/s {ctx.clients} clients", f"{ctx.clients} clients / raw seq"):
        table.add_column(column, justify="right" if column != "target" else "left")
    table.add_row("raw, loop", f"{raw_seq.p50_ms:.1f}", f"{raw_seq.p95_ms:.1f}", "1.00", "",
                  f"{raw_seq.throughput:.2f}", "", "1.00")
    table.add_row("raw, paired turns", f"{raw.p50_ms:.1f}", f"{raw.p95_ms:.1f}",
                  f"{raw.p50_ms / raw_seq.p50_ms:.2f}", "1.00", f"{raw.throughput:.2f}", "", "")
    for name in ("torchserve", "gateway"):
        one, many = runs[f"{name}@1"], runs[f"{name}@{ctx.clients}"]
        ratio = ratios[name]
        table.add_row(name, f"{one.p50_ms:.1f}", f"{one.p95_ms:.1f}",
                      f"{ratio['p50_vs_raw']:.2f}", f"{ratio['paired_median_vs_raw']:.2f}",
                      f"{one.throughput:.2f}", f"{many.throughput:.2f}",
                      f"{ratio[f'throughput_{ctx.clients}_vs_raw_sequential']:.2f}")
    ctx.console.print(table)
    ctx.console.print(_breakdown(runs))
    gateway = ratios["gateway"]
    ctx.console.print(
        f"  goals: gateway p50 / raw p50 = {gateway['p50_vs_raw']:.2f} (paired "
        f"{gateway['paired_median_vs_raw']:.2f}; goal <= {GOAL_P50_RATIO} at 640 px); gateway "
        f"{ctx.clients} clients / raw sequential throughput = "
        f"{gateway[f'throughput_{ctx.clients}_vs_raw_sequential']:.2f} "
        f"(goal >= {GOAL_THROUGHPUT_RATIO})"
    )


def _warm_stack(ctx: BenchContext, requests: int = 40) -> None:
    # The Java frontend runs interpreted until its JIT has seen a few hundred requests, and
    # every worker builds its kernels on first use: warm all of it once, through the gateway,
    # so the first figure is not the slow one.
    for size, image in ctx.images.items():
        measure_http(serving_calls(ctx, image)["gateway"], requests, 0, max(ctx.clients, 2),
                     f"warm-up {size}")


def serving_section(ctx: BenchContext) -> dict[str, Any]:
    """Raw vs TorchServe vs gateway, latency and throughput, per image size."""
    ctx.console.print(f"[bold]serving[/bold]: raw in-process with {ctx.raw_torch_threads} torch "
                      f"threads; each TorchServe worker has {ctx.torch_threads}")
    _warm_stack(ctx)
    return {
        "worker_torch_threads": ctx.torch_threads,
        "raw_torch_threads": ctx.raw_torch_threads,
        "imgsz": ctx.imgsz,
        "sizes": {str(size): _serving_size(ctx, size) for size in ctx.images},
    }


# Another section is one function of the context added here (feedback, hotswap, ...).
SECTIONS: dict[str, Section] = {"serving": serving_section}


# ---------------------------------------------------------------------------------- the CLI

def _set_dotted(config: dict[str, Any], assignment: str) -> None:
    key, sep, value = assignment.partition("=")
    if not sep or not key:
        raise typer.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
    *parents, leaf = key.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = yaml.safe_load(value)  # "1" -> 1, "true" -> True, as in the YAML file


def _properties(assignments: list[str]) -> dict[str, str]:
    out = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
        out[key.strip()] = value.strip()
    return out


def _machine() -> dict[str, Any]:
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average_start": load_average(),
    }


def report_markdown(report: dict[str, Any]) -> str:
    """The serving figures of a report as Markdown: the command, the conditions, one table."""
    machine, serving = report["machine"], report["sections"].get("serving")
    lines = [
        f"`{report['command']}`",
        "",
        f"{machine['cpu_count']} cores, torch {machine['torch']}; load average (1/5/15 min) "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_start'])} at start, "
        f"{' / '.join(f'{v:.2f}' for v in machine['load_average_end'])} at end.",
    ]
    if serving is None:
        return "\n".join(lines) + "\n"
    clients = report["options"]["clients"]
    lines += [
        f"Worker torch threads {serving['worker_torch_threads']}, raw in-process "
        f"{serving['raw_torch_threads']}; imgsz {serving['imgsz']}.",
        "",
        f"| image | target | p50 ms | p95 ms | p50 / raw | paired / raw | req/s 1 client | "
        f"req/s {clients} clients | {clients} clients / raw seq |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for size, figures in serving["sizes"].items():
        runs, ratios = figures["runs"], figures["ratios"]
        raw, seq = runs["raw"], runs["raw-sequential"]
        lines.append(f"| {size} px | raw, loop | {seq['p50_ms']:.1f} | {seq['p95_ms']:.1f} | "
                     f"1.00 | | {seq['throughput_rps']:.2f} | | 1.00 |")
        lines.append(f"| {size} px | raw, paired turns | {raw['p50_ms']:.1f} | "
                     f"{raw['p95_ms']:.1f} | {raw['p50_ms'] / seq['p50_ms']:.2f} | 1.00 | "
                     f"{raw['throughput_rps']:.2f} | | |")
        for name in ("torchserve", "gateway"):
            one, many = runs[f"{name}@1"], runs[f"{name}@{clients}"]
            ratio = ratios[name]
            lines.append(
                f"| {size} px | {name} | {one['p50_ms']:.1f} | {one['p95_ms']:.1f} | "
                f"{ratio['p50_vs_raw']:.2f} | {ratio['paired_median_vs_raw']:.2f} | "
                f"{one['throughput_rps']:.2f} | "
                f"{many['throughput_rps']:.2f} | "
                f"{ratio[f'throughput_{clients}_vs_raw_sequential']:.2f} |"
            )
    return "\n".join(lines) + "\n"


@app.command()
def main(
    requests: Annotated[int, typer.Option(help="Timed requests per figure.")] = 40,
    warmup: Annotated[int, typer.Option(help="Untimed requests before each figure.")] = 5,
    sizes: Annotated[str, typer.Option(help="Image sizes in px, comma-separated.")] = "640,320",
    clients: Annotated[int, typer.Option(help="Concurrent clients of the throughput run.")] = 8,
    rounds: Annotated[
        int, typer.Option(help="Split the throughput runs into rounds that interleave the targets.")
    ] = 2,
    sections: Annotated[
        str, typer.Option(help=f"Sections to run, comma-separated: {', '.join(SECTIONS)}.")
    ] = "serving",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every figure (raw latencies too) here.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the serving table as Markdown here.")
    ] = None,
    weights: Annotated[Path, typer.Option(help="Weights to serve.")] = paths.DEFAULT_WEIGHTS,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a model-config.yaml key, e.g. batchSize=1 or "
                                   "handler.torch_threads=1 (repeatable)."),
    ] = None,
    ts_property: Annotated[
        list[str] | None,
        typer.Option(help="Override a config.properties key, KEY=VALUE (repeatable)."),
    ] = None,
    raw_threads: Annotated[
        int | None,
        typer.Option(help="Torch threads of the in-process baseline; default: a worker's."),
    ] = None,
    workdir: Annotated[
        Path | None,
        typer.Option(help="Keep the stack (logs included) in this new folder; default: a "
                          "temporary folder, removed at the end."),
    ] = None,
) -> None:
    """Start a private TorchServe + gateway, run the sections, print and save the figures."""
    configure_offline()
    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise typer.BadParameter(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    size_list = [int(s) for s in sizes.split(",") if s.strip()]
    model_config = yaml.safe_load(MODEL_CONFIG.read_text())
    for assignment in set_ or []:
        _set_dotted(model_config, assignment)
    properties = _properties(ts_property or [])
    console = Console(width=150)

    with tempfile.TemporaryDirectory(prefix="yoloserve-bench-") as tmp:
        root = workdir or Path(tmp) / "stack"
        config_file = None
        if set_:
            config_file = Path(tmp) / "model-config.yaml"
            config_file.write_text(yaml.safe_dump(model_config, sort_keys=False))
        images = {size: bench_image(size) for size in size_list}
        image_files = {}
        for size, data in images.items():
            image_files[size] = Path(tmp) / f"bench_{size}.jpg"
            image_files[size].write_bytes(data)
        console.print(f"starting TorchServe + gateway under {root} ...")
        t0 = time.perf_counter()
        stack = LocalStack.create(
            root, weights=weights, model_config=config_file, ts_properties=properties
        )
        with stack:
            console.print(f"stack ready in {time.perf_counter() - t0:.0f} s: torchserve "
                          f"{stack.torchserve.inference_url}, gateway {stack.gateway_url}")
            ctx = BenchContext(stack, images, image_files, requests, warmup, clients, rounds,
                               model_config, console, raw_threads)
            report: dict[str, Any] = {
                "command": shlex.join(["python", "-m", "scripts.bench", *sys.argv[1:]]),
                "options": {"requests": requests, "warmup": warmup, "sizes": size_list,
                            "clients": clients, "rounds": rounds, "set": set_ or [],
                            "ts_property": properties, "raw_threads": raw_threads},
                "machine": _machine(),
                "model_config": model_config,
                "sections": {},
            }
            for name in chosen:
                report["sections"][name] = SECTIONS[name](ctx)
            report["machine"]["load_average_end"] = load_average()
        console.print(f"load average at start {report['machine']['load_average_start']}, "
                      f"at end {report['machine']['load_average_end']}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"figures written to {json_out}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report))
        console.print(f"Markdown table written to {markdown}")


if __name__ == "__main__":
    app()
