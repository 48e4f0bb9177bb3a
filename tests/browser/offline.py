"""Catch every request the browser sends off this machine.

Chromium runs with ``--proxy-server`` pointed at ``OutsideRecorder``, a tiny HTTP proxy on
loopback that answers 403 to everything and remembers what was asked. Chromium sends loopback
addresses direct (its implicit bypass), so the web app and the gateway are reached as usual,
and anything else (a CDN font, a favicon fetched by the browser rather than the page, a
third-party script) lands here instead of on the network. Playwright's ``page.route`` would miss
the browser's own fetches such as favicons; a proxy sees them all, and DNS is never asked.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass, field

FORBIDDEN = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True


@dataclass
class OutsideRecorder:
    """A loopback HTTP proxy that refuses every request and records its target.

    Example:
        >>> with OutsideRecorder() as outside:  # doctest: +SKIP
        ...     launch(args=[outside.chromium_arg])
        ...     assert outside.seen == []
    """

    seen: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socketserver.ThreadingTCPServer | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    @property
    def chromium_arg(self) -> str:
        return f"--proxy-server=http://127.0.0.1:{self.port}"

    def take(self) -> list[str]:
        """What was seen since the last call, and forget it."""
        with self._lock:
            seen, self.seen = self.seen, []
        return seen

    def _record(self, request_line: str) -> None:
        # "CONNECT fonts.gstatic.com:443 HTTP/1.1" or "GET http://host/path HTTP/1.1"
        parts = request_line.split()
        target = " ".join(parts[:2]) if len(parts) >= 2 else request_line
        with self._lock:
            self.seen.append(target)

    def __enter__(self) -> OutsideRecorder:
        recorder = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline(8192).decode("latin-1").strip()
                while self.rfile.readline(8192).strip():  # the headers
                    pass
                if line:
                    recorder._record(line)
                self.wfile.write(FORBIDDEN)

        self._server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="outside-recorder",
                         daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
