"""Drift scenario against the running platform (`make demo`): shifted data in, retrained model out.

Production changes under the model: the same shapes now arrive on real photographs, drawn
translucent so the photo shows through (``yoloserve.training.dataset``'s ``background="photo"`` and
``opacity``). The scenario plays it through the public API, as users would:

1. generate the shifted images: a production set sent before the retrain, a second one sent
   after it, and a held-out test set (YOLO format) that is never sent;
2. evaluate the serving default version's mAP50 on the held-out set (Ultralytics validator, on
   the weights inside its ``.mar``);
3. send production images through ``POST /predict`` and ``POST /feedback`` with their true
   labels until the feedback loop triggers a retrain (every k rows; if it does not within
   ``--images``, the retrain is started with ``POST /retrain`` and the output says so);
4. force a reporting run over those feedback rows and read drift share and F1 back from the
   Evidently workspace (``python -m reporting run-once`` / ``latest``): before the retrain;
5. wait for the retrain job (``GET /retrain/{job_id}``) and the hot swap (``GET /models``);
6. evaluate the new default's mAP50 on the held-out set, send the second production set, run the
   reporting again over those rows, and print the before/after table.

The exit code is 0 when both goals hold (drift flagged before the retrain; mAP50 gain on the
shifted test set >= ``--min-gain``), 1 when one does not, 2 when the scenario could not run.
Results also go to ``<out>/scenario_result.json``.

    python -m scripts.scenario                 # full run (make scenario)
    python -m scripts.scenario --images 60     # a quick check
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from yoloserve import paths
from yoloserve.modelserver.registry import Registry
from yoloserve.training.dataset import CLASSES, write_data_yaml, write_split

app = typer.Typer(add_completion=False, help=__doc__, no_args_is_help=False)
console = Console()

DEMO_ENV = paths.RUN_DIR / "demo.env"
DEFAULT_OUT = paths.DATA_DIR / "shifted"
FINAL_STATES = ("succeeded", "rejected", "failed")
# Splits of the shifted set: sent before the retrain, sent after it, never sent.
PROD, AFTER, TEST = "prod", "after", "test"

Box = tuple[list[float], str]


class ScenarioError(RuntimeError):
    """The scenario cannot go on (gateway down, refused key, job failed to start, ...)."""


# --- configuration -------------------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a file such as ``.run/demo.env`` (comments skipped; {} if absent)."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.strip().startswith("#"):
            values[name.strip()] = value.strip()
    return values


def first_key(value: str | None) -> str | None:
    """The first of comma-separated keys (``GATEWAY_API_KEYS`` may list several)."""
    keys = [k.strip() for k in (value or "").split(",") if k.strip()]
    return keys[0] if keys else None


def resolve_keys(
    api_key: str | None, admin_key: str | None, env_file: Path
) -> tuple[str | None, str | None]:
    """Keys from the options (or their env variables), else from ``make demo``'s key file."""
    demo = read_env_file(env_file)
    user = api_key or first_key(demo.get("GATEWAY_API_KEYS"))
    admin = admin_key or first_key(demo.get("GATEWAY_ADMIN_API_KEYS"))
    # The admin key is accepted on user routes too; a demo with only an admin key still works.
    return user or admin, admin


# --- the shifted data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftedSets:
    """The generated folders: ``images/<split>``, ``labels/<split>``, and the eval ``data.yaml``."""

    root: Path
    data_yaml: Path

    def images(self, split: str) -> list[Path]:
        return sorted((self.root / "images" / split).glob("*.jpg"))


def split_seed(seed: int, split: str) -> int:
    """Seed of one split; far from the training set's (``seed * 1000 + 0..2``), so disjoint."""
    return 7_000_000 + seed * 10 + (PROD, AFTER, TEST).index(split)


def generate_sets(
    root: Path, n_prod: int, n_after: int, n_test: int, seed: int, opacity: float
) -> ShiftedSets:
    """Write the three splits afresh (seeded: the same options give the same images)."""
    for sub in ("images", "labels"):
        shutil.rmtree(root / sub, ignore_errors=True)
    splits = ((PROD, n_prod), (AFTER, n_after), (TEST, n_test))
    with _progress() as progress:
        task = progress.add_task("generating shifted images", total=n_prod + n_after + n_test)
        for split, n in splits:
            write_split(
                root, split, n, split_seed(seed, split), background="photo",
                opacity=opacity, progress=lambda k: progress.advance(task, k),
            )
    # Ultralytics wants train and val keys; evaluation reads only `test` (the held-out split).
    data_yaml = write_data_yaml(
        root, ("train", "val", "test"), folders={"train": PROD, "val": TEST}
    )
    return ShiftedSets(root, data_yaml)


