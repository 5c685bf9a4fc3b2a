"""WSGI middleware that keeps request bodies bounded before any route runs.

cheroot's own limit answers in plain text, so it is set above every route's limit
and this layer answers first, in JSON. Only `POST /update` may send a large body.
A route that answers without reading its body (a refused login, a missing token)
leaves it unread, and cheroot would then read the rest in one piece to keep the
connection: the remainder is drained here in small pieces instead, unless reading
it failed (`autotel.web.bodies`): then the connection closes after the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from autotel.errors import RequestError
from autotel.web.bodies import ABANDONED_KEY, RequestBody, declared_length

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
DRAIN_PIECE = 64 * 1024


class BodyGuard:
    def __init__(self, app: WsgiApp, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        limit = self.limit_for(environ.get("PATH_INFO", ""))
        try:
            declared = declared_length(environ)
        except RequestError as e:
            return _json(start_response, "400 Bad Request", {"error": str(e)})
        if declared > limit:
            return _json(
                start_response,
                "413 Request Entity Too Large",
                {
                    "status": "too_large",
                    "error": f"request body of {declared} bytes; at most {limit} accepted here",
                },
            )
        statuses: list[str] = []

        def recording_start_response(status: str, *args: Any) -> Any:
            statuses.append(status)
            return start_response(status, *args)

        result = self.app(environ, recording_start_response)
        closing = statuses and statuses[-1].startswith("413")  # cheroot closes after a 413
        if not (closing or environ.get(ABANDONED_KEY)):
            _drain(environ, limit)
        return result


def _drain(environ: dict[str, Any], limit: int) -> None:
    """Read what the route left unread, piece by piece, at most `limit` bytes."""
    if environ.get("wsgi.input") is None:
        return
    body = RequestBody(environ)
    total = 0
    try:
        while total <= limit:
            piece = body.read(DRAIN_PIECE)
            if not piece:
                return
            total += len(piece)
    except RequestError:  # a gone or stalled client, a bad chunk: the connection closes
        return


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]) -> list[bytes]:
    data = json.dumps(body).encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            ("Connection", "close"),
        ],
    )
    return [data]
