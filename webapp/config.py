"""The web app's settings: one class, read from ``WEBAPP_*`` environment variables.

Settings are read on every call rather than cached at import: Streamlit re-executes the app
script on each interaction, reading a handful of variables costs nothing, and tests (and an
operator restarting with a new URL) then never fight a stale module-level value.

A variable set to an empty string counts as unset (compose files often write ``WEBAPP_API_KEY=``),
and a bad value is a :class:`SettingsError` whose message names the variable.

Example:
    >>> import os
    >>> os.environ["WEBAPP_GATEWAY_URL"] = "http://gateway:8080/"
    >>> get_settings().gateway_url
    'http://gateway:8080'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "WEBAPP_"
#: ``<repo>/data/samples``, computed from this file so it holds from any working directory.
DEFAULT_SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
DEFAULT_EVIDENTLY_URL = "http://127.0.0.1:8082"
#: Seconds to wait for an answer. A CPU prediction takes well under a second; the margin covers
#: a cold model worker, and the cap keeps the UI from hanging on a stuck gateway.
DEFAULT_TIMEOUT_S = 15.0
#: Seconds to open a connection: locally that is instant, so anything longer means "down".
DEFAULT_CONNECT_TIMEOUT_S = 2.0
#: Longest time limit accepted, in seconds.
MAX_TIMEOUT_S = 600.0


class SettingsError(ValueError):
    """A ``WEBAPP_*`` variable holds a value the app cannot use."""


def _invalid(message: str) -> PydanticCustomError:
    # A custom error keeps our sentence as the message, without pydantic's "Value error, ".
    # No context: the message is used as is, never formatted again.
    return PydanticCustomError("webapp_setting", message)


class Settings(BaseSettings):
    """Everything the app needs to know about its surroundings (``WEBAPP_<FIELD>``).

    Attributes:
        gateway_url: Base URL of the gateway, without a trailing slash.
        api_key: Sent as ``X-API-Key`` on write routes; ``None`` when the gateway needs none.
        evidently_url: Where the Evidently dashboard is served (only linked to).
        samples_dir: Folder of sample images offered on the Detect page.
        timeout_s: Overall time limit of one gateway call, in seconds.
        connect_timeout_s: Time limit to open a connection, in seconds.
    """

    # WEBAPP_PORT and WEBAPP_ADDRESS are the launcher's (webapp/__main__.py): ignored here.
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    gateway_url: str = Field(DEFAULT_GATEWAY_URL, description="Gateway base URL.")
    api_key: str | None = Field(None, description="X-API-Key for the write routes.")
    evidently_url: str = Field(DEFAULT_EVIDENTLY_URL, description="Evidently dashboard URL.")
    samples_dir: Path = Field(DEFAULT_SAMPLES_DIR, description="Sample images folder.")
    timeout_s: float = Field(DEFAULT_TIMEOUT_S, description="Limit of one gateway call (s).")
    connect_timeout_s: float = Field(
        DEFAULT_CONNECT_TIMEOUT_S, description="Limit to open a connection (s)."
    )

    @field_validator("gateway_url", "evidently_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise _invalid(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("samples_dir")
    @classmethod
    def _expand_user(cls, value: Path) -> Path:
        return value.expanduser()

    @field_validator("timeout_s", "connect_timeout_s", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise _invalid(f"must be a number of seconds, got {value!r}") from None
        if not 0 < seconds <= MAX_TIMEOUT_S:
            raise _invalid(f"must be between 0 and 600 seconds, got {value!r}")
        return seconds

    # Defined last on purpose: pydantic runs "before" validators last-defined first, so every
    # other validator sees the stripped value or the default.
    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """Strip strings; an empty one gives the field's default."""
        if isinstance(value, str):
            value = value.strip()
            if not value and info.field_name is not None:
                return cls.model_fields[info.field_name].default
        return value


def _variable(error: Mapping[str, Any]) -> str:
    loc = error.get("loc") or ()
    return f"{ENV_PREFIX}{str(loc[0]).upper()}" if loc else ENV_PREFIX + "*"


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment.

    Args:
        env: Variables to read; ``os.environ`` when ``None``.

    Returns:
        The validated settings.

    Raises:
        SettingsError: A variable is set to an unusable value (the message names it).
    """
    try:
        if env is None or env is os.environ:
            return Settings()
        # Validation only: model_validate reads no environment, just the mapping given.
        values = {
            name: env[key]
            for name in Settings.model_fields
            if (key := f"{ENV_PREFIX}{name.upper()}") in env
        }
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(f"{_variable(e)} {e['msg']}" for e in exc.errors())
        raise SettingsError(problems) from None
