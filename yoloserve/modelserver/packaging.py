"""Package YOLO weights as a TorchServe ``.mar`` and record the version in the registry.

The archive itself (``build_mar``, ``extract_weights``, the files it holds) is
``yoloserve.modelserver.archive``, re-exported here for the callers. ``package`` does the
whole step a new model goes through: hash the weights, export them for the chosen runtime
(``yoloserve.modelserver.export``, ONNX Runtime by default), run the packed handler on the export
and check its parity with the ``.pt`` on fixed real images (``yoloserve.modelserver.parity``:
refused with ``ParityError`` when it breaks); an INT8 runtime is calibrated on the version's own
training images and gated on accuracy instead (mAP50 and mAP50-95 on the fixed benchmark set
within 0.01 of the ``.pt``, ``yoloserve.modelserver.accuracy``: refused with ``AccuracyError``),
and a float runtime given the benchmark set records its mAP too. Then it picks the next version,
builds the archive and records it with its runtime and measured parity, under the registry's
lock so that two packagers never pick the same version. The ``.pt`` is always the archive's
serialized file (retraining and provenance read it back with ``extract_weights``); the export and
a model YAML naming it are extra files.

Packaging weights whose sha256 is already in the registry with the same runtime reuses that
version (no new version for the same bytes): it only rebuilds the ``.mar`` if the store lost it
(the store is a build output).

Example:
    >>> from yoloserve.modelserver.packaging import package
    >>> from yoloserve.modelserver.registry import Registry
    >>> record = package(Path("models/default/best.pt"), Registry())  # doctest: +SKIP
    >>> record.version, record.mar  # doctest: +SKIP
    ('1', 'yolo_v1.mar')
"""

from __future__ import annotations

__all__ = [
    "HANDLER", "MODEL_CONFIG", "MODEL_NAME", "WORKER_PACKAGE", "AccuracyError", "AccuracySet",
    "PackagingError", "ParityError", "Staged", "build_mar", "class_names", "extract_weights",
    "mar_name", "package", "serving_imgsz", "sha256_file", "sidecar_metrics", "stage",
]

import json
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from yoloserve.modelserver import MODEL_NAME
from yoloserve.modelserver.accuracy import AccuracyReport, check_accuracy
from yoloserve.modelserver.archive import (
    HANDLER,
    MODEL_CONFIG,
    WORKER_PACKAGE,
    PackagingError,
    build_mar,
    extract_weights,
    mar_name,
    sha256_file,
)
from yoloserve.modelserver.export import (
    AUTO_RUNTIME,
    DEFAULT_RUNTIME,
    RUNTIMES,
    Export,
    ExportError,
    check_runtime,
    export_model,
    is_int8,
)
from yoloserve.modelserver.local_handler import CONFIG_NAME, LocalHandler
from yoloserve.modelserver.parity import (
    Detector,
    ParityLimits,
    ParityReport,
    answer_array,
    check_parity,
    parity_images,
)
from yoloserve.modelserver.records import check_classes
from yoloserve.modelserver.registry import ModelVersion, Registry, RegistryError
from yoloserve.modelserver.selection import selection_record, time_handlers
from yoloserve.offline import configure_offline
from yoloserve.paths import STORE_DIR

METRIC_KEYS = ("map50", "map50_95", "precision", "recall")


class ParityError(PackagingError):
    """The export does not answer what the ``.pt`` answers; nothing was registered."""

    code = "parity_failed"

    def __init__(self, message: str, report: ParityReport) -> None:
        super().__init__(message)
        self.report = report


