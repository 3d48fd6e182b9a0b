"""PORT=0: a listening socket on any free port, picked by the kernel as it binds.

Nothing can take the port between choosing and binding it, as it could when a port is picked
first (the way test helpers' unused_port() does) and bound later.
"""

from __future__ import annotations

import socket


def bind_any_port(host: str) -> socket.socket:
    family, _, _, _, address = socket.getaddrinfo(
        host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    return socket.create_server(address[:2], family=family)


def bound_port(listening: socket.socket) -> int:
    port: int = listening.getsockname()[1]
    return port
