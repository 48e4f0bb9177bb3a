"""Which runtime serves fastest here, with parity, and what each one holds in memory. No stack.

For every runtime it stages the archive's contents as packaging does (export, parity check on
the packed handler) and measures one handler's resident memory in a fresh process; then one
process loads every handler with TorchServe's ``Context`` (``LocalHandler``) and times lone
requests on the real photos in rotating turns, beside in-process ``YOLO(best.pt).predict(file)``
with Ultralytics' defaults. The handler's figure has no HTTP in it: it is the floor of what a
request through TorchServe and the gateway costs with that runtime.

    python -m benchmarks.runtimes                 # all runtimes, 40 requests per figure
    python -m benchmarks.runtimes --requests 100 --runtimes onnx,torch
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from benchmarks.images import bench_photos
from yoloserve import paths
from yoloserve.modelserver.export import RUNTIMES
from yoloserve.modelserver.packaging import stage
from yoloserve.offline import configure_offline

app = typer.Typer(add_completion=False, help=__doc__)

# Memory: one handler per fresh process, as in a TorchServe worker, so RSS is that runtime's.
_RSS = """
import json, sys
from pathlib import Path
import psutil
from yoloserve.modelserver.local_handler import LocalHandler
handler = LocalHandler(Path(sys.argv[1]), sys.argv[2])
for path in json.loads(sys.argv[3]).values():
    for _ in range(5):
        handler.predict(Path(path).read_bytes())
print(json.dumps({"rss_mb": round(psutil.Process().memory_info().rss / 2**20)}))
"""

# Latency: every handler and raw predict in one process, in rotating turns, so that a change of
# background load hits all of them alike. Threads are process-wide: each turn sets its own.
_TIMING = """
import json, sys, time
from pathlib import Path
import torch
from ultralytics import YOLO
from yoloserve.modelserver.local_handler import LocalHandler
staged, weights, photos, requests = sys.argv[1:5]
staged, photos, requests = json.loads(staged), json.loads(photos), int(requests)
model = YOLO(weights)
model.predict(next(iter(photos.values())), verbose=False)
raw_threads = torch.get_num_threads()  # what predict's select_device() left: the default
handlers = {rt: LocalHandler(Path(d), Path(weights).name) for rt, d in staged.items()}
data = {label: Path(path).read_bytes() for label, path in photos.items()}

def raw(label):
    torch.set_num_threads(raw_threads)
    model.predict(photos[label], verbose=False)

def served(rt):
    def once(label):
        torch.set_num_threads(handlers[rt].handler.threads)
        handlers[rt].predict(data[label])
    return once

targets = {"raw": raw, **{rt: served(rt) for rt in handlers}}
out = {name: {label: [] for label in photos} for name in targets}
names = list(targets)
for turn in range(requests + 3):
    for label in photos:
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            t0 = time.perf_counter()
            targets[name](label)
            if turn >= 3:
                out[name][label].append((time.perf_counter() - t0) * 1e3)
print(json.dumps({"latency_ms": out, "raw_threads": raw_threads}))
"""


def _child(code: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          check=False, cwd=paths.ROOT)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@app.command()
def main(
    requests: Annotated[int, typer.Option(help="Timed requests per photo and runtime.")] = 40,
    runtimes: Annotated[str, typer.Option(help="Comma-separated runtimes.")] = ",".join(RUNTIMES),
    weights: Annotated[Path, typer.Option(help="Weights to export.")] = paths.DEFAULT_WEIGHTS,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Stage, check and time every runtime; print one table."""
    configure_offline()
    console = Console(width=140)
    chosen = [r.strip() for r in runtimes.split(",") if r.strip()]
    report: dict[str, Any] = {"requests": requests, "runtimes": {}}
    with tempfile.TemporaryDirectory(prefix="runtimes-") as tmp:
        photos = {k: str(v) for k, v in bench_photos(Path(tmp) / "photos").items()}
        staged_dirs = {}
        for runtime in chosen:
            t0 = time.perf_counter()
            staged = stage(weights, runtime, Path(tmp) / runtime)
            parity = staged.check() if runtime != "torch" else None
            report["runtimes"][runtime] = {
                "stage_and_parity_s": round(time.perf_counter() - t0, 1),
                "parity": parity.model_dump() if parity else None,
                **_child(_RSS, str(staged.model_dir), weights.name, json.dumps(photos)),
            }
            staged_dirs[runtime] = str(staged.model_dir)
        timing = _child(_TIMING, json.dumps(staged_dirs), str(weights), json.dumps(photos),
                        str(requests))
    report["raw"] = {"latency_ms": timing["latency_ms"]["raw"], "threads": timing["raw_threads"]}
    for runtime in chosen:
        report["runtimes"][runtime]["latency_ms"] = timing["latency_ms"][runtime]

    raw = report["raw"]["latency_ms"]
    table = Table(title=f"handler per runtime, lone requests, p50 of {requests} (ms)")
    for column in ("runtime", *(f"{label} p50" for label in raw), "vs raw", "RSS MB", "parity",
                   "stage s"):
        table.add_column(column, justify="left" if column == "runtime" else "right")
    table.add_row(f"raw predict (Ultralytics defaults, {report['raw']['threads']} thread(s))",
                  *(f"{np.median(v):.1f}" for v in raw.values()), "1.00", "", "", "")
    for runtime, figures in report["runtimes"].items():
        p50s = {label: float(np.median(v)) for label, v in figures["latency_ms"].items()}
        ratio = np.mean([p50s[label] / float(np.median(raw[label])) for label in raw])
        parity = figures["parity"]
        verdict = "-" if parity is None else ("ok" if parity["passed"] else "FAILS")
        table.add_row(runtime, *(f"{p:.1f}" for p in p50s.values()), f"{ratio:.2f}",
                      str(figures["rss_mb"]), verdict, str(figures["stage_and_parity_s"]))
    console.print(table)
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    app()
