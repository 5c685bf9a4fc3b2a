"""Serving a bottle app on cheroot, the one way autotel's HTTP services run.

`cheroot.wsgi.Server` directly (not `bottle.run`) so code can stop it, tests can
bind port 0, and body sizes are capped before the app runs. Streaming responses
(SSE, downloads) must watch `ServerHandle.stopping` and wait in bounded steps:
cheroot's `stop()` joins busy workers without a timeout.

Both services face unauthenticated clients, so cheroot's defaults are tightened:
the request line and headers are capped (cheroot reads them into memory, unlimited
by default), and `autotel.web.connections` keeps silent, slow or numerous
connections from one address from holding the worker threads.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from cheroot import wsgi
from cheroot.ssl.builtin import BuiltinSSLAdapter

from autotel.web.connections import ClientSlots, GuardedConnection, GuardedConnections

log = logging.getLogger("autotel.web")

# Cookies and our own headers fit many times over; past it cheroot stops reading and
# answers 414 (request line) or 413 (headers) and closes.
MAX_HEADER_BYTES = 64 * 1024
# The TLS handshake, request line and headers together: a few round trips and under
# 1 KiB, generous on a plant's LAN, short enough that a trickle soon loses its worker.
# A service reached over poor links passes more (`header_timeout_s`).
HEADER_TIMEOUT_S = 10.0


class ServerHandle:
    """A configured server; `serve_forever()` in a service, `start_background()` in tests."""

    def __init__(self, app: Any, host: str, port: int, *, threads: int, timeout_s: float,
                 max_body_bytes: int, certfile: Path | None = None, keyfile: Path | None = None,
                 name: str = "autotel", header_timeout_s: float = HEADER_TIMEOUT_S) -> None:
        self.stopping = threading.Event()
        self.server = _LoggingServer((host, port), app, numthreads=threads, max=threads,
                                     request_queue_size=64, timeout=int(timeout_s),
                                     shutdown_timeout=5, server_name=name)
        self.server.max_request_body_size = max_body_bytes
        self.server.max_request_header_size = MAX_HEADER_BYTES
        self.server.header_timeout_s = header_timeout_s
        # below the thread count, so one address can never occupy every worker
        self.server.slots = ClientSlots(max(2, threads // 2))
        if certfile is not None and keyfile is not None:
            self.server.ssl_adapter = BuiltinSSLAdapter(str(certfile), str(keyfile))
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.bind_addr[1])

    def serve_forever(self) -> None:
        self.server.prepare()
        log.info("%s listening on %s:%d", self.server.server_name, self.server.bind_addr[0], self.port)
        self.server.serve()

    def start_background(self) -> ServerHandle:
        self.server.prepare()
        self._thread = threading.Thread(target=self.server.serve, daemon=True, name="cheroot")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Release every streaming generator first, then stop cheroot."""
        self.stopping.set()
        self.server.stop()
        if self._thread is not None:
            self._thread.join(10)


class _LoggingServer(wsgi.Server):
    """cheroot's server with its error log sent to `logging` instead of stderr, and
    connections that wait for their first byte without a worker (`GuardedConnections`)."""

    ConnectionClass = GuardedConnection
    header_timeout_s = HEADER_TIMEOUT_S
    slots: ClientSlots

    def prepare(self) -> None:
        super().prepare()
        # cheroot's own manager, which holds only the listening socket so far
        self._connections.close()  # type: ignore[has-type]
        self._connections = GuardedConnections(self)

    def error_log(self, msg: str = "", level: int = 20, traceback: bool = False) -> None:
        log.log(level, msg, exc_info=traceback)
