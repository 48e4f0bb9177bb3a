"""The model server side: versions, archives, the TorchServe client, hot swaps.

Owns the model registry (``registry``: ``models/registry.json``, the source of truth for
versions and the default), packaging weights into a TorchServe ``.mar`` (``packaging``), the
async inference and management client (``client``), registering, activating and hot-swapping
a version with rollback (``deploy``), how a version goes out (``rollout``: the ``Deployer``
interface in ``rollout.base``, chosen by ``DEPLOY_BACKEND`` in ``rollout.factory``: TorchServe's
hot swap in ``rollout.torchserve``, or a canary of the KServe InferenceService, checked against
Prometheus, promoted or rolled back, in ``rollout.kserve``), the KServe storage layout
(``kserve_layout``), and where TorchServe is (``settings``: ``TorchServeSettings``,
``TORCHSERVE_*``).

May import: the foundation modules of ``yoloserve`` (``errors``, ``files``, ``paths``,
``schemas``, ``offline``, ``boxes``, ``kube``) and ``store`` (where the registry lives), no
other sub-package. The gateway imports the
client, the registry and the rollout without pulling in training, embeddings or the retrain job
through them.
"""

MODEL_NAME = "yolo"
"""The name TorchServe serves the model under: in every ``.mar``, URL and registry file."""
