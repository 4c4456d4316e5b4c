"""Free ports on this machine's loopback, and how a server says another process took one."""

from __future__ import annotations

import socket

__all__ = ["PORT_ATTEMPTS", "PORT_TAKEN_MARKERS", "free_port", "port_in_use", "says_port_taken"]

#: Starts on a free port before giving up, each having found its port taken.
PORT_ATTEMPTS = 3
#: Log lines that mean another process took the port between our check and the bind.
PORT_TAKEN_MARKERS = (
    "Address already in use",
    "Could not create listening socket",
    "Do you already have another",
    "could not bind IPv4 address",
    "eaddrinuse",  # Erlang's (RabbitMQ, its management listener or distribution port)
    "dist_port_already_used",  # RabbitMQ's check of its distribution port, before binding
)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing is bound to now, the kernel's pick: the server binds it later,
    and another process may take it first (:data:`PORT_TAKEN_MARKERS`)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def says_port_taken(text: str) -> bool:
    """Whether a server's log (or an error quoting it) says another process took its port."""
    return any(marker in text for marker in PORT_TAKEN_MARKERS)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether binding ``port`` fails now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
        return False
