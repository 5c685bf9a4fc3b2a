"""Request bodies under cheroot: the one place where a broken, oversized or stalled
body becomes a `RequestError` (a 4xx the routes answer in JSON) instead of a 500.

cheroot's `wsgi.input` fails in its own ways: ValueError for a bad chunk-size line,
`MaxSizeExceeded` or a bare `OSError("Request Entity Too Large")` past its own
limit, TimeoutError when the client stops sending, other OSErrors when the
connection breaks. After any of these the rest of the body can never be read, so
the connection has to close once the answer is out: otherwise cheroot first reads
"the rest" of the body to keep the connection alive (waiting a whole timeout more,
after which the answer is lost), then reads the next request from a broken socket.
A WSGI app has no way to ask for that; `ClosingGateway` adds one.

cheroot also reads each chunk of a chunked body whole into memory, at whatever size
the client declares (`FFFFFFFF`: 4 GiB), before any limit here could apply: the
gateway gives the app a `BoundedChunkedRFile` instead, which holds at most a piece
of a chunk at a time.

What to answer stays with the routes; this module reads, limits and classifies.
"""

from __future__ import annotations

import json
import logging
import select
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import bottle
from cheroot import wsgi
from cheroot.errors import MaxSizeExceeded
from cheroot.server import ChunkedRFile

from autotel.errors import BodyTimeoutError, BodyTooLargeError, IncompleteBodyError, RequestError

CLOSE_KEY = "autotel.close_connection"
GONE_KEY = "autotel.client_gone"
ABANDONED_KEY = "autotel.body_abandoned"
CHEROOT_TOO_LARGE = "Request Entity Too Large"  # the text of cheroot's bare OSError

Route = Callable[..., Any]
E = TypeVar("E", bound=RequestError)


class ClosingGateway(wsgi.Gateway_10):
    """cheroot's WSGI gateway, plus `environ[CLOSE_KEY]()`: close the connection after
    this answer; `environ[GONE_KEY]()`: whether the client has gone (`client_gone`); and a
    chunked body read in bounded pieces. Install it with `server.gateway = ClosingGateway`."""

    # cheroot's stubs say get_environ returns None; it returns the environ dict.
    def get_environ(self) -> dict[str, Any]:  # type: ignore[override]
        environ: dict[str, Any] = super().get_environ()  # type: ignore[no-untyped-call]
        environ[CLOSE_KEY] = self._close_after_answer
        environ[GONE_KEY] = lambda: client_gone(self.req.conn.socket)
        if self.req.chunked_read:
            self.req.rfile = BoundedChunkedRFile(self.req.conn.rfile,
                                                 self.req.server.max_request_body_size)
            environ["wsgi.input"] = self.req.rfile
        return environ

    def _close_after_answer(self) -> None:
        self.req.close_connection = True


class BoundedChunkedRFile(ChunkedRFile):
    """cheroot's chunked body reader, holding at most `PIECE` bytes of a chunk at once.

    Errors are cheroot's own (ValueError for a malformed chunk, OSError past `maxlen`),
    so `RequestBody` classifies them as before.
    """

    PIECE = 64 * 1024
    SIZE_LINE = 4096  # a chunk-size line, with any extensions

    def __init__(self, rfile: Any, maxlen: int) -> None:
        super().__init__(rfile, maxlen)
        self.left = 0  # bytes of the current chunk not read yet

    def _fetch(self) -> None:
        if self.closed:
            return
        if not self.left:
            self.left = self._chunk_size()
            if not self.left:
                self.closed = True
                return
        piece = self.rfile.read(min(self.left, self.PIECE))
        if not piece:
            raise ValueError("chunked body cut off inside a chunk")
        self.left -= len(piece)
        self.bytes_read += len(piece)
        self.buffer += piece
        if not self.left and self.rfile.read(2) != b"\r\n":
            raise ValueError("Bad chunked transfer coding (no CRLF after a chunk)")

    def _chunk_size(self) -> int:
        line = self.rfile.readline(self.SIZE_LINE)
        self.bytes_read += len(line)
        if not line.endswith(b"\n"):
            raise ValueError(f"Bad chunked transfer size line: {line[:40]!r}")
        digits = line.split(b";", 1)[0].strip()
        try:
            size = int(digits, 16)
        except ValueError:
            raise ValueError(f"Bad chunked transfer size: {digits[:40]!r}") from None
        if self.maxlen and self.bytes_read + size > self.maxlen:
            raise OSError(CHEROOT_TOO_LARGE)
        return max(size, 0)


