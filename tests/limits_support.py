"""Hostile clients on real sockets, for the tests of the web servers' limits.

`huge_header` sends a request whose header never ends.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Callable

Wrap = Callable[[socket.socket], socket.socket]


def plain(sock: socket.socket) -> socket.socket:
    return sock


def tls_wrapper(context: ssl.SSLContext) -> Wrap:
    return lambda sock: context.wrap_socket(sock, server_hostname="127.0.0.1")


def connect(port: int, source_ip: str, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source_ip, 0))


def huge_header(port: int, source_ip: str, size: int, wrap: Wrap = plain) -> tuple[bytes, bool]:
    """Send a GET whose one header is `size` bytes; return (the answer's status line and
    headers, whether the client managed to send everything).

    One thread both sends and reads (an SSL socket is not safe to use from two), and it
    stops sending as soon as an answer arrives, before the server's close resets the
    connection.
    """
    raw = connect(port, source_ip, timeout=5)
    # a small send buffer, so what the client has sent is close to what the server took
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    with wrap(raw) as sock:
        pieces = [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "]
        pieces += [b"A" * 16384] * (size // 16384) + [b"\r\n\r\n"]
        answer, sent_all = None, False
        try:
            for piece in pieces:
                if (answer := _answer_if_any(sock)) is not None:
                    break
                sock.sendall(piece)
            else:
                sent_all = True
        except OSError:
            pass  # the server closed the connection: it stopped reading
        answer = answer or b""
        try:
            while b"\r\n\r\n" not in answer and (chunk := sock.recv(4096)):
                answer += chunk
        except OSError:
            pass
        return answer, sent_all


def _answer_if_any(sock: socket.socket) -> bytes | None:
    """What the server has sent so far, or None. Readable is not enough: after a TLS 1.3
    handshake the server's session tickets make the socket readable too."""
    if not select.select([sock], [], [], 0)[0]:
        return None
    sock.settimeout(0.1)
    try:
        return sock.recv(4096)
    except TimeoutError:
        return None
    finally:
        sock.settimeout(5)
