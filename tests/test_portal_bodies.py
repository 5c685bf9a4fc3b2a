"""Broken and stalled request bodies at the portal, over real sockets.

Each must end in a JSON 4xx and a warning without a traceback, and leave the
portal serving; every API body is read by the one `_json_body`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest

from autotel.config import Config
from autotel.web.server import ServerHandle
from tests.limits_support import exchange as raw_exchange
from tests.portal_support import PIN, client, running_portal

SOCKET_TIMEOUT_S = 2


@pytest.fixture
def portal(bare_site: Config) -> Iterator[ServerHandle]:
    with running_portal(bare_site, socket_timeout_s=SOCKET_TIMEOUT_S) as handle:
        yield handle


def exchange(portal: ServerHandle, request: bytes) -> bytes:
    """Send raw bytes and read the answer until the portal closes the connection."""
    return raw_exchange(portal.port, request, timeout=SOCKET_TIMEOUT_S * 5)


def login_request(headers: str, body: bytes) -> bytes:
    return f"POST /api/login HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode() + body


SURROGATE = b'{"pin": "\\ud800"}'
SURROGATE_SHA = b'{"sha256": "\\udfff"}'


@pytest.mark.parametrize(("request_bytes", "status"), [
    pytest.param(login_request("Content-Length: -5\r\n", b""), 400, id="negative-length"),
    pytest.param(login_request("Transfer-Encoding: chunked\r\n", b"zz\r\n"), 400,
                 id="chunk-size-not-hex"),
    pytest.param(login_request("Transfer-Encoding: chunked\r\n", b"FFFFFFFF\r\nabc"), 413,
                 id="chunk-over-the-server-limit"),
    pytest.param(login_request("Content-Length: 4000\r\n", b'{"pin": "1"'), 408,
                 id="stalled-body"),
    pytest.param(login_request(f"Content-Length: {len(SURROGATE)}\r\n", SURROGATE), 400,
                 id="lone-surrogate-pin"),
    pytest.param(f"POST /api/update/apply HTTP/1.1\r\nHost: x\r\nX-Config-Pin: {PIN}\r\n"
                 f"Content-Length: {len(SURROGATE_SHA)}\r\n\r\n".encode() + SURROGATE_SHA, 400,
                 id="lone-surrogate-sha256"),
])
def test_a_body_that_cannot_be_read_is_a_json_4xx(
    portal: ServerHandle, request_bytes: bytes, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    reply = exchange(portal, request_bytes)
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), reply[:300]
    assert b"Content-Type: application/json" in head
    assert isinstance(json.loads(body)["error"], str)
    ours = [r for r in caplog.records if r.name.startswith(("autotel.portal", "autotel.web"))]
    assert not [r for r in ours if r.levelno >= logging.ERROR or r.exc_info], [
        r.getMessage() for r in ours]
    assert [r for r in ours if r.levelno == logging.WARNING]
    with client(portal) as http:
        assert http.get("/api/update/status", headers={"X-Config-Pin": PIN}).status_code == 200
