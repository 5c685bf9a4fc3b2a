"""Connections that cannot tie up cheroot's workers for long before they send a request.

cheroot 11 (`connections.ConnectionManager._from_server_socket`) hands every new
connection straight to a worker thread, whose first read then waits for the whole
socket timeout; a client that sends a header line now and then restarts that timeout
with every line; and with TLS it does the handshake in its only accept thread, so a
single TCP connection that never sends a ClientHello stops the server from accepting
anyone for `timeout` seconds. Here instead:

- a new connection waits in cheroot's selector, holding no worker, until it sends
  its first byte (or expires after the server's `timeout`, as idle keep-alives do);
- the TLS handshake runs in the worker;
- the handshake, request line and headers together must arrive within the server's
  `header_timeout_s` (cheroot then answers 408); the body keeps the per-read socket
  timeout, so a long upload over a poor link is not cut;
- one client address holds at most `ClientSlots.per_ip` connections; more are closed
  as soon as they are accepted;
- a client whose link died silently is noticed about one socket timeout later
  (`autotel.deadlink`), also while the agent waits for its runner and sends nothing:
  its worker and its address's place are freed then, not when the job ends;
- an answer goes out at most `LINK_PIECE` bytes per socket write, so the socket
  timeout bounds a stalled link, not the time a slow one takes for a big piece;
- a client that vanishes while it is answered (a reset, a TLS connection cut short,
  a link gone silent until the socket timeout) is one line naming it, a warning if it
  lost an answer of declared length: on poor networks that is normal, no traceback's
  worth.

Left to others: many addresses together can still keep workers busy, each worker
for at most `header_timeout_s` at a time; the size of the request line and headers
is cheroot's `max_request_header_size` (set by `autotel.web.server`).
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

from cheroot import server as cheroot_server
from cheroot.connections import ConnectionManager, prevent_socket_inheritance
from cheroot.makefile import MakeFile, StreamReader, StreamWriter

from autotel.deadlink import LINK_PIECE, watch_for_dead_link

log = logging.getLogger("autotel.web")

TLS_HANDSHAKE_RECORD = 0x16  # the first byte of every ClientHello
# How a client that went away shows while it is answered; a TimeoutError only once
# the answer has started (before that it is a request that stalled: cheroot's 408).
PEER_GONE = (ssl.SSLEOFError, ssl.SSLZeroReturnError, BrokenPipeError, ConnectionResetError,
             ConnectionAbortedError, TimeoutError)
PLAIN_HTTP_ON_TLS = b"The client sent a plain HTTP request, but this server only speaks HTTPS on this port."


class ClientSlots:
    """Open connections per client address, so one address cannot occupy every worker."""

    def __init__(self, per_ip: int) -> None:
        self.per_ip = per_ip
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def take(self, ip: str) -> bool:
        with self._lock:
            if self._open[ip] >= self.per_ip:
                return False
            self._open[ip] += 1
            return True

    def release(self, ip: str) -> None:
        with self._lock:
            self._open[ip] -= 1
            if self._open[ip] <= 0:
                del self._open[ip]

    def open_for(self, ip: str) -> int:
        with self._lock:
            return self._open[ip]


class GuardedConnections(ConnectionManager):
    """cheroot's selector loop, with its accept path replaced (see the module docstring)."""

    def _from_server_socket(self, server_socket: socket.socket) -> None:
        try:
            sock, addr = server_socket.accept()
        except OSError:  # the listening socket's 1 s poll, or a client gone before accept
            return
        ip = str(addr[0])
        if not self.server.slots.take(ip):
            log.debug("refused a connection from %s: %d already open", ip, self.server.slots.per_ip)
            sock.close()
            return
        try:
            prevent_socket_inheritance(sock)
            sock.settimeout(self.server.timeout)
            watch_for_dead_link(sock, self.server.timeout)
            conn = self.server.ConnectionClass(self.server, sock, MakeFile)
        except OSError:
            self.server.slots.release(ip)
            sock.close()
            return
        conn.slot = ip
        conn.remote_addr, conn.remote_port = ip, addr[1]
        conn.ssl_env = {}
        # no worker yet: cheroot's selector hands the connection to one when data arrives
        self.put(conn)


class GuardedRequest(cheroot_server.HTTPRequest):
    def parse_request(self) -> None:
        try:
            super().parse_request()
        finally:  # also before communicate() writes a 408, which needs the normal timeout
            self.conn.end_header_phase()

    def respond(self) -> None:
        """cheroot's answer; a client gone meanwhile closes the connection with one line
        (cheroot logged `socket.error 8` or a write timeout with a traceback): a warning
        when it lost an answer of declared length (an archive cut short), a debug line
        when it left an open-ended stream, which is how the portal's progress stream ends."""
        try:
            super().respond()
        except PEER_GONE as e:
            if isinstance(e, TimeoutError) and not self.sent_headers:
                raise
            self.close_connection = True
            level = logging.WARNING if self._has_length() else logging.DEBUG
            log.log(level, "lost %s:%s while answering %s %s: %s", self.conn.remote_addr,
                    self.conn.remote_port, _text(self.method), _text(self.path),
                    _gone(e, self.server.timeout))

    def _has_length(self) -> bool:
        return any(name.lower() == b"content-length" for name, _ in self.outheaders)


