"""TCP ports on 127.0.0.1 (pick free ones, check asked-for ones) and Unix sockets."""

from __future__ import annotations

import os
import socket

from vineyard_runtime.errors import PortInUse
from vineyard_runtime.spec import check_port

LOOPBACK = "127.0.0.1"
#: where vineyardd binds its RPC port (it has no flag for another address)
ANY_ADDRESS = "0.0.0.0"  # noqa: S104


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port`` and it can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_ports(count: int, host: str = LOOPBACK, exclude: set[int] | None = None) -> list[int]:
    """Return ``count`` distinct ports that are free on ``host`` right now."""
    taken = set(exclude or ())
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = sock.getsockname()[1]
        if port not in taken:
            taken.add(port)
            ports.append(port)
    return ports


def require_free(port: int, *, flag: str) -> int:
    """Return ``port`` if free, else raise PortInUse naming the flag that asked for it."""
    check_port(port, what=flag)
    if not is_port_free(port):
        raise PortInUse(
            f"port {port} on {LOOPBACK} is in use (asked for by {flag}); "
            f"choose another port or leave {flag} out to pick free ports"
        )
    return port


def socket_accepts(path: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the Unix socket ``path``."""
    if not os.path.exists(path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True
