"""Loopback ports: a free one when the user did not choose, and a clear error when a chosen one is taken."""
from __future__ import annotations

import errno
import socket

from harness.errors import ConfigError

__all__ = ["LOOPBACK", "PortTaken", "check_free", "free_port", "pick"]

LOOPBACK = "127.0.0.1"


class PortTaken(ConfigError):
    pass


def free_port() -> int:
    """A port the kernel says is free now. Another program could take it before we bind; every
    component's start is checked, so that race shows up as a start failure naming the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def check_free(port: int, what: str, option: str) -> None:
    """Raise PortTaken naming the option to change when `port` is already bound on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortTaken(
                    f"port {port} for {what} on {LOOPBACK} is already in use; pass another port to "
                    f"{option} (or 0 for a free one)"
                ) from None
            raise


def pick(port: int) -> int:
    return port if port else free_port()