def read_label(image: Path) -> list[Box]:
    """The true boxes of a generated image (YOLO label -> pixel xyxy and class name)."""
    from PIL import Image

    label = image.parent.parent.parent / "labels" / image.parent.name / f"{image.stem}.txt"
    with Image.open(image) as img:
        width, height = img.size
    boxes: list[Box] = []
    for line in label.read_text().split("\n"):
        if not line.strip():
            continue
        cls, cx, cy, w, h = line.split()
        x, y, bw, bh = float(cx) * width, float(cy) * height, float(w) * width, float(h) * height
        xyxy = [round(v, 2) for v in (x - bw / 2, y - bh / 2, x + bw / 2, y + bh / 2)]
        boxes.append((xyxy, CLASSES[int(cls)]))
    return boxes


# --- the gateway ---------------------------------------------------------------------------------


class Gateway:
    """The few calls of the public API the scenario makes (docs/api-contract.md)."""

    def __init__(
        self, url: str, api_key: str | None, admin_key: str | None, timeout: float = 60.0
    ) -> None:
        self.client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.api_key, self.admin_key = api_key, admin_key

    def close(self) -> None:
        self.client.close()

    def _call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> Any:
        headers = {"X-API-Key": key} if key else {}
        try:
            response = self.client.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as exc:
            raise ScenarioError(
                f"{method} {path}: no answer from {self.client.base_url} ({exc}); "
                "is the platform up (make demo)?"
            ) from exc
        if response.status_code >= 400:
            try:
                error = response.json()["error"]
                detail = f"{error['code']}: {error['message']}"
            except (ValueError, KeyError, TypeError):
                detail = response.text[:300]
            raise ScenarioError(f"{method} {path} -> HTTP {response.status_code} {detail}")
        return response.json()

    def models(self) -> dict[str, Any]:
        return dict(self._call("GET", "/models"))

    def predict(self, image: Path) -> dict[str, Any]:
        files = {"file": (image.name, image.read_bytes(), "image/jpeg")}
        return dict(self._call("POST", "/predict", files=files))

    def feedback(self, image: Path, request_id: str | None, boxes: list[Box]) -> dict[str, Any]:
        labels = {
            "request_id": request_id,
            "boxes": [{"xyxy": xyxy, "name": name} for xyxy, name in boxes],
        }
        files = {"file": (image.name, image.read_bytes(), "image/jpeg")}
        data = {"labels": json.dumps(labels)}
        return dict(self._call("POST", "/feedback", self.api_key, files=files, data=data))

    def start_retrain(self) -> dict[str, Any]:
        if not self.admin_key:
            raise ScenarioError("POST /retrain needs the admin key (--admin-key)")
        return dict(self._call("POST", "/retrain", self.admin_key))

    def retrain(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"/retrain/{job_id}"))


@dataclass
class Sent:
    """What one batch of feedback did."""

    images: int = 0
    rows: int = 0
    boxes_predicted: int = 0
    versions: Counter[str] = field(default_factory=Counter)
    job_id: str | None = None
    prod_rows_total: int | None = None
    next_at_rows: int | None = None

    def extend(self, more: Sent) -> None:
        """Add a later batch's counts to this one."""
        self.images += more.images
        self.rows += more.rows
        self.boxes_predicted += more.boxes_predicted
        self.versions.update(more.versions)
        self.job_id = more.job_id or self.job_id
        if more.images:
            self.prod_rows_total, self.next_at_rows = more.prod_rows_total, more.next_at_rows


