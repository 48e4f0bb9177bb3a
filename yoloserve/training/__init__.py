"""Data and training for the detector: the synthetic dataset, Ultralytics fine-tuning, retrain sets.

Owns the seeded synthetic shapes dataset in YOLO format (``dataset``), training and evaluating
with Ultralytics (``train``: torch and ultralytics are imported inside its functions), and the
train/eval image lists a retrain job uses, reference plus feedback images (``retrain_data``).

May import: the foundation modules of ``yoloserve`` (``offline``, ``boxes``, ...); nothing of
modelserver (training knows weights files, not versions or TorchServe), feedback or retrain.
"""
