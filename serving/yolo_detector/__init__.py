"""What ``serving/handler.py`` runs inside TorchServe's worker, without Ultralytics or torchvision.

Packed into every ``.mar`` beside the handler (the worker puts the archive's folder on
``sys.path``), each step a small module that matches Ultralytics' own code for the same step, so
that a request answers what ``YOLO(weights).predict(path)`` answers (the packager checks it):

    bytes --requests--> image bytes + thresholds --decode--> BGR uint8 --letterbox--> float32 NCHW
          --runtimes (ONNX Runtime / OpenVINO / TorchScript)--> raw head --postprocess--> boxes

It imports numpy, OpenCV, PIL, the standard library and the runtime of the export, nothing else.
"""
