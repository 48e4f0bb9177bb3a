"""Where a retrain job runs: a local process, the trainer service, a Kubernetes Job or a KFP run.

A launcher only starts a job and says whether it still lives; the rules (the retrain lock, one
job at a time, marking dead jobs failed) stay in ``yoloserve.retrain.jobs``.

    base.py        JobLauncher (the interface), Liveness, job_command; imports no launcher
    process.py     RETRAIN_LAUNCHER=process (default): a detached local process
    queue.py       RETRAIN_LAUNCHER=queue: the job waits for the trainer service
    kubernetes.py  RETRAIN_LAUNCHER=kubernetes: a batch/v1 Job
    pipeline.py    RETRAIN_LAUNCHER=pipeline: a Kubeflow Pipelines run (kfp only when used)
    factory.py     launcher_from_settings: the only module that imports the launchers

- ``process``: ``python -m yoloserve.retrain run --job-id ID`` in its own session, its pid
  recorded in the job; alive while that pid runs a retrain process.
- ``queue``: nothing is started; the job stays ``queued`` until the trainer service
  (``python -m yoloserve.retrain trainer``, ``yoloserve.retrain.trainer``) claims it. Liveness
  comes from the trainers' heartbeat files in the run dir (``yoloserve.retrain.heartbeat``), since
  the gateway and the trainer share only volumes, not a PID namespace: a queued job waits while
  some trainer beats, and is ``unstarted`` (reaped after the start grace) while none does; a
  running job lives while the fresh beat of its trainer names it.
- ``kubernetes``: a ``batch/v1`` Job in ``RETRAIN_K8S_NAMESPACE``, built from the ``job.yaml`` key
  of ConfigMap ``RETRAIN_K8S_JOB_TEMPLATE`` (the trainer's volumes, env, GPU requests live there):
  named ``yoloserve-trainer-<id>``, labelled ``app.kubernetes.io/name=yoloserve-trainer`` and
  ``yoloserve/job-id=<id>``, image ``RETRAIN_K8S_IMAGE`` (or the template's), command
  ``python -m yoloserve.retrain run --job-id <id>``. A job is alive while a Job with its label
  is neither complete nor failed; any unfinished trainer Job, recorded or not, counts as the one
  job that may run. An unreachable API reads as alive (nothing is reaped on a guess) and refuses
  a start (nothing is started blind).
- ``pipeline``: a Kubeflow Pipelines run of ``yoloserve.retrain.pipeline`` (compiled on the spot
  with this process's ``RETRAIN_PIPELINE_*``), submitted through
  ``kfp.Client(host=RETRAIN_KFP_HOST)`` in experiment ``RETRAIN_KFP_EXPERIMENT``, named
  ``yoloserve-retrain-<id>``, the job id as its ``job_id`` parameter. Alive while that run is
  pending, running, paused or canceling; dead with the run's error once it ended without
  finishing the job. Any unfinished run of ours counts as the one job that may run; an
  unreachable API reads and refuses as for ``kubernetes``.
"""
