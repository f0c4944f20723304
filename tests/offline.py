"""Block network access for the tests and for every notebook kernel they start.

CI has no network, and the course promises that nothing downloads at test or build time.
Rather than hope, every test process (``tests/conftest.py``) and every IPython kernel started
with ``IPYTHONDIR=tests/kernel_profile`` (the profile's startup file) calls
:func:`block_network`. Afterwards, opening a connection to anything but this machine raises
:class:`NetworkBlockedError`, so a chapter that tries to download fails loudly instead of
passing on a machine that happens to be online.
"""
from __future__ import annotations

import ipaddress
import socket
from typing import Any

__all__ = ["NetworkBlockedError", "block_network", "is_local"]


class NetworkBlockedError(OSError):
    """Raised when code tries to reach a non-local address while the network is blocked."""


_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


def is_local(host: Any) -> bool:
    """Return True for loopback addresses and names (kernels talk to Jupyter over loopback)."""
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_of(address: Any) -> Any:
    # AF_INET / AF_INET6 addresses are tuples; AF_UNIX addresses are paths (always local).
    if isinstance(address, tuple) and address:
        return address[0]
    return None


def block_network() -> None:
    """Make every outgoing non-loopback connection and name lookup raise.

    Idempotent: calling it twice patches once.
    """
    if getattr(socket, "_im_network_blocked", False):
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what: Any) -> NetworkBlockedError:
        return NetworkBlockedError(
            f"network access to {what!r} is blocked: the course runs offline in tests and CI. "
            "Use data that ships with an installed package or that you generate "
            "(see utils.data); real downloads belong behind the Colab-only switch."
        )

    def connect(self: socket.socket, address: Any) -> None:
        if not is_local(_host_of(address)):
            raise refuse(address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not is_local(_host_of(address)):
            raise refuse(address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not is_local(host):
            raise refuse(host)
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket._im_network_blocked = True  # type: ignore[attr-defined]
