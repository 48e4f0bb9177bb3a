"""``LABELSTUDIO_*``: where Label Studio is, for fetching the images its tasks name.

Nested in the gateway's settings (``Settings.labelstudio``) like ``TORCHSERVE_*``, under the names
Label Studio's own ML backends read (``LABEL_STUDIO_URL`` there; ours has no inner underscore,
like the rest of the platform's prefixes).

Example:
    >>> LabelStudioSettings(url="http://ls:8080/", api_key="t").base_url
    'http://ls:8080'
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class LabelStudioSettings(BaseSettings):
    """``LABELSTUDIO_*``: Label Studio's address and token, and which other hosts images may
    come from."""

    model_config = SettingsConfigDict(env_prefix="LABELSTUDIO_", extra="ignore")

    url: str | None = Field(
        default=None,
        description="Label Studio as the gateway reaches it (http://labelstudio:8080): task "
        "images under /data/... are fetched from there; None = only data: URIs and "
        "LABELSTUDIO_IMAGE_ORIGINS",
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="Label Studio access token (Account & Settings; a legacy token, or a "
        "personal access token, which is exchanged for an access token), sent only to url",
    )
    image_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Other origins (scheme://host:port, comma-separated) task images may be "
        "fetched from, without credentials; anything else is refused (no open proxy)",
    )
    fetch_timeout_s: float = Field(default=20.0, gt=0, description="Fetching one task image")
    max_tasks: int = Field(
        default=32, ge=1, le=1000, description="Tasks per /labelstudio/predict call"
    )

    @field_validator("image_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip().rstrip("/") for item in value.split(",") if item.strip()]
        return value

    @property
    def base_url(self) -> str | None:
        """``url`` without its trailing slash."""
        return self.url.rstrip("/") if self.url else None
