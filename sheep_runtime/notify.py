"""systemd's readiness protocol (sd_notify(3)) without libsystemd: one datagram of
`KEY=VALUE` lines to the Unix socket named by `$NOTIFY_SOCKET`.

Outside a `Type=notify` unit the variable is unset and every call is a no-op."""

from __future__ import annotations

import os
import socket

ENV = "NOTIFY_SOCKET"


def _address(name: str) -> str | bytes:
    # "@name" is a socket in the abstract namespace: a leading NUL byte on the wire.
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def notify(state: str) -> bool:
    """Send `state` (e.g. "READY=1") to the service manager; False if there is none.
    An unreachable socket is an OSError: the manager asked for readiness and would
    otherwise wait for it until its start timeout."""
    name = os.environ.get(ENV, "")
    if not name:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.sendto(state.encode(), _address(name))
    return True


def ready(status: str = "") -> bool:
    """The service is up: its API serves and recovery is done."""
    return notify("READY=1" + (f"\nSTATUS={status}" if status else ""))


def stopping() -> bool:
    """The service began shutting down."""
    return notify("STOPPING=1")
