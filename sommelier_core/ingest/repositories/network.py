"""Failing fast when a hub is unreachable.

Torch Hub and tensorflow_hub open URLs without a timeout, so behind a firewall that drops packets
a listing would hang for minutes. Connectors first open (and close) one TCP connection to the
hub's host with a short timeout, and run the hub library's download under a default socket
timeout, so an unreachable hub becomes a `RepositoryError` within seconds.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

from sommelier_core.errors import RepositoryError

DEFAULT_TIMEOUT_S = 5.0


def check_reachable(url: str, what: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Raise `RepositoryError` naming `what` unless the host of `url` accepts a TCP connection."""
    parsed = urlparse(url)
    host = parsed.hostname
    if not host:
        raise RepositoryError(f"{what}: {url!r} is not a URL with a host name")
    port = parsed.port or (80 if parsed.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise RepositoryError(
            f"{what}: cannot reach {host}:{port} within {timeout_s:g} s ({exc}); "
            "check the network, or use a local copy of the repository"
        ) from exc


@contextmanager
def socket_timeout(timeout_s: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    """Give sockets opened inside the block a default timeout, unless one is already set.

    The default is process-wide while the block runs; hub libraries offer no other way to bound
    their downloads, and one stalled read then fails instead of hanging.
    """
    previous = socket.getdefaulttimeout()
    if previous is None:
        socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