def send_feedback(
    gateway: Gateway, images: list[Path], *, stop_on_trigger: bool, label: str,
    avoid_trigger_from: tuple[int, int] | None = None,
) -> Sent:
    """Predict then send the true labels for each image, as a user correcting the model would.

    Args:
        gateway: The gateway.
        images: Images to send, in order.
        stop_on_trigger: Stop right after the feedback that starts a retrain.
        label: Progress bar text.
        avoid_trigger_from: ``(prod_rows_total, next_at_rows)`` known now: stop before a
            feedback that could reach the next trigger (no second retrain mid-measurement).
    """
    sent = Sent()
    capped = avoid_trigger_from is not None
    total, next_at = avoid_trigger_from or (0, None)
    with _progress() as progress:
        task = progress.add_task(label, total=len(images))
        for image in images:
            truth = read_label(image)
            prediction = gateway.predict(image)
            boxes = prediction.get("boxes", [])
            # A feedback writes at most one row per true box plus one per unmatched prediction.
            if capped and next_at is not None and total + len(truth) + len(boxes) >= next_at:
                break
            answer = gateway.feedback(image, prediction.get("request_id"), truth)
            sent.images += 1
            sent.rows += int(answer["rows_written"])
            sent.boxes_predicted += len(boxes)
            sent.versions[str(prediction["model"]["version"])] += 1
            total = sent.prod_rows_total = int(answer["prod_rows_total"])
            retrain = answer.get("retrain") or {}
            sent.next_at_rows = next_at = retrain.get("next_at_rows")
            progress.advance(task)
            if retrain.get("triggered"):
                sent.job_id = retrain.get("job_id")
                if stop_on_trigger:
                    break
    return sent


