"""A client of the gateway's public contract (``docs/api-contract.md``), shared by its callers.

The web app and the drift scenario (``scripts/scenario``) both talk to the gateway through it.
It depends on httpx and the standard library only, so any program that reaches the gateway
over HTTP can use it without the rest of the project. Three modules, one job each:

- :mod:`gateway_client.client`: :class:`GatewayClient`, the transport (one method per route);
- :mod:`gateway_client.entities`: the dataclasses the answers are parsed into;
- :mod:`gateway_client.errors`: :class:`GatewayError` and :class:`GatewayUnreachable`, the
  only exceptions a call raises.

Example:
    >>> from gateway_client import GatewayClient, GatewayError
    >>> with GatewayClient("http://127.0.0.1:8080", api_key="k") as gw:  # doctest: +SKIP
    ...     gw.models().default_version
    '3'
"""

from gateway_client.client import GatewayClient
from gateway_client.entities import (
    Box,
    FeedbackResult,
    LabelBox,
    ModelsInfo,
    ModelVersion,
    Prediction,
    RetrainJob,
    RetrainProgress,
    ReviewItem,
    ReviewQueue,
)
from gateway_client.errors import GatewayError, GatewayUnreachable, JobFailed

__all__ = [
    "Box",
    "FeedbackResult",
    "GatewayClient",
    "GatewayError",
    "GatewayUnreachable",
    "JobFailed",
    "LabelBox",
    "ModelVersion",
    "ModelsInfo",
    "Prediction",
    "RetrainJob",
    "RetrainProgress",
    "ReviewItem",
    "ReviewQueue",
]
