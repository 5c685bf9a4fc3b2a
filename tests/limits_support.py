"""Hostile clients on real sockets, for the tests of the web servers' connection limits.

`Flood` keeps N connections of one kind open from one loopback address (reopening
each one the server closes, as the audit's attacker did); `huge_header` sends a
request whose header never ends; `answer_time` times one ordinary request from
another address; `exchange` sends raw bytes and reads the whole answer.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import BinaryIO, Self

TRICKLE_EVERY_S = 0.2
PARTIAL_CLIENT_HELLO = b"\x16\x03\x01\x02\x00"  # a TLS record header, then nothing

Wrap = Callable[[socket.socket], socket.socket]


def plain(sock: socket.socket) -> socket.socket:
    return sock


def tls_wrapper(context: ssl.SSLContext) -> Wrap:
    return lambda sock: context.wrap_socket(sock, server_hostname="127.0.0.1")


def connect(port: int, source_ip: str, timeout: float = 5) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                    source_address=(source_ip, 0))


def exchange(port: int, request: bytes, *, source_ip: str = "127.0.0.1", wrap: Wrap = plain,
             timeout: float = 10) -> bytes:
    """Send raw bytes and read the answer until the server closes the connection."""
    with wrap(connect(port, source_ip, timeout)) as sock:
        sock.sendall(request)
        reply = b""
        while piece := sock.recv(65536):
            reply += piece
    return reply


class Flood:
    """`count` connections from `source_ip`, each behaving as `kind`:

    - "silent": connects and sends nothing (with `wrap`, after the TLS handshake);
    - "trickle": sends a request line, then a header line every TRICKLE_EVERY_S;
    - "partial_hello": sends the start of a TLS record and nothing more.
    """

    def __init__(self, port: int, source_ip: str, count: int, kind: str,
                 wrap: Wrap = plain) -> None:
        self.port, self.source_ip, self.kind, self.wrap = port, source_ip, kind, wrap
        self.stop = threading.Event()
        self.replies: list[bytes] = []  # what the server answered before closing, if anything
        self._threads = [threading.Thread(target=self._hold, daemon=True, name=f"flood-{i}")
                         for i in range(count)]

    def __enter__(self) -> Self:
        for thread in self._threads:
            thread.start()
        time.sleep(0.5)  # every connection is up (or refused) before the test measures
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(5)

    def _hold(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.port, self.source_ip, timeout=TRICKLE_EVERY_S) as raw:
                    self._behave(raw)
            except OSError:
                pass
            self.stop.wait(0.05)  # then reopen, as an attacker would

    def _behave(self, raw: socket.socket) -> None:
        if self.kind == "partial_hello":
            raw.sendall(PARTIAL_CLIENT_HELLO)
            self._wait_for_close(raw, lambda: None)
            return
        sock = self.wrap(raw)
        if self.kind == "trickle":
            sock.sendall(b"GET / HTTP/1.1\r\n")
            self._wait_for_close(sock, lambda: sock.sendall(b"X-Slow: 1\r\n"))
        else:
            self._wait_for_close(sock, lambda: None)

    def _wait_for_close(self, sock: socket.socket, every_tick: Callable[[], None]) -> None:
        while not self.stop.is_set():
            try:
                data = sock.recv(4096)
            except TimeoutError:
                every_tick()
                continue
            if data:
                self.replies.append(data)
            return


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


def read_response(reader: BinaryIO) -> bytes:
    """The status line of the next response on a keep-alive connection (`sock.makefile("rb")`),
    after reading the rest of that response."""
    status = reader.readline()
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    reader.read(length)
    return status


def answer_time(request: Callable[[], int]) -> tuple[int, float]:
    """(status, seconds) of one ordinary request."""
    started = time.monotonic()
    status = request()
    return status, time.monotonic() - started
