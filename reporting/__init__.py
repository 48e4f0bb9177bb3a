"""Evidently monitoring of the detection service: embedding drift and quality on feedback.

Reads ``data/ref_data.csv`` and ``data/prod_data.csv`` (see docs/architecture.md), adds runs to a
local Evidently workspace with a ready-made dashboard, and serves it with ``evidently ui``.
Imports only :mod:`yoloserve` of ours. Entry point: ``python -m reporting --help``.

Modules: ``config`` (settings), ``project`` (project + dashboard), ``reference`` (the
reference-only run that fills the dashboard before any feedback), ``snapshots`` (the drift and
classification reports and their headline numbers), ``projection`` (the PCA view that replaces
Evidently's t-SNE), ``runs`` (one run: built, stored, read back), ``service`` (CSV in, run
stored), ``watch`` (when to run), ``ui`` (the UI process).
"""
