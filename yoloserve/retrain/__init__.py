"""The retrain job: feedback in, a gated, packaged and hot-swapped new version out.

Owns the job's settings (``settings``, ``RETRAIN_*``), the promotion gate (``gate``), training
under a deadline in a killable child (``deadline``), the job's steps (``job``), its progress
(``progress``: phase, epoch i of N, ETA, in the job record; ``follow`` draws it), the one-job lock
and stale jobs the gateway uses (``jobs``), where a job runs (``launchers``: the ``JobLauncher``
interface in ``launchers.base``, picked by ``RETRAIN_LAUNCHER`` in ``launchers.factory``: a
detached local process, the trainer service's queue, a Kubernetes Job or a KFP run), the trainer
service (``trainer``, with its ``heartbeat``), and the entry point (``python -m yoloserve.retrain``,
``__main__``): the gateway starts or queues a job, and imports ``jobs`` and ``settings`` without
torch or Ultralytics (imported inside the training functions only).

May import: every other part of ``yoloserve`` (the foundation, modelserver, embeddings, feedback,
training); nothing imports it but services.
"""
