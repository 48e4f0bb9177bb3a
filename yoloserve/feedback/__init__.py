"""User feedback into data: matched, embedded rows in ``prod_data.csv`` and labelled images.

Owns matching ground truth to predictions (``matching``, with the ``__background__`` and
``__missed__`` pseudo-classes every reader of the CSVs uses), the append-only fixed-header CSV
store of ``ref_data.csv`` and ``prod_data.csv`` (``store``), and recording one feedback call
(``recorder``: image and YOLO label for retraining, rows for monitoring).

May import: the foundation modules of ``yoloserve`` and ``embeddings`` (rows are embedded with the
same code that built the reference data); nothing of modelserver, training or retrain.
"""
