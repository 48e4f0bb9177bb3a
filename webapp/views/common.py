"""Pieces every page uses: settings, the sidebar, and turning a GatewayError into a message."""

from __future__ import annotations

import streamlit as st

from gateway_client import GatewayError
from webapp import icons
from webapp.client import make_client
from webapp.config import Settings, SettingsError, get_settings

#: Seconds the sidebar's health probe may take.
_HEALTH_TIMEOUT_S = 2.0

#: What the user can do about an error, by HTTP status (``None``: no answer at all).
_HINTS: dict[int | None, str] = {
    None: "Start the gateway, or point `WEBAPP_GATEWAY_URL` at it.",
    401: "Set `WEBAPP_API_KEY` to the gateway's key (`make demo` prints it) and restart the app.",
    403: "The API key in `WEBAPP_API_KEY` was refused: check it and restart the app.",
    413: "The image is too large for the gateway: try a smaller one.",
    415: "Send a JPEG, PNG, WebP or BMP image.",
    503: "The model server is not ready yet: try again in a moment.",
    504: "The model server took too long: try again, or with a smaller image.",
}


def settings_or_stop() -> Settings:
    """Read the settings; on a bad ``WEBAPP_*`` variable, say which and stop the page."""
    try:
        return get_settings()
    except SettingsError as exc:
        st.error(f"**The app is misconfigured.** {exc}")
        st.stop()
        raise  # st.stop() raises; this line only tells type checkers the function ends here


def error_text(err: GatewayError, action: str) -> str:
    """The markdown shown for a failed call: what failed, why, the code, and what to do."""
    where = f"HTTP {err.status}" if err.status is not None else "no answer"
    lines = [f"**{action}.** {err.message}", f"Error code `{err.code}` ({where})."]
    if err.retry_after:
        lines.append(f"The gateway asks to retry after {err.retry_after} s.")
    hint = _HINTS.get(err.status)
    if hint:
        lines.append(hint)
    if err.request_id:
        lines.append(f"Request id: `{err.request_id}`.")
    return "\n\n".join(lines)


def show_error(err: GatewayError, action: str) -> None:
    """Show a failed gateway call as an error box (never a traceback)."""
    st.error(error_text(err, action), icon=icons.ERROR)


def render_sidebar(settings: Settings) -> None:
    """Where the gateway is and whether it answers ``/health`` right now."""
    with st.sidebar:
        st.markdown("### Gateway")
        st.caption(settings.gateway_url)
        try:
            # A tight limit: this runs on every interaction, and a hung gateway must not
            # make every click wait the full prediction timeout.
            with make_client(settings, timeout_s=_HEALTH_TIMEOUT_S) as gateway:
                gateway.health()
        except GatewayError as err:
            st.error(f"Gateway not available: {err.message}", icon=icons.GATEWAY_DOWN)
        else:
            st.success("Gateway is up", icon=icons.GATEWAY_UP)
