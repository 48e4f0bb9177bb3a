"""The Label Studio ML backend: pre-labels from the served model, annotations as feedback.

``settings`` (``LABELSTUDIO_*``), ``images`` (a task's image: Label Studio's uploads, data URIs,
allowed hosts), ``service`` (the protocol's setup, predict and webhook, over the gateway's
prediction and feedback code). The routes are ``gateway.routes.labelstudio``; the protocol and
how to connect a project are in docs/labelstudio.md.
"""
