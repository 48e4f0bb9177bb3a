"""How a new version goes out, whatever serves it: one interface, two implementations, one factory.

    base.py        Deployer (the interface), DeploySettings (DEPLOY_*), DeployResult,
                   SwapOptions, run_sync; imports no implementation
    torchserve.py  TorchServeDeployer (DEPLOY_BACKEND=torchserve, the default; local and
                   compose): today's hot swap through TorchServe's management API
                   (``yoloserve.modelserver.deploy``: register, wait for a worker, set-default,
                   drain, unregister), wrapped as it is
    kserve.py      KServeDeployer (DEPLOY_BACKEND=kserve, Kubernetes): the InferenceService's
                   storageUri patched as a canary at DEPLOY_CANARY_PERCENT, an error-rate check,
                   promotion to 100 % or a rollback
    factory.py     deployer_from_settings: the only module that imports the implementations

Both keep the same registry rules: ``registry.set_default`` only once the new version serves,
nothing changed when the rollout stops before that; both take ``models/.swap.lock``.

``deploy(version)`` answers a ``DeployResult`` when the rollout ran to a decision (``promoted``
false: it was rolled back, ``reason`` says why) and raises when it could not run (unknown or
rejected version, the model server or the Kubernetes API failing). ``activate(version)`` (the
rollback verb) serves an existing version at once, with no canary, and answers its record.

Example (the package imports nothing itself: import the module you need):
    >>> from yoloserve.modelserver.rollout.base import DeploySettings, run_sync
    >>> from yoloserve.modelserver.rollout.factory import deployer_from_settings
    >>> deployer = deployer_from_settings(DeploySettings(), registry)  # doctest: +SKIP
    >>> result = run_sync(deployer.deploy("2"))  # doctest: +SKIP
"""
