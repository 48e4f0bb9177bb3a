"""Benchmark the platform on its own stack: ``python -m benchmarks`` (``make bench``).

The bench starts its OWN TorchServe and gateway on free ports over a temporary copy of the models
(devstack.stack), never the ones of `make demo`, runs the sections you pick and stops both at the
end. Sections (one module each, listed in benchmarks.sections.SECTIONS, run in this order):

  serving   raw in-process Ultralytics vs TorchServe vs the gateway: p50/p95 latency in paired
            turns, throughput of 1 and N clients, where a lone request's time goes
  feedback  rows/s and calls/s of N concurrent writers through POST /feedback, the same images
            through POST /predict alone, and the store path in process (FeedbackRecorder.record,
            FeedbackLedger.commit); every acknowledged row is counted back in the CSV export
  scaleout  keyed feedback after /predict from N writers through the bench's gateway (SQLite),
            then through 3 more gateways over a PostgreSQL it starts: rows/s, calls/s, every
            acknowledged row counted back in the store and the CSV (lost, duplicated); and the
            202 latency (p50/p99) of POST /models/{v}/activate and POST /retrain
  hotswap   failed requests and latency of N clients on POST /predict while the bench swaps two
            versions back and forth with yoloserve.modelserver.deploy.hot_swap_sync
  loop      RETRAIN_EVERY_K=k: feedback images until a retrain starts, then the time until the
            new version answers /predict, step by step (~4-5 min: a real fine-tune)

The bench's gateway runs with RETRAIN_EVERY_K=1e9, so no feedback starts a retrain except in
`loop`. The embedder's cost per box needs no stack: `python -m benchmarks.embeddings`.
docs/benchmarks.md has the figures and how to read them.

    python -m benchmarks --requests 60
    python -m benchmarks --set batchSize=1 --set handler.torch_threads=1 --set maxWorkers=2
    python -m benchmarks --sections feedback,hotswap --json .run/bench.json
    python -m benchmarks --sections loop --loop-k 10
    python -m benchmarks --sections scaleout --scaleout-calls 400 --scaleout-writers 32
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console

from benchmarks.context import BenchContext, SectionOptions
from benchmarks.images import bench_image, bench_photos
from benchmarks.report import load_average, machine, machine_line, report_markdown
from benchmarks.sections import DEFAULT_SECTIONS, SECTIONS, summary
from devstack.stack import LocalStack
from scripts.package import reference_images
from yoloserve import paths
from yoloserve.modelserver.export import AUTO_RUNTIME, is_int8
from yoloserve.modelserver.packaging import MODEL_CONFIG
from yoloserve.offline import configure_offline

# RETRAIN_EVERY_K of the bench's gateway: thousands of feedback rows must not start a retrain
# (a job would take both cores for minutes in the middle of the figures). `loop` sets its own.
NO_RETRAIN_EVERY_K = 1_000_000_000
# The gateway's user API key, given to LocalStack.create: the sections send it on every call.
USER_KEY = "local-user-key"

app = typer.Typer(add_completion=False, help=__doc__)

_HELP = "\n\n".join(
    ["Start a private TorchServe + gateway, run the sections, print and save the figures."]
    + [f"{name}: {summary(name)}" for name in SECTIONS]
    + ["The embedder's cost per box (no stack): python -m benchmarks.embeddings --help."]
)


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


def _chosen_sections(sections: str) -> list[str]:
    """The ``--sections`` list, checked, in the order of SECTIONS."""
    chosen = [s.strip() for s in sections.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SECTIONS]
    if unknown:
        raise typer.BadParameter(f"unknown sections {unknown}; known: {list(SECTIONS)}")
    return [name for name in SECTIONS if name in chosen]


def _write_outputs(report: dict[str, Any], json_out: Path | None, markdown: Path | None,
                   console: Console) -> None:
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1) + "\n")
        console.print(f"figures written to {json_out}")
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(report_markdown(report))
        console.print(f"Markdown table written to {markdown}")


@app.command(help=_HELP)
def main(
    requests: Annotated[int, typer.Option(help="Timed requests per figure.")] = 40,
    warmup: Annotated[int, typer.Option(help="Untimed requests before each figure.")] = 5,
    sizes: Annotated[str, typer.Option(help="Image sizes in px, comma-separated.")] = "640,320",
    photos: Annotated[
        bool, typer.Option(help="serving: also the real photos (a JPEG and a PNG).")
    ] = True,
    clients: Annotated[int, typer.Option(help="Concurrent clients of the throughput run.")] = 8,
    rounds: Annotated[
        int, typer.Option(help="Split the throughput runs into rounds that interleave the targets.")
    ] = 2,
    sections: Annotated[
        str, typer.Option(help=f"Sections to run, comma-separated, of {', '.join(SECTIONS)} "
                               "(run in that order; loop takes ~5 min).")
    ] = DEFAULT_SECTIONS,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write every figure (raw latencies too) here.")
    ] = None,
    markdown: Annotated[
        Path | None, typer.Option(help="Write the sections' tables as Markdown here.")
    ] = None,
    weights: Annotated[Path, typer.Option(help="Weights to serve.")] = paths.DEFAULT_WEIGHTS,
    runtime: Annotated[str, typer.Option(
        help="What serves them: auto (as make package: the fastest runtime that passes its gate "
        "here, INT8 calibrated on data/shapes) or a runtime name.")] = AUTO_RUNTIME,
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
    feedback_calls: Annotated[
        int, typer.Option(help="feedback: calls per workload and write path.")
    ] = SectionOptions.feedback_calls,
    feedback_writers: Annotated[
        int, typer.Option(help="feedback: concurrent writers (tasks for HTTP, threads in process).")
    ] = SectionOptions.feedback_writers,
    feedback_dense_boxes: Annotated[
        int, typer.Option(help="feedback: boxes per image of the dense workload (0: skip it).")
    ] = SectionOptions.feedback_dense_boxes,
    hotswap_requests: Annotated[
        int, typer.Option(help="hotswap: swap back and forth until the clients sent this many.")
    ] = SectionOptions.hotswap_requests,
    hotswap_clients: Annotated[
        int, typer.Option(help="hotswap: concurrent clients looping on POST /predict.")
    ] = SectionOptions.hotswap_clients,
    hotswap_pause: Annotated[
        float, typer.Option(help="hotswap: seconds between the end of a swap and the next.")
    ] = SectionOptions.hotswap_pause,
    hotswap_drain: Annotated[
        float, typer.Option(help="hotswap: the swap's drain before the old version goes.")
    ] = SectionOptions.hotswap_drain,
    hotswap_warmup: Annotated[
        int, typer.Option(help="hotswap: warm-up predictions pinned to the new version before "
                               "set-default (0: none).")
    ] = SectionOptions.hotswap_warmup,
    hotswap_ab: Annotated[
        bool, typer.Option(help="hotswap: alternate pairs of swaps without and with the warm-up "
                                "(both figures from one run).")
    ] = SectionOptions.hotswap_ab,
    scaleout_calls: Annotated[
        int, typer.Option(help="scaleout: keyed feedbacks (distinct images) per deployment.")
    ] = SectionOptions.scaleout_calls,
    scaleout_writers: Annotated[
        int, typer.Option(help="scaleout: concurrent feedback writers.")
    ] = SectionOptions.scaleout_writers,
    scaleout_gateways: Annotated[
        int, typer.Option(help="scaleout: gateway processes over the PostgreSQL store.")
    ] = SectionOptions.scaleout_gateways,
    scaleout_intents: Annotated[
        int, typer.Option(help="scaleout: timed POST /models/{v}/activate and POST /retrain "
                               "requests, each.")
    ] = SectionOptions.scaleout_intents,
    loop_k: Annotated[
        int, typer.Option(help="loop: RETRAIN_EVERY_K, feedback rows that start a retrain.")
    ] = SectionOptions.loop_k,
    loop_ref_dir: Annotated[
        Path | None,
        typer.Option(help="loop: reference dataset (RETRAIN_REF_DIR); default data/shapes if it "
                          "exists, else one generated in the workdir first."),
    ] = None,
    loop_generate_ref: Annotated[
        bool, typer.Option(help="loop: generate the reference dataset in the workdir (timed).")
    ] = False,
    loop_timeout: Annotated[
        float, typer.Option(help="loop: give up after this many seconds.")
    ] = SectionOptions.loop_timeout,
) -> None:
    """Start a private TorchServe + gateway, run the sections, print and save the figures."""
    configure_offline()
    chosen = _chosen_sections(sections)
    options = SectionOptions(
        feedback_calls, feedback_writers, feedback_dense_boxes, hotswap_requests,
        hotswap_clients, hotswap_pause, hotswap_drain, loop_k, loop_ref_dir, loop_generate_ref,
        loop_timeout, hotswap_warmup=hotswap_warmup, hotswap_ab=hotswap_ab,
        scaleout_calls=scaleout_calls, scaleout_writers=scaleout_writers,
        scaleout_gateways=scaleout_gateways, scaleout_intents=scaleout_intents,
    )
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
        # Every figure below belongs to this CPU: a ratio measured on one is not the platform's.
        console.print(f"CPU: {machine_line(machine())}")
        console.print(f"starting TorchServe + gateway under {root} ...")
        t0 = time.perf_counter()
        calibration, accuracy_set = None, None
        if runtime == AUTO_RUNTIME or is_int8(runtime):
            calibration, accuracy_set = reference_images(paths.DATA_DIR / "shapes", 200, 150)
        stack = LocalStack.create(
            root, weights=weights, user_key=USER_KEY, model_config=config_file,
            ts_properties=properties, extra_env={"RETRAIN_EVERY_K": str(NO_RETRAIN_EVERY_K)},
            runtime=runtime, calibration=calibration, accuracy_set=accuracy_set,
        )
        with stack:
            console.print(f"version 1 serves {stack.first_version.runtime}")
            console.print(f"stack ready in {time.perf_counter() - t0:.0f} s: torchserve "
                          f"{stack.torchserve.inference_url}, gateway {stack.gateway_url}")
            ctx = BenchContext(
                stack, root, USER_KEY, images, image_files, requests, warmup, clients, rounds,
                model_config, console, raw_threads, options=options,
                photos=bench_photos(Path(tmp) / "photos") if photos else {},
            )
            report: dict[str, Any] = {
                "command": shlex.join(["python", "-m", "benchmarks", *sys.argv[1:]]),
                "options": {"requests": requests, "warmup": warmup, "sizes": size_list,
                            "photos": photos,
                            "clients": clients, "rounds": rounds, "set": set_ or [],
                            "ts_property": properties, "raw_threads": raw_threads,
                            "sections": chosen, **{k: str(v) if isinstance(v, Path) else v
                                                   for k, v in vars(options).items()}},
                "machine": machine(),
                "model_config": model_config,
                "sections": {},
            }
            for name in chosen:
                report["sections"][name] = SECTIONS[name](ctx)
            report["machine"]["load_average_end"] = load_average()
        console.print(f"load average at start {report['machine']['load_average_start']}, "
                      f"at end {report['machine']['load_average_end']}")
    _write_outputs(report, json_out, markdown, console)


if __name__ == "__main__":
    app()
