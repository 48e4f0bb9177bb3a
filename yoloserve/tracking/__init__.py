"""Experiment tracking and model lineage in MLflow, mirrored from the registry.

``models/registry.json`` stays the source of truth for serving; MLflow is a mirror of it that a
swap never waits on. One module per concern::

    settings   MLFLOW_TRACKING_URI (unset: no tracking), TRACKING_* (experiment, timeouts)
    manifest   dataset manifests (path, sha256, split per image and label) and eval-set names
    status     the mirror's outage counter file, read by the gateway's /metrics (no mlflow)
    runs       one MLflow run per training or retrain job (params, metrics, artifacts)
    callbacks  per-epoch losses and metrics from Ultralytics' trainer into that run
    plots      PR curve and confusion matrix images from Ultralytics' validator
    mirror     registered model ``yolo``: version N = registry version N, alias ``champion``
    watch      sync from a long-lived process whenever the registry file changes

Only ``runs``, ``callbacks`` and ``mirror`` import mlflow (lazily, in the trainer and the CLIs);
``settings``, ``manifest`` and ``status`` are safe for the gateway.

May import: the foundation modules of ``yoloserve`` and ``modelserver`` (the registry it
mirrors); the retrain job imports it, never the other way round. ``watch`` is the trainer's
"sync when the registry file changed" loop.
"""