class AccuracyError(PackagingError):
    """An INT8 export loses more accuracy than its gate allows; nothing was registered."""

    code = "accuracy_failed"

    def __init__(self, message: str, report: AccuracyReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class AccuracySet:
    """Labelled images an export's mAP is measured on (the fixed benchmark set).

    Attributes:
        images: image files, each labelled by ``../labels/<stem>.txt`` (YOLO txt).
        info: the set's name as recorded, ``{"name", "images", "manifest_sha256"}``.
    """

    images: tuple[Path, ...]
    info: dict[str, Any] = field(default_factory=dict)


def class_names(weights: Path) -> list[str]:
    """Class names stored in Ultralytics weights, in class-index order."""
    configure_offline()
    from ultralytics import YOLO

    names = YOLO(str(weights)).names
    return [names[i] for i in sorted(names)]


def sidecar_metrics(weights: Path) -> dict[str, Any]:
    """Headline metrics from a ``metrics.json`` beside the weights, as ``scripts.train`` writes."""
    path = Path(weights).with_name("metrics.json")
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return {k: raw[k] for k in METRIC_KEYS if isinstance(raw.get(k), int | float)}


def serving_imgsz(config_file: Path = MODEL_CONFIG) -> int:
    """The inference size the handler is configured with (``handler.imgsz``)."""
    config = yaml.safe_load(Path(config_file).read_text()) or {}
    return int((config.get("handler") or {}).get("imgsz", 320))


class Staged:
    """What goes into one ``.mar``, laid out as TorchServe unpacks it, checked for parity.

    ``model/`` holds the weights, the export and ``model-config.yaml`` (the shared YAML plus an
    ``export:`` section naming the runtime and its file); ``extra/`` links the export for the
    archiver, which copies a folder's entries, not the folder.
    """

    def __init__(self, weights: Path, exported: Export, root: Path, config_file: Path) -> None:
        self.weights = Path(weights)
        self.export = exported
        self.model_dir = root / "model"
        self.model_dir.mkdir(parents=True)
        shutil.copyfile(self.weights, self.model_dir / self.weights.name)
        self.config_file = self.model_dir / CONFIG_NAME
        text = Path(config_file).read_text()
        target = self.model_dir / exported.path.name
        shutil.move(str(exported.path), target)
        # The handler's own package goes beside it: the worker imports it from the archive.
        package = self.model_dir / WORKER_PACKAGE.name
        shutil.copytree(WORKER_PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
        self.extra_dir = root / "extra"
        self.extra_dir.mkdir()
        for path in (target, package):
            (self.extra_dir / path.name).symlink_to(path)
        section = {"runtime": exported.runtime, "file": target.name, "dynamic": exported.dynamic}
        # Appended, so the shared YAML's comments stay in the archive.
        text += "\n# Written by the packager: what the handler runs.\n"
        text += yaml.safe_dump({"export": section}, sort_keys=False)
        self.config_file.write_text(text)

    @cached_property
    def handler(self) -> LocalHandler:
        """The packed handler over this folder, run locally: loaded once for the parity check,
        the accuracy gate and ``auto``'s timing."""
        return LocalHandler(self.model_dir, self.weights.name)

    def detector(self) -> tuple[Detector, int]:
        """The packed handler's detections of an image file, and its inference size."""
        handler = self.handler

        def detect(image: Path, conf: float) -> Any:
            return answer_array(handler.predict(image.read_bytes(), conf=conf))

        return detect, int(handler.handler.imgsz[0])

    def check(self, limits: ParityLimits | None = None) -> ParityReport:
        """Run the packed handler on this folder and compare it with ``predict`` on the ``.pt``."""
        detect, imgsz = self.detector()
        return check_parity(self.weights, detect, parity_images(), imgsz=imgsz, limits=limits)

    def accuracy(self, images: AccuracySet, tolerance: float | None = None) -> AccuracyReport:
        """mAP of the packed handler and of ``predict`` on the ``.pt``, on ``images``."""
        detect, imgsz = self.detector()
        options = {} if tolerance is None else {"tolerance": tolerance}
        return check_accuracy(self.weights, detect, images.images, imgsz=imgsz,
                              image_set=images.info, **options)

    def build(self, version: str, store_dir: Path) -> Path:
        """The ``.mar`` of ``version`` in ``store_dir``."""
        return build_mar(
            self.model_dir / self.weights.name, version, store_dir,
            config_file=self.config_file, extra_files=self.extra_dir,
        )


def stage(
    weights: Path, runtime: str, root: Path, *, config_file: Path = MODEL_CONFIG,
    dynamic: bool = True, calibration: Sequence[Path] | None = None,
) -> Staged:
    """Export ``weights`` for ``runtime`` and lay the archive's contents out under ``root``.

    Raises:
        ExportError: unknown runtime, no calibration for an INT8 one, or the exporter failed.
    """
    exported = export_model(
        weights, runtime, root / "export", imgsz=serving_imgsz(config_file), dynamic=dynamic,
        calibration=calibration,
    )
    return Staged(weights, exported, root, config_file)


def _gate(
    staged: Staged, accuracy_set: AccuracySet | None
) -> tuple[ParityReport | None, AccuracyReport | None]:
    """Check a staged runtime: parity for a float one, mAP for INT8 (also measured for a float
    one when the set is given).

    Raises:
        ParityError: a float export answers otherwise than the ``.pt``.
        AccuracyError: an INT8 export's mAP is not within tolerance of the ``.pt``'s.
    """
    runtime, weights = staged.export.runtime, staged.weights
    report = staged.check() if not is_int8(runtime) else None
    if report is not None and not report.passed:
        failures = "; ".join(report.failures[:5])
        raise ParityError(
            f"the {runtime} export of {weights} breaks parity with the .pt, so it was not "
            f"packaged: {report.summary()}. {failures}. Package it with another runtime.",
            report,
        )
    accuracy = staged.accuracy(accuracy_set) if accuracy_set is not None else None
    if accuracy is not None and is_int8(runtime) and not accuracy.passed:
        raise AccuracyError(
            f"the {runtime} export of {weights} loses accuracy, so it was not packaged: "
            f"{accuracy.summary()} (deltas {accuracy.deltas}). Package it with a float "
            "runtime, or calibrate it on more of its training images.",
            accuracy,
        )
    return report, accuracy


def _choose_runtime(
    weights: Path, root: Path, *, config_file: Path, dynamic: bool,
    calibration: Sequence[Path] | None, accuracy_set: AccuracySet | None,
) -> tuple[Staged, ParityReport | None, AccuracyReport | None, dict[str, Any]]:
    """``auto``: stage and gate every runtime, time those that pass here, keep the fastest.

    INT8 runtimes compete only with calibration images and an accuracy set (their gate).

    Raises:
        PackagingError: no runtime passed its gate.
    """
    passed: dict[str, tuple[Staged, ParityReport | None, AccuracyReport | None]] = {}
    refused: dict[str, str] = {}
    for runtime in RUNTIMES:
        if is_int8(runtime) and (not calibration or accuracy_set is None):
            refused[runtime] = "no calibration images and accuracy set to gate it"
            continue
        try:
            staged = stage(weights, runtime, root / runtime, config_file=config_file,
                           dynamic=dynamic, calibration=calibration)
            passed[runtime] = (staged, *_gate(staged, accuracy_set))
        except (ExportError, PackagingError) as exc:  # parity and accuracy errors included
            refused[runtime] = str(exc)[:500]
    if not passed:
        raise PackagingError(f"no runtime passed its gate for {weights}: {refused}")
    handlers = {runtime: staged.handler.predict
                for runtime, (staged, _, _) in passed.items()}
    photos = [path.read_bytes() for path in parity_images()[:2]]
    scores = {
        runtime: {"map50": accuracy.candidate.map50, "map50_95": accuracy.candidate.map50_95,
                  "reference_map50": accuracy.reference.map50,
                  "reference_map50_95": accuracy.reference.map50_95, "passed": accuracy.passed}
        for runtime, (_, _, accuracy) in passed.items() if accuracy is not None
    }
    selection = selection_record(time_handlers(handlers, photos), refused, accuracy=scores)
    return (*passed[selection["chosen"]], selection)


def package(
    weights: Path,
    registry: Registry,
    parent: str | None = None,
    metrics: dict[str, Any] | None = None,
    *,
    store_dir: Path = STORE_DIR,
    trained_on: dict[str, Any] | None = None,
    make_default: bool | None = None,
    reuse: bool = True,
    benchmark: dict[str, Any] | None = None,
    mlflow_run_id: str | None = None,
    mlflow_experiment_id: str | None = None,
    runtime: str = DEFAULT_RUNTIME,
    dynamic: bool = True,
    config_file: Path = MODEL_CONFIG,
    calibration: Sequence[Path] | None = None,
    accuracy_set: AccuracySet | None = None,
    replace_classes: bool = False,
) -> ModelVersion:
    """Hash, export, check, archive and register ``weights`` as the next model version.

    Args:
        weights: Ultralytics ``.pt`` weights.
        registry: registry to record the version in.
        parent: version these weights were fine-tuned from.
        metrics: evaluation metrics; read from a ``metrics.json`` beside the weights if ``None``.
        store_dir: TorchServe model store.
        trained_on: what the weights were trained on.
        make_default: make the new version the default; ``None`` = only if there is none yet.
        reuse: return the existing version when these exact weights were packaged before with
            this runtime (rebuilding its ``.mar`` if the store lost it) instead of adding one.
        benchmark: scores on the fixed benchmark set (``ModelVersion.benchmark``).
        mlflow_run_id, mlflow_experiment_id: the MLflow run that produced the weights.
        runtime: what the handler runs (``yoloserve.modelserver.export.RUNTIMES``), or
            ``auto``: the fastest of them that passes its gate on this machine, timed here
            (``ModelVersion.selection`` records the figures and the CPU).
        dynamic: export with dynamic shapes; ``False`` only to see a static export refused.
        config_file: the model YAML to pack (the benchmark tries other serving settings).
        calibration: images of the weights' own training set; required by an INT8 runtime.
        accuracy_set: the fixed benchmark set; required by an INT8 runtime (its gate), and
            measured for a float one too when given (``ModelVersion.accuracy``).
        replace_classes: serve weights of other classes than the registry's instead (they
            become the default; ``RegistryData.add_version``).

    Returns:
        The registry record (new, or the reused one).

    Raises:
        ExportError: unknown runtime, or the exporter failed.
        ParityError: the export breaks parity with the ``.pt``; nothing is registered.
        PackagingError: the archiver failed.
        RegistryError: the classes differ from the registry's, or ``parent`` is unknown.
    """
    weights = Path(weights)
    auto = runtime == AUTO_RUNTIME
    if not auto:
        runtime = check_runtime(runtime)
    if is_int8(runtime) and (not calibration or accuracy_set is None or not accuracy_set.images):
        raise PackagingError(f"the {runtime} runtime needs calibration images and a labelled "
                             "accuracy set (its gate)")
    sha256 = sha256_file(weights)
    metrics = sidecar_metrics(weights) if metrics is None else metrics

    def reusable(versions: list[ModelVersion]) -> ModelVersion | None:
        # auto reuses a version auto chose for the same weights: it measured this choice.
        same = [v for v in versions if v.sha256 == sha256
                and (bool(v.selection) if auto else v.runtime == runtime)]
        return max(same, key=lambda v: int(v.version)) if reuse and same else None

    found = reusable(registry.load(jobs=False).versions)
    if found is not None and (store_dir / found.mar).is_file():
        return found
    if parent is not None:
        registry.get(parent)  # fail before the slow export
    classes = class_names(weights)
    # Refused before the slow export, as at the end (under the lock) for a concurrent change.
    check_classes(registry.load(jobs=False).classes, classes, replace_classes)
    store_dir.mkdir(parents=True, exist_ok=True)
    # Export and parity take seconds: done before the lock, so no other writer waits on them.
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=store_dir) as tmp:
        selection: dict[str, Any] = {}
        if auto:
            staged, report, accuracy, selection = _choose_runtime(
                weights, Path(tmp), config_file=config_file, dynamic=dynamic,
                calibration=calibration, accuracy_set=accuracy_set,
            )
        else:
            staged = stage(weights, runtime, Path(tmp), config_file=config_file,
                           dynamic=dynamic, calibration=calibration)
            report, accuracy = _gate(staged, accuracy_set)
        # Version choice, archive and record happen under one lock: no two packagers share one.
        with registry.update() as data:
            existing = reusable(data.versions)
            if existing is not None:
                if not (store_dir / existing.mar).is_file():
                    staged.build(existing.version, store_dir)
                return existing
            version = data.next_version()
            mar = staged.build(version, store_dir)
            record = ModelVersion(
                version=version,
                sha256=sha256,
                mar=mar.name,
                metrics=metrics,
                parent=parent,
                trained_on=trained_on or {},
                benchmark=benchmark or {},
                mlflow_run_id=mlflow_run_id,
                mlflow_experiment_id=mlflow_experiment_id,
                runtime=staged.export.runtime,
                parity=report.model_dump() if report is not None else {},
                accuracy=accuracy.model_dump() if accuracy is not None else {},
                selection=selection,
            )
            try:
                return data.add_version(record, classes, make_default, replace_classes)
            except RegistryError:
                mar.unlink(missing_ok=True)  # an archive no record points to would only mislead
                raise
