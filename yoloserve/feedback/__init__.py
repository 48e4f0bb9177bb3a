"""User feedback into data: matched, embedded rows in the store and labelled images.

Owns matching ground truth to predictions (``matching``, with the ``__background__`` and
``__missed__`` pseudo-classes every reader of the CSVs uses), recording one feedback call
(``recorder``: image and YOLO label for retraining, rows for monitoring), the rows and idempotency
keys in the store (``ledger``: one transaction per feedback), the export of ``prod_data.csv``
from the store (``export``, its only writer), the import of an older release's CSV and journal
(``legacy``) and the CSVs' fixed headers (``store``).

May import: the foundation modules of ``yoloserve``, ``embeddings`` (rows are embedded with the
same code that built the reference data) and ``store``; nothing of modelserver, training or
retrain.
"""
