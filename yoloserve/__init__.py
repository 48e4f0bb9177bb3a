"""The shared package of the detection platform: everything more than one service uses.

The services (``gateway/``, ``scripts/``, ``reporting/``) are thin shells around it. Where things
go, with the module that does each step:

    an image         [gateway] images (inspect_image: format and size from the header)
                     -> modelserver.client -> TorchServe: boxes in image pixels
                     -> images.decode_array, embeddings.embedder.Embedder.embed: a vector per box
                     -> schemas (the response)
    a feedback row   [gateway] -> feedback.recorder: feedback.matching pairs ground truth with
                     predictions (boxes.iou), embeddings.embedder embeds each pair's box
                     -> data/feedback/{images,labels}/ (files, boxes.yolo_label_line)
                     -> store -> data/prod_data.csv (feedback.export) -> [reporting] drift
    a new version    [gateway starts ``python -m yoloserve.retrain``: retrain.launchers, a local
                     process, the trainer's queue, a Kubernetes Job or a KFP run]
                     -> retrain.jobs (one job at a time)
                     -> retrain.job: training.retrain_data (reference + feedback images),
                     training.train (fine-tune, evaluate), retrain.gate
                     -> modelserver.packaging (.mar + registry) -> modelserver.rollout:
                     rollout.torchserve (modelserver.deploy's hot swap through TorchServe's
                     management API) or rollout.kserve (InferenceService canary, check,
                     promote or roll back)

Layers, and what each may import of this package (pyproject.toml's ``[tool.importlinter]``
contracts, checked by ``lint-imports`` and tests/test_import_contracts.py):

    foundation    paths, offline, files, errors, schemas, boxes, drift_summary, images (the
                  one image decoder), kube (the Kubernetes API client): one another, no
                  sub-package
    modelserver   the foundation
    embeddings    the foundation
    training      the foundation (nothing of modelserver)
    feedback      the foundation and embeddings
    tracking      the foundation and modelserver
    retrain       all of the above

Nothing in ``yoloserve`` imports a service or a tool of the repository: ``gateway/``,
``reporting/``, ``webapp/``, ``scripts/``, ``devstack/``, ``benchmarks/``, ``serving/``, ``tests/``.
"""
