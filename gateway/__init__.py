"""FastAPI gateway: the public API in front of TorchServe (see docs/api-contract.md).

Start it with ``python -m gateway``; configure it with ``GATEWAY_*`` variables (README.md,
Configuration).
"""
