"""The model server side: versions, archives, the TorchServe client, hot swaps.

Owns the model registry (``registry``: ``models/registry.json``, the source of truth for
versions and the default), packaging weights into a TorchServe ``.mar`` (``packaging``), the
async inference and management client (``client``), registering, activating and hot-swapping
a version with rollback (``deploy``), the ``Deployer`` interface chosen by ``DEPLOY_BACKEND``
(``deployers``: TorchServe's hot swap, or ``kserve``: a canary of the KServe InferenceService,
checked against Prometheus, promoted or rolled back), and the KServe storage layout
(``kserve_layout``).

May import: the foundation modules of ``yoloserve`` (``errors``, ``files``, ``paths``,
``schemas``, ``offline``, ``boxes``, ``kube``), no other sub-package. The gateway imports the
client, the registry and the deployers without pulling in training, embeddings or the retrain job
through them.
"""

MODEL_NAME = "yolo"
"""The name TorchServe serves the model under: in every ``.mar``, URL and registry file."""