def client_gone(sock: socket.socket) -> bool:
    """Whether a client waiting for its answer has closed the connection.

    While it waits for the answer to a request it sent whole, an HTTP/1.1 client sends
    nothing (autotel's admin does not pipeline): anything to read then, the end of
    the stream included, means it gave up. A long wait (an export, a receive) stops
    holding a worker and the address's place for a client that is not there.
    """
    try:
        if sys.platform != "win32":  # select() fails past descriptor 1023 here
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):  # closed already
        return True
    return bool(readable)


def declared_length(environ: dict[str, Any]) -> int:
    """The body's length: -1 for a chunked body (its end is in the stream), 0 for none.

    Raises:
        RequestError: a Content-Length that is not a non-negative number.
    """
    if environ.get("wsgi.input_terminated"):  # cheroot's mark for a chunked body
        return -1
    raw = str(environ.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return 0
    if not (raw.isascii() and raw.isdigit()):
        raise RequestError(f"malformed Content-Length {raw[:40]!r}: expected a number of bytes")
    return int(raw)


class RequestBody:
    """The body of one request, read only through methods that raise `RequestError`s.

    Raises (every method that reads):
        BodyTooLargeError: over the limit given, or over cheroot's own.
        BodyTimeoutError: the client sent nothing for the server's socket timeout.
        IncompleteBodyError: the connection broke, or the body ended early.
        RequestError: a malformed chunked encoding or Content-Length.
    """

    def __init__(self, environ: dict[str, Any]) -> None:
        self.environ = environ
        self.length = declared_length(environ)

    def read(self, size: int) -> bytes:
        """At most `size` bytes; b"" at the end of the body."""
        try:
            return bytes(self.environ["wsgi.input"].read(size))
        except (MaxSizeExceeded, ValueError, OSError) as e:
            raise self._abandoned(_reading_failed(e)) from None

    def read_all(self, limit: int) -> bytes:
        """The whole body, for a small one such as a JSON object."""
        if self.length > limit:
            raise BodyTooLargeError(
                f"request body of {self.length} bytes; at most {limit} accepted here")
        data = self.read(limit + 1 if self.length < 0 else self.length)
        if len(data) > limit:
            raise BodyTooLargeError(
                f"request body over {limit} bytes; at most {limit} accepted here")
        if len(data) < self.length:
            raise self.ended_early(len(data))
        return data

    def ended_early(self, received: int) -> IncompleteBodyError:
        """The error for a body whose stream ended after `received` of its declared bytes."""
        return self._abandoned(IncompleteBodyError(
            f"request body ended after {received} of {self.length} bytes; "
            "the connection was closed before the end"))

    def _abandoned(self, error: E) -> E:
        """Mark the rest of the body as unreadable: the connection closes after the answer,
        and nobody (BodyGuard, cheroot) waits to drain it."""
        self.environ[ABANDONED_KEY] = True
        close = self.environ.get(CLOSE_KEY)
        if callable(close):
            close()
        return error


def _reading_failed(error: Exception) -> RequestError:
    """What a failed read of cheroot's `wsgi.input` means for the client."""
    if isinstance(error, MaxSizeExceeded) or error.args == (CHEROOT_TOO_LARGE,):
        return BodyTooLargeError("request body over the server's limit")
    if isinstance(error, TimeoutError):
        return BodyTimeoutError("the client stopped sending the request body before its end; "
                                "send the whole body without pausing")
    if isinstance(error, ValueError):  # cheroot: a chunk-size line that is not hex, no CRLF
        return RequestError(f"malformed chunked request body ({error})")
    return IncompleteBodyError(f"the connection broke while the request body was read ({error})")


def parse_json(raw: bytes, expected: str) -> Any:
    """A JSON body; `expected` names what it should hold, for the message.

    Text that no UTF-8 encoder takes back (a lone surrogate such as "\\ud800" is valid
    JSON) is refused here, not left to crash whoever hashes or writes it later.

    Raises:
        RequestError: not UTF-8 JSON, or holding such text.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeError, json.JSONDecodeError, RecursionError):
        raise RequestError(f"request body is not valid UTF-8 JSON; expected {expected}") from None
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeError:
        raise RequestError(
            f"request body holds a \\u escape that is no Unicode character (a lone surrogate); "
            f"expected {expected}"
        ) from None
    return data


def refusing_bad_requests(
    log: logging.Logger, answer: Callable[[int, str], bottle.HTTPResponse]
) -> Callable[[Route], Route]:
    """A bottle plugin: a `RequestError` from any route becomes `answer(status, message)`
    and one warning line: the client's fault, so no traceback and no 5xx."""

    def plugin(route: Route) -> Route:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return route(*args, **kwargs)
            except RequestError as e:
                log.warning("refused %s %s from %s: %s", bottle.request.method,
                            bottle.request.path, bottle.request.environ.get("REMOTE_ADDR"), e)
                return answer(e.http_status, str(e))

        return wrapper

    return plugin
