"""Labelled datasets: import from YOLO, COCO, Pascal VOC, Label Studio and CVAT into the
project's YOLO layout (``importer``; one reader per format in ``formats/``), every problem in
one report (``validate``), the store's record of them and the reference (``catalog``), and the
export of collected feedback as YOLO or COCO (``export``).

Nothing here imports supervision at module level: the readers import it when they read, so the
gateway (``.[gateway]``, which serves the export) runs without it.

May import: the top level and ``store`` (a layer beside modelserver, embeddings and training;
``pyproject.toml`` ``[tool.importlinter]``).
"""
