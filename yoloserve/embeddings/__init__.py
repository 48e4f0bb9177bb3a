"""Per-box embeddings for drift monitoring: one code path for reference and production rows.

Owns the crop descriptor (``descriptor``: what a box looks like, computed from pixels only, so a
retrained detector never moves the reference space), the fitted and versioned projection artifact
in ``models/embedder/`` (``embedder``: decode, embed, load, save) and its fitting (``fit``, the
only module that needs scikit-learn, imported when fitting starts).

May import: the foundation modules of ``yoloserve`` (``paths``, ``files``, ``errors``, ...), no
other sub-package. Its runtime needs numpy and Pillow only, which the gateway installs.
"""
