"""Launch the web app: ``python -m webapp [extra streamlit flags]``.

Streamlit reads ``.streamlit/config.toml`` from the working directory only, so the settings
that must always hold are passed as flags here. The equivalent command line is::

    streamlit run webapp/app.py --browser.gatherUsageStats false \\
        --browser.serverAddress localhost --server.headless true \\
        --server.port 8081 --server.address 127.0.0.1 --client.toolbarMode minimal

``WEBAPP_PORT`` and ``WEBAPP_ADDRESS`` change the port and the listening address (a container
needs ``WEBAPP_ADDRESS=0.0.0.0``). ``--browser.serverAddress`` is what stops Streamlit from
asking an outside service for the machine's IP when it prints its URL on a wildcard address;
``--client.toolbarMode minimal`` hides the "Deploy" button, which means nothing here.
Flags given after ``python -m webapp`` come last, so they win.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

APP_PATH = Path(__file__).resolve().parent / "app.py"
DEFAULT_PORT = "8081"
DEFAULT_ADDRESS = "127.0.0.1"


def streamlit_argv(extra: Sequence[str] = (), env: Mapping[str, str] | None = None) -> list[str]:
    """The ``streamlit run`` command line (without the program name).

    Args:
        extra: More flags for Streamlit, appended so they override ours.
        env: Variables to read ``WEBAPP_PORT`` / ``WEBAPP_ADDRESS`` from; ``os.environ`` if None.

    Returns:
        Arguments for ``streamlit``, starting with ``run``.

    Raises:
        SystemExit: ``WEBAPP_PORT`` is not a port number.
    """
    env = os.environ if env is None else env
    port = env.get("WEBAPP_PORT", "").strip() or DEFAULT_PORT
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise SystemExit(f"WEBAPP_PORT must be a port number, got {port!r}")
    address = env.get("WEBAPP_ADDRESS", "").strip() or DEFAULT_ADDRESS
    return [
        "run",
        str(APP_PATH),
        "--browser.gatherUsageStats",
        "false",
        "--browser.serverAddress",
        "localhost",
        "--client.toolbarMode",
        "minimal",
        "--server.headless",
        "true",
        "--server.port",
        port,
        "--server.address",
        address,
        *extra,
    ]


def main(argv: Sequence[str] | None = None) -> None:
    """Run Streamlit in this process with the app's fixed flags."""
    from streamlit.web import cli  # imported here: `--help`-like uses need not pay for it

    args = streamlit_argv(sys.argv[1:] if argv is None else argv)
    # Streamlit's click CLI reads sys.argv; run it as if typed on the command line.
    sys.argv = ["streamlit", *args]
    sys.exit(cli.main())


if __name__ == "__main__":
    main()
