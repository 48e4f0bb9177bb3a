"""The web app's settings, read from ``WEBAPP_*`` environment variables.

Settings are read on every call rather than cached at import: Streamlit re-executes the app
script on each interaction, reading a handful of variables costs nothing, and tests (and an
operator restarting with a new URL) then never fight a stale module-level value.

Example:
    >>> import os
    >>> os.environ["WEBAPP_GATEWAY_URL"] = "http://gateway:8080/"
    >>> get_settings().gateway_url
    'http://gateway:8080'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

#: ``<repo>/data/samples``, computed from this file so it holds from any working directory.
DEFAULT_SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8080"
DEFAULT_EVIDENTLY_URL = "http://127.0.0.1:8082"
#: Seconds to wait for an answer. A CPU prediction takes well under a second; the margin covers
#: a cold model worker, and the cap keeps the UI from hanging on a stuck gateway.
DEFAULT_TIMEOUT_S = 15.0
#: Seconds to open a connection: locally that is instant, so anything longer means "down".
DEFAULT_CONNECT_TIMEOUT_S = 2.0


class SettingsError(ValueError):
    """A ``WEBAPP_*`` variable holds a value the app cannot use."""


@dataclass(frozen=True)
class Settings:
    """Everything the app needs to know about its surroundings.

    Attributes:
        gateway_url: Base URL of the gateway, without a trailing slash.
        api_key: Sent as ``X-API-Key`` on write routes; ``None`` when the gateway needs none.
        evidently_url: Where the Evidently dashboard is served (only linked to).
        samples_dir: Folder of sample images offered on the Detect page.
        timeout_s: Overall time limit of one gateway call, in seconds.
        connect_timeout_s: Time limit to open a connection, in seconds.
    """

    gateway_url: str = DEFAULT_GATEWAY_URL
    api_key: str | None = None
    evidently_url: str = DEFAULT_EVIDENTLY_URL
    samples_dir: Path = DEFAULT_SAMPLES_DIR
    timeout_s: float = DEFAULT_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip() or default
    if not value.startswith(("http://", "https://")):
        raise SettingsError(f"{name} must start with http:// or https://, got {value!r}")
    return value.rstrip("/")


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 < value <= 600:
        raise SettingsError(f"{name} must be between 0 and 600 seconds, got {raw!r}")
    return value


def get_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from the environment.

    Args:
        env: Variables to read; ``os.environ`` when ``None``.

    Returns:
        The validated settings.

    Raises:
        SettingsError: A variable is set to an unusable value (the message names it).
    """
    env = os.environ if env is None else env
    samples = env.get("WEBAPP_SAMPLES_DIR", "").strip()
    return Settings(
        gateway_url=_url(env, "WEBAPP_GATEWAY_URL", DEFAULT_GATEWAY_URL),
        # An empty variable means "no key", as compose files often write `WEBAPP_API_KEY=`.
        api_key=env.get("WEBAPP_API_KEY", "").strip() or None,
        evidently_url=_url(env, "WEBAPP_EVIDENTLY_URL", DEFAULT_EVIDENTLY_URL),
        samples_dir=Path(samples).expanduser() if samples else DEFAULT_SAMPLES_DIR,
        timeout_s=_seconds(env, "WEBAPP_TIMEOUT_S", DEFAULT_TIMEOUT_S),
        connect_timeout_s=_seconds(env, "WEBAPP_CONNECT_TIMEOUT_S", DEFAULT_CONNECT_TIMEOUT_S),
    )