def wait_for_job(gateway: Gateway, job_id: str, timeout: float, poll: float) -> dict[str, Any]:
    """Poll ``GET /retrain/{job_id}`` until the job ends (or raise after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    state = ""
    with console.status(f"retrain {job_id}: waiting") as status:
        while True:
            job = gateway.retrain(job_id)
            if job["state"] != state:
                state = job["state"]
                console.log(f"retrain {job_id}: {state}")
            if state in FINAL_STATES:
                return job
            if time.monotonic() > deadline:
                raise ScenarioError(f"retrain {job_id} still {state} after {timeout:.0f} s")
            status.update(f"retrain {job_id}: {state} ({time.monotonic() - started:.0f} s)")
            time.sleep(poll)


def wait_for_default(gateway: Gateway, version: str, timeout: float) -> None:
    """Wait until ``GET /models`` names ``version`` as the default (the hot swap is done)."""
    deadline = time.monotonic() + timeout
    while gateway.models().get("default_version") != version:
        if time.monotonic() > deadline:
            raise ScenarioError(f"version {version} is not the default after {timeout:.0f} s")
        time.sleep(2)


# --- evaluation and reporting --------------------------------------------------------------------


def weights_of(version: str, registry: Registry, store_dir: Path, workdir: Path) -> Path:
    """The weights served as ``version``: taken out of its ``.mar``, checked against the registry.

    The ``.mar`` is what TorchServe serves, so evaluating its weights evaluates that version.

    Raises:
        ScenarioError: the ``.mar`` is missing, holds no single weights file, or its weights are
            not the ones the registry recorded.
    """
    record = registry.get(version)
    mar = store_dir / record.mar
    if not mar.is_file():
        raise ScenarioError(f"{mar} not found: run the scenario on the machine of `make demo`")
    with zipfile.ZipFile(mar) as archive:
        members = [n for n in archive.namelist() if n.endswith(".pt") and "/" not in n]
        if len(members) != 1:
            raise ScenarioError(f"{mar} holds {len(members)} weights files, expected one")
        target = workdir / f"v{version}.pt"
        target.write_bytes(archive.read(members[0]))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    if digest != record.sha256:
        raise ScenarioError(f"weights in {mar.name} do not match the registry's sha256")
    return target


def map50(weights: Path, data_yaml: Path) -> float:
    """mAP50 on the ``test`` split of ``data_yaml``."""
    from yoloserve.training.train import evaluate  # imports torch and Ultralytics: only when needed

    return float(evaluate(weights, data_yaml, split="test").map50)


def reporting_run(rows: int, workspace: Path | None) -> dict[str, float]:
    """Add a reporting run over the last ``rows`` prod rows and read its values back.

    Runs the reporting service's own CLI (the scenario imports no other service): the run goes
    into the Evidently workspace the dashboard shows, and its values come back read from that
    workspace by run id, not recomputed here.
    """
    command = [sys.executable, "-m", "reporting", "run-once", "--window-rows", str(rows), "--json"]
    if workspace:
        command += ["--workspace", str(workspace)]
    env = {**os.environ, "DO_NOT_TRACK": "1"}
    run = subprocess.run(command, capture_output=True, text=True, cwd=paths.ROOT, env=env)
    if run.returncode != 0:
        raise ScenarioError(f"reporting run failed: {(run.stdout + run.stderr)[-800:]}")
    for line in run.stderr.splitlines():
        if "run added" in line or "html:" in line:
            console.log(line.strip())
    answer = json.loads(run.stdout.strip().splitlines()[-1])
    return {k: float(v) for k, v in answer["values"].items()}


# --- output --------------------------------------------------------------------------------------


@contextmanager
def _progress() -> Iterator[Progress]:
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=console, transient=False,
    ) as progress:
        yield progress


@dataclass
class Outcome:
    """Every figure of one scenario run (written to ``scenario_result.json``)."""

    old_version: str
    new_version: str | None
    jobs: list[dict[str, Any]]
    before: dict[str, float]
    after: dict[str, float]
    map50_old: float
    map50_new: float | None
    ref_map50_old: float | None
    ref_map50_new: float | None
    sent_before: dict[str, Any]
    sent_after: dict[str, Any]
    test_images: int
    manual_trigger: bool
    seconds: float

    @property
    def drift_flagged_before(self) -> bool:
        return bool(self.before.get("dataset_drift"))

    @property
    def gain(self) -> float | None:
        return None if self.map50_new is None else self.map50_new - self.map50_old


def _fmt(value: float | None, flag: bool = False) -> str:
    if value is None:
        return "n/a"
    text = f"{value:.0f}" if float(value).is_integer() and abs(value) > 1 else f"{value:.3f}"
    return text + ("  (drift)" if flag else "")


def print_table(o: Outcome, min_gain: float) -> None:
    table = Table(title="Drift scenario: before and after the retrain")
    table.add_column("measure")
    table.add_column(f"before (v{o.old_version})", justify="right")
    table.add_column(f"after (v{o.new_version or o.old_version})", justify="right")
    table.add_column("change", justify="right")

    def row(
        name: str, a: float | None, b: float | None, fa: bool = False, fb: bool = False
    ) -> None:
        change = "" if a is None or b is None else _fmt(b - a).replace("n/a", "")
        change = f"+{change}" if change and not change.startswith("-") else change
        table.add_row(name, _fmt(a, fa), _fmt(b, fb), change)

    row("drift share (embedding columns)", o.before.get("drift_share"), o.after.get("drift_share"),
        bool(o.before.get("dataset_drift")), bool(o.after.get("dataset_drift")))
    row("embedding drift (mean distance)", o.before.get("embedding_drift"),
        o.after.get("embedding_drift"))
    row("F1 macro, feedback rows", o.before.get("f1"), o.after.get("f1"))
    row("balanced accuracy, feedback rows", o.before.get("balanced_accuracy"),
        o.after.get("balanced_accuracy"))
    for name in CLASSES:
        row(f"  F1 {name}", o.before.get(f"f1:{name}"), o.after.get(f"f1:{name}"))
    row("feedback rows in the run", o.before.get("feedback_rows"), o.after.get("feedback_rows"))
    row(f"mAP50, shifted test ({o.test_images} images)", o.map50_old, o.map50_new)
    if o.ref_map50_old is not None:
        row("mAP50, reference test (no shift)", o.ref_map50_old, o.ref_map50_new)
    console.print(table)
    chain = ", ".join(
        f"{j['job_id']} {j['state']}"
        + (f" -> v{j['candidate_version']}" if j.get("candidate_version") else "")
        for j in o.jobs
    )
    how = "started by hand (POST /retrain)" if o.manual_trigger else "started by the loop"
    console.print(
        f"retrains ({how}): {chain or 'none'}; {o.sent_before.get('images')} shifted images "
        "sent before the last one"
    )
    flagged = "yes" if o.drift_flagged_before else "NO"
    console.print(
        f"dashboard flagged drift before the retrain: {flagged} "
        f"(drift share {_fmt(o.before.get('drift_share'))})"
    )
    gain = o.gain
    met = gain is not None and gain >= min_gain
    console.print(
        f"mAP50 gain on the shifted test set: {'n/a' if gain is None else f'{gain:+.3f}'} "
        f"(goal >= +{min_gain:.2f}): {'met' if met else 'NOT met'}"
    )


# --- the command ---------------------------------------------------------------------------------


@app.command()
def main(
    gateway_url: Annotated[
        str, typer.Option(envvar="SCENARIO_GATEWAY_URL", help="Gateway base URL.")
    ] = "http://127.0.0.1:8080",
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SCENARIO_API_KEY", help="User key for /feedback (default: the "
                     "first GATEWAY_API_KEYS of --env-file)."),
    ] = None,
    admin_key: Annotated[
        str | None,
        typer.Option(envvar="SCENARIO_ADMIN_KEY", help="Admin key, only needed when the loop "
                     "does not trigger a retrain (default: from --env-file)."),
    ] = None,
    env_file: Annotated[
        Path, typer.Option(help="Key file written by `make demo`.")
    ] = DEMO_ENV,
    images: Annotated[
        int, typer.Option(min=1, help="Most shifted images sent before the retrain.")
    ] = 300,
    min_images: Annotated[
        int,
        typer.Option(min=1, help="Keep feeding the loop (more rounds of feedback and retrain) "
                     "until its retrains have seen this many shifted images."),
    ] = 20,
    after_images: Annotated[
        int | None,
        typer.Option(min=1, help="Shifted images sent after it (default: images / 2, >= 20)."),
    ] = None,
    test_images: Annotated[
        int, typer.Option(min=5, help="Held-out shifted images for mAP50 (never sent).")
    ] = 100,
    opacity: Annotated[
        float, typer.Option(min=0.05, max=1.0, help="Opacity of the shapes on the photos.")
    ] = 0.6,
    seed: Annotated[int, typer.Option(help="Seed of the shifted images.")] = 1,
    out: Annotated[Path, typer.Option(help="Folder for the shifted sets and the result.")] = (
        DEFAULT_OUT
    ),
    workspace: Annotated[
        Path | None,
        typer.Option(help="Evidently workspace (default: reporting's, env REPORTING_WORKSPACE)."),
    ] = None,
    reference_yaml: Annotated[
        Path,
        typer.Option(help="Unshifted dataset whose test split both versions are also scored "
                     "on (skipped when missing)."),
    ] = paths.DATA_DIR / "shapes" / "data.yaml",
    reference_eval: Annotated[
        bool, typer.Option(help="Score both versions on --reference-yaml too.")
    ] = True,
    retrain_timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the retrain job.")
    ] = 3600.0,
    min_gain: Annotated[
        float, typer.Option(help="mAP50 gain the retrain must reach (exit 1 otherwise).")
    ] = 0.20,
) -> None:
    """Play the drift scenario against the running platform and print a before/after table."""
    started = time.monotonic()
    user, admin = resolve_keys(api_key, admin_key, env_file)
    n_after = after_images or max(20, images // 2)
    gateway = Gateway(gateway_url, user, admin)
    try:
        outcome = _play(gateway, images, n_after, test_images, opacity, seed, out, workspace,
                        reference_yaml if reference_eval else None, retrain_timeout, min_images)
    except ScenarioError as exc:
        console.print(f"[red]scenario stopped:[/red] {exc}")
        raise typer.Exit(2) from exc
    finally:
        gateway.close()
    outcome.seconds = round(time.monotonic() - started, 1)
    result = out / "scenario_result.json"
    payload = {**asdict(outcome), "drift_flagged_before": outcome.drift_flagged_before,
               "map50_gain": outcome.gain, "min_gain": min_gain}
    result.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    print_table(outcome, min_gain)
    console.print(f"results: {result}  ({outcome.seconds:.0f} s)")
    gain = outcome.gain
    if not outcome.drift_flagged_before or gain is None or gain < min_gain:
        raise typer.Exit(1)


def _play(
    gateway: Gateway, images: int, n_after: int, n_test: int, opacity: float, seed: int,
    out: Path, workspace: Path | None, ref_yaml: Path | None, retrain_timeout: float,
    min_images: int,
) -> Outcome:
    models = gateway.models()
    old = models.get("default_version")
    if not old:
        raise ScenarioError("the gateway serves no default version")
    console.log(f"gateway serves v{old}; classes {models.get('classes')}")

    sets = generate_sets(out, images, n_after, n_test, seed, opacity)
    registry = Registry()
    if ref_yaml is not None and not ref_yaml.is_file():
        console.log(f"no {ref_yaml}: the unshifted test split is not scored")
        ref_yaml = None
    with tempfile.TemporaryDirectory(prefix="scenario-") as tmp:
        old_weights = weights_of(old, registry, paths.STORE_DIR, Path(tmp))
        console.log(f"evaluating v{old} on {n_test} shifted test images ...")
        map_old = map50(old_weights, sets.data_yaml)
        console.log(f"v{old}: mAP50 {map_old:.3f} on the shifted test set")
        ref_old = map50(old_weights, ref_yaml) if ref_yaml else None
        if ref_old is not None:
            console.log(f"v{old}: mAP50 {ref_old:.3f} on the unshifted test split")

    # Round 1 is "before": every row predicted by the old version. Further rounds go on feeding
    # the loop until its retrains have seen --min-images shifted images: with a small k the loop
    # retrains after a handful of images, and each retrain learns from all feedback so far.
    prod_images = sets.images(PROD)
    before = Sent()
    jobs: list[dict[str, Any]] = []
    values_before: dict[str, float] = {}
    manual = False
    new: str | None = None
    while True:
        batch = send_feedback(
            gateway, prod_images[before.images:], stop_on_trigger=True,
            label=f"feedback, round {len(jobs) + 1}",
        )
        before.extend(batch)
        console.log(
            f"round {len(jobs) + 1}: sent {batch.images} images, {batch.rows} feedback rows "
            f"(predicted by {dict(batch.versions)})"
        )
        if not jobs:
            values_before = reporting_run(batch.rows, workspace)
            console.log(
                "reporting (before): drift share "
                f"{values_before.get('drift_share', float('nan')):.3f}, "
                f"F1 {values_before.get('f1', float('nan')):.3f}"
            )
        job_id = batch.job_id
        if job_id is not None:
            # k (RETRAIN_EVERY_K of the gateway) decides how much of the shift a retrain sees.
            console.log(f"the loop started retrain {job_id} after {before.images} images in all")
        elif not jobs:
            manual = True
            console.log(
                f"the loop did not trigger within {before.images} images (next at "
                f"{before.next_at_rows} rows): starting the retrain with POST /retrain"
            )
            job_id = str(gateway.start_retrain()["job_id"])
        else:
            break  # images used up before the next trigger
        job = wait_for_job(gateway, job_id, retrain_timeout, poll=5.0)
        jobs.append(job)
        gate = {
            name: round(float(values["map50"]), 3)
            for name, values in (job.get("metrics") or {}).items()
            if isinstance(values, dict) and "map50" in values
        }
        console.log(f"retrain {job_id} {job['state']}; its gate (mAP50 on its eval set): {gate}")
        if job["state"] != "succeeded" or not job.get("candidate_version"):
            console.log(f"[yellow]retrain {job['state']}:[/yellow] {job.get('reason')}")
            break
        new = str(job["candidate_version"])
        wait_for_default(gateway, new, 120)
        console.log(f"v{new} is serving")
        if before.images >= min_images or before.images >= len(prod_images):
            break

    map_new = ref_new = None
    if new:
        with tempfile.TemporaryDirectory(prefix="scenario-") as tmp:
            new_weights = weights_of(new, Registry(), paths.STORE_DIR, Path(tmp))
            console.log(f"evaluating v{new} on {n_test} shifted test images ...")
            map_new = map50(new_weights, sets.data_yaml)
            console.log(f"v{new}: mAP50 {map_new:.3f} on the shifted test set")
            ref_new = map50(new_weights, ref_yaml) if ref_yaml else None
            if ref_new is not None:
                console.log(f"v{new}: mAP50 {ref_new:.3f} on the unshifted test split")

    # Up to the next trigger only: a second job would compete for the CPU and could swap the
    # model while the "after" rows are being predicted.
    after_images = sets.images(AFTER)
    after = send_feedback(
        gateway, after_images, stop_on_trigger=False, label="feedback after the retrain",
        avoid_trigger_from=(
            (before.prod_rows_total, before.next_at_rows)
            if before.prod_rows_total is not None and before.next_at_rows is not None
            else None
        ),
    )
    if after.images < min(5, len(after_images)):
        console.log(
            f"[yellow]only {after.images} images fit before the next trigger at "
            f"{before.next_at_rows} rows: sending the rest anyway, the loop will start another "
            "retrain[/yellow]"
        )
        after.extend(send_feedback(
            gateway, after_images[after.images:], stop_on_trigger=False,
            label="feedback after the retrain",
        ))
    if after.job_id:
        console.log(f"this feedback started retrain {after.job_id} (not waited for)")
    values_after = reporting_run(after.rows, workspace)
    return Outcome(
        old_version=old, new_version=new, jobs=jobs, before=values_before, after=values_after,
        map50_old=map_old, map50_new=map_new, ref_map50_old=ref_old, ref_map50_new=ref_new,
        sent_before=_sent_dict(before), sent_after=_sent_dict(after), test_images=n_test,
        manual_trigger=manual, seconds=0.0,
    )


def _sent_dict(sent: Sent) -> dict[str, Any]:
    data = asdict(sent)
    data["versions"] = dict(sent.versions)
    return data


if __name__ == "__main__":
    app()
