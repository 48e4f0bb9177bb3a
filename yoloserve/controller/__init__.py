"""The control plane: one controller, elected by a lease, carries out what the store asks for.

Today it runs the retrain jobs the gateway queues (the trainer's loop, ``yoloserve.retrain
.trainer``) while it holds the lease; a standby waits and takes over within the lease's duration
when the acting one dies. ``settings`` (``CONTROLLER_*``), ``lease/`` (the store's lease, a
Kubernetes ``coordination.k8s.io`` Lease, one factory), ``loop`` (acting and standing by),
``__main__`` (``python -m yoloserve.controller run``).

May import: every sub-package of ``yoloserve`` (it is the top layer, with ``retrain``).
"""
