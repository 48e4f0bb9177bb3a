"""Picks the launcher ``RETRAIN_LAUNCHER`` names: the only module that imports the launchers.

Example:
    >>> launcher_from_settings(RetrainSettings()).kind
    'process'
"""

from __future__ import annotations

import httpx

from yoloserve.kube import KubeSettings
from yoloserve.retrain.launchers.base import JobLauncher
from yoloserve.retrain.launchers.kubernetes import KubernetesJobLauncher
from yoloserve.retrain.launchers.pipeline import PipelineLauncher
from yoloserve.retrain.launchers.process import ProcessLauncher
from yoloserve.retrain.launchers.queue import QueueLauncher
from yoloserve.retrain.settings import RetrainSettings


def launcher_from_settings(
    settings: RetrainSettings,
    *,
    kube: KubeSettings | None = None,
    transport: httpx.BaseTransport | None = None,
) -> JobLauncher:
    """The launcher ``RETRAIN_LAUNCHER`` names (``transport``: the Kubernetes API's, in tests)."""
    if settings.launcher == "kubernetes":
        return KubernetesJobLauncher(settings, kube=kube, transport=transport)
    if settings.launcher == "pipeline":
        return PipelineLauncher(settings)
    if settings.launcher == "queue":
        return QueueLauncher(settings)
    return ProcessLauncher()
