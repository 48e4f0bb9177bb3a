"""Every TorchServe replica behind one address: what a swap has to reach.

Behind a Kubernetes headless Service (or any DNS name with several A records) each replica is
its own TorchServe with its own management API; a hot swap through the Service's name would
reach one of them. ``discover`` resolves the name and answers one (inference, management) URL
pair per address, so the controller swaps every replica. An IP literal, ``localhost`` or a name
with one address is one replica: the URLs as given.

Example:
    >>> discover("http://127.0.0.1:8085", "http://127.0.0.1:8086")
    [('http://127.0.0.1:8085', 'http://127.0.0.1:8086')]
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit, urlunsplit


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    literal = f"[{host}]" if ":" in host else host
    netloc = f"{literal}:{parts.port}" if parts.port else literal
    return urlunsplit(parts._replace(netloc=netloc))


def _addresses(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    if host == "localhost":
        return [host]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        return [host]  # unresolvable now: the swap reports the connection error itself
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def discover(inference_url: str, management_url: str) -> list[tuple[str, str]]:
    """One (inference URL, management URL) pair per replica behind the management URL's host.

    The inference URL follows when it names the same host (the replica's own ports); another
    host in it is kept as it is for every replica.
    """
    management = urlsplit(management_url)
    host = management.hostname or ""
    addresses = _addresses(host, management.port or 80)
    if len(addresses) <= 1:
        return [(inference_url, management_url)]
    same_host = urlsplit(inference_url).hostname == host
    return [(_with_host(inference_url, a) if same_host else inference_url,
             _with_host(management_url, a)) for a in sorted(addresses)]