def _text(raw: bytes | None) -> str:
    return (raw or b"-").decode("ascii", "replace")[:200]


def _gone(error: OSError, timeout_s: float) -> str:
    if isinstance(error, TimeoutError):
        return f"the link took nothing for {timeout_s:g} s (the client or its network is gone)"
    return f"the client closed the connection ({type(error).__name__})"


class GuardedConnection(cheroot_server.HTTPConnection):
    """A connection whose header phase (TLS handshake included) has one deadline."""

    RequestHandlerClass = GuardedRequest

    def __init__(self, server: Any, sock: socket.socket, makefile: Any = MakeFile) -> None:
        super().__init__(server, sock, makefile)
        self.wfile = PiecewiseWriter(sock, "wb", self.wbufsize)
        self.header_deadline: float | None = None
        self.rfile = DeadlineReader(sock, self, self.rbufsize)
        self.slot: str | None = None
        self._tls_pending = server.ssl_adapter is not None

    def communicate(self) -> bool:
        self.header_deadline = deadline = time.monotonic() + self.server.header_timeout_s
        if self._tls_pending and not self._handshake(deadline):
            return False
        return bool(super().communicate())  # type: ignore[no-untyped-call]

    def end_header_phase(self) -> None:
        self.header_deadline = None
        self.socket.settimeout(self.server.timeout)

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.slot is not None:
                self.server.slots.release(self.slot)
                self.slot = None

    def _handshake(self, deadline: float) -> bool:
        """TLS in the worker, within the header deadline (not per read: Python bounds the
        whole `do_handshake` by the socket timeout). False: close the connection."""
        raw = self.socket
        raw.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            first = raw.recv(1, socket.MSG_PEEK)
            if not first:
                return False
            if first[0] != TLS_HANDSHAKE_RECORD:
                self._refuse_plain_http(raw)
                return False
            tls = self.server.ssl_adapter.context.wrap_socket(
                raw, server_side=True, do_handshake_on_connect=False)
            self.socket = tls  # it owns the descriptor now, so close() must close it
            tls.do_handshake()
        except (ssl.SSLError, OSError) as e:  # a timeout is an OSError too
            log.debug("TLS handshake with %s failed: %s", self.remote_addr, e)
            return False
        self.rfile = DeadlineReader(tls, self, self.rbufsize)
        self.wfile = PiecewiseWriter(tls, "wb", self.wbufsize)
        self.ssl_env = self.server.ssl_adapter.get_environ(tls)
        self._tls_pending = False
        return True

    def _refuse_plain_http(self, raw: socket.socket) -> None:
        """What cheroot answers to http:// on a TLS port, so an admin sees the mistake."""
        raw.recv(65536)  # what has arrived, so closing does not reset the answer away
        raw.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n"
                    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s"
                    % (len(PLAIN_HTTP_ON_TLS), PLAIN_HTTP_ON_TLS))


class PiecewiseWriter(StreamWriter):
    """cheroot's socket writer, sending at most `LINK_PIECE` bytes per socket write.

    cheroot hands the socket all it has at once (a 256 KiB piece of an archive), and
    a TLS socket's write waits for all of it under one socket timeout: over a link
    slower than the piece per timeout, a download that was flowing was cut, on every
    retry. In pieces, the timeout means what it says: the link took nothing for that long.
    """

    _write_buf: bytearray  # _pyio's BufferedWriter, which cheroot's writer is built on

    def _flush_unlocked(self) -> None:
        self._checkClosed()
        while self._write_buf:
            try:
                sent = self.raw.write(bytes(self._write_buf[:LINK_PIECE]))
            except BlockingIOError as e:
                sent = e.characters_written
            del self._write_buf[:sent]


class _DeadlineSocketIO(socket.SocketIO):
    """Each read in the header phase may wait only for what is left of the deadline."""

    def __init__(self, sock: socket.socket, conn: GuardedConnection) -> None:
        super().__init__(sock, "rb")
        self._conn = conn
        self._timed_sock = sock

    def readinto(self, b: Any) -> int | None:
        deadline = self._conn.header_deadline
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")  # the message cheroot turns into a 408
            self._timed_sock.settimeout(left)
        return super().readinto(b)


class DeadlineReader(StreamReader):
    """cheroot's buffered socket reader over `_DeadlineSocketIO`."""

    def __init__(self, sock: socket.socket, conn: GuardedConnection, bufsize: int) -> None:
        # StreamReader.__init__ would build a plain SocketIO; skip to BufferedReader's
        super(StreamReader, self).__init__(_DeadlineSocketIO(sock, conn), bufsize)
        self.bytes_read = 0
