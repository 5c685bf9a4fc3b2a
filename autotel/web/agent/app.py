"""The agent's HTTP routes (bottle): auth, export, update.

Each route parses its input, asks the pure parts (`auth`, `outcomes`,
`autotel.export.cursor`) what to do, and lets the runner do the work through a job.
Every answer, errors included, is JSON (except the archive itself); a bad request
never causes a 5xx, and no traceback ever reaches a client.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import bottle

from autotel.config import Config
from autotel.errors import DiskSpaceError, PackageError, RequestError
from autotel.export.archive import prune
from autotel.export.cursor import BadExportRequest, ExportRequest
from autotel.fsutil import atomic_write_text
from autotel.package.semver import parse_version
from autotel.spool.queue import Spool
from autotel.web.agent.auth import AuthDenied, Authenticator
from autotel.web.agent.export_resume import etag, resumed
from autotel.web.agent.jobs import JobTimeout, run_job
from autotel.web.agent.outcomes import (
    export_result,
    reset_reason,
    update_answer,
    upload_refusal,
)
from autotel.web.agent.sessions import record_session
from autotel.web.agent.upload import discard, receive_upload
from autotel.web.agent.upload_resume import ResumableUpload, held_bytes, receive_resumable
from autotel.web.bodies import GONE_KEY, RequestBody, parse_json, refusing_bad_requests

log = logging.getLogger("autotel.agent")

AUTH_BODY_LIMIT = 8 * 1024
SEND_PIECE = 256 * 1024
RECEIVE_WAIT_S = 1800.0  # the receive step's own timeout (jobs/receive.yaml) is shorter
ERROR_CODES = (400, 401, 403, 404, 405, 408, 411, 413, 414, 429, 500, 501, 503, 507)


@dataclass
class AgentState:
    """What the routes share: config, the authenticator, the spool, archives in flight."""

    config: Config
    auth: Authenticator
    stopping: threading.Event
    spool: Spool = field(init=False)
    serving: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.spool = Spool(self.config.state)


def json_error(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> bottle.HTTPResponse:
    return bottle.HTTPResponse(
        body=json.dumps(body, ensure_ascii=False),
        status=status,
        headers={"Content-Type": "application/json", **(headers or {})},
    )


def peer_ip() -> str:
    """The TCP peer; never X-Forwarded-For, which any client can write (and dodge limits with)."""
    return str(bottle.request.environ.get("REMOTE_ADDR") or "")


def build_app(state: AgentState) -> bottle.Bottle:
    app = bottle.Bottle(catchall=True, autojson=True)
    _install_error_handlers(app)
    app.install(refusing_bad_requests(log, lambda code, text: json_error(code, {"error": text})))
    app.route("/auth/challenge", "GET", lambda: _challenge(state))
    app.route("/auth", "POST", lambda: _login(state))
    app.route("/data/export", "GET", lambda: _export(state))
    app.route("/data/export", "HEAD", _no_head)  # bottle would run a whole export for HEAD
    app.route("/update", "POST", lambda: _update(state))
    app.route("/update/upload", "GET", lambda: _upload_held(state))
    return app


def _no_head() -> None:
    raise json_error(405, {"error": "use GET"}, {"Allow": "GET"})


def _install_error_handlers(app: bottle.Bottle) -> None:
    def handler(error: bottle.HTTPError) -> str:
        if error.status_code >= 500:
            log.error("internal error: %s", error.exception, exc_info=error.exception)
            message = "internal error; see the agent's log"
        else:
            message = {404: "no such endpoint", 405: "method not allowed here"}.get(
                error.status_code, str(error.body or error.status_line)
            )
        bottle.response.content_type = "application/json"
        return json.dumps({"error": message})

    for code in ERROR_CODES:
        app.error(code)(handler)
    app.default_error_handler = handler  # any other status, also JSON


def _challenge(state: AgentState) -> dict[str, str]:
    try:
        return state.auth.challenge(peer_ip())
    except AuthDenied as e:
        raise _denied(e) from None


def _login(state: AgentState) -> dict[str, str]:
    ip = peer_ip()
    try:
        state.auth.admit_login(ip)
        return state.auth.login(_auth_body())
    except AuthDenied as e:
        log.warning("refused login from %s: %s", ip, e.message)
        raise _denied(e) from None


def _auth_body() -> Any:
    """The login body, read only after the rate limit admitted the attempt."""
    try:
        raw = RequestBody(bottle.request.environ).read_all(AUTH_BODY_LIMIT)
        return parse_json(raw, '{"timestamp", "nonce", "signature"}')
    except RequestError as e:
        raise AuthDenied(e.http_status, str(e)) from None


def _denied(e: AuthDenied) -> bottle.HTTPResponse:
    headers = {"Retry-After": str(e.retry_after_s)} if e.retry_after_s else {}
    return json_error(e.status, {"error": e.message}, headers)


def _require_token(state: AgentState) -> None:
    if not state.auth.token_valid(bottle.request.get_header("Authorization")):
        raise json_error(
            401,
            {
                "error": "missing, invalid or expired session token; "
                "authenticate at /auth/challenge and /auth"
            },
            {"WWW-Authenticate": "Bearer"},
        )


def _export(state: AgentState) -> Any:
    _require_token(state)
    try:
        request = ExportRequest.from_query(_query_value("since"), _query_value("cursor"))
    except BadExportRequest as e:
        raise json_error(400, {"error": str(e)}) from None
    rest = resumed(state.spool, request.to_params(), bottle.request.get_header("Range"),
                   bottle.request.get_header("If-Range"))
    if rest is not None:
        return _send_archive(state, rest.result, rest.job_id, peer_ip(), rest.offset)
    try:
        job = run_job(
            state.spool,
            "export",
            request.to_params(),
            state.config.agent.export_timeout_s,
            state.stopping,
            _client_gone(),
        )
    except JobTimeout as e:
        raise json_error(503, {"error": str(e)}) from None
    result = export_result(job)
    if result is None:
        raise json_error(503, {"error": f"export failed: {job.get('error') or 'no archive'}"})
    return _send_archive(state, result, job["id"], peer_ip())


def _client_gone() -> Callable[[], bool]:
    """How a long wait for the runner notices that the admin gave up (`client_gone`)."""
    gone: Callable[[], bool] = bottle.request.environ.get(GONE_KEY) or (lambda: False)
    return gone


def _query_value(name: str) -> str | None:
    """One query parameter, or None; given twice or empty it is malformed, not absent
    (treating it as absent would turn a bad cursor into a full export)."""
    values = bottle.request.query.getall(name)
    if not values:
        return None
    if len(values) > 1 or not values[0].strip():
        raise BadExportRequest(f"{name}: give it once, with a value")
    return str(values[0])


def _send_archive(state: AgentState, result: dict[str, Any], job_id: str, ip: str,
                  offset: int = 0) -> ArchiveStream:
    """The archive from byte `offset` on (206 for a resumed download), with its headers."""
    path = state.config.state.exports / result["archive"]
    try:
        stream = path.open("rb")
    except OSError as e:
        raise json_error(
            503, {"error": f"export archive {path.name} is gone: {e.strerror}"}
        ) from None
    size = os.fstat(stream.fileno()).st_size
    if size != result["size"]:
        stream.close()
        raise json_error(
            503,
            {
                "error": f"export archive {path.name} has {size} bytes, "
                f"the export wrote {result['size']}"
            },
        )
    stream.seek(offset)
    headers = {
        "Content-Type": "application/gzip",
        "Content-Length": str(size - offset),
        "X-Record-Count": str(result["records"]),
        "X-Period-End": result["period_end"],
        "X-Cursor": result["cursor"],
        "X-Content-SHA256": result["sha256"],
        "ETag": etag(job_id, result),
        "Accept-Ranges": "bytes",
    }
    if reset_reason(result):
        headers["X-Cursor-Reset"] = reset_reason(result)  # additive: the admin says so
    if offset:
        bottle.response.status = 206
        headers["Content-Range"] = f"bytes {offset}-{size - 1}/{size}"
    for name, value in headers.items():
        bottle.response.set_header(name, value)
    return ArchiveStream(state, stream, result, ip, offset)


class ArchiveStream:
    """The archive as a WSGI body, in pieces; `close()` (always called by the server,
    even when the client left before the first byte) records the session.

    A class rather than a generator: a generator closed before it started would
    skip its `finally`, and the archive would stay marked as being served.
    """

    def __init__(
        self, state: AgentState, stream: BinaryIO, result: dict[str, Any], ip: str, offset: int
    ) -> None:
        self.state, self.stream, self.result, self.ip = state, stream, result, ip
        self.offset = offset
        self.sent = 0
        self.closed = False
        with state.lock:
            state.serving.add(result["archive"])
            # older archives are superseded, also those whose download broke and was not
            # resumed: each broken push would otherwise leave a whole archive on the site
            prune(state.config.state.exports, state.serving)

    def __iter__(self) -> Iterator[bytes]:
        while not self.state.stopping.is_set():
            piece = self.stream.read(SEND_PIECE)
            if not piece:
                return
            self.sent += len(piece)
            yield piece

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.close()
        complete = self.offset + self.sent == self.result["size"]
        paths = self.state.config.state
        with self.state.lock:
            self.state.serving.discard(self.result["archive"])
        if complete:
            atomic_write_text(paths.last_sync, self.result["period_end"] + "\n")
        record_session(
            paths.sessions,
            self.ip,
            "export",
            records=self.result["records"],
            status="ok" if complete else "interrupted",
            max_mb=self.state.config.retention.sessions_max_mb,
            reset=reset_reason(self.result) or None,
            resumed_from=self.offset or None,
        )


def _upload_held(state: AgentState) -> dict[str, Any]:
    """How much of a package an upload that broke off left on the site (`upload_resume`)."""
    _require_token(state)
    try:
        sha256 = _query_value("sha256") or ""
        return {"sha256": sha256, "offset": held_bytes(state.config.state.incoming, sha256)}
    except (RequestError, BadExportRequest) as e:
        raise json_error(400, {"error": str(e)}) from None


def _update(state: AgentState) -> Any:
    _require_token(state)
    ip = peer_ip()
    version = (bottle.request.get_header("X-Update-Version") or "").strip()
    try:
        parse_version(version[:100])
    except ValueError:
        raise json_error(
            400,
            {
                "status": "invalid_package",
                "error": f"X-Update-Version {version[:40]!r}: expected a semantic version X.Y.Z",
            },
        ) from None
    limit = state.config.agent.max_update_mb * 1024 * 1024
    request_body, incoming = RequestBody(bottle.request.environ), state.config.state.incoming
    try:
        resumable = ResumableUpload.from_headers(bottle.request.get_header)
        upload = (receive_resumable(request_body, resumable, limit, incoming) if resumable
                  else receive_upload(request_body, limit, incoming))
    except (RequestError, DiskSpaceError, PackageError) as e:
        status, body, logged = upload_refusal(e)
        log.warning("refused the update upload from %s: %s", ip, e)
        record_session(
            state.config.state.sessions, ip, "update", version=version, status=logged,
            max_mb=state.config.retention.sessions_max_mb,
        )
        raise json_error(status, body) from None
    params = {
        "upload": str(upload),
        "version": version,
        "signature": bottle.request.get_header("X-Manifest-Signature") or "",
        "peer_ip": ip,
    }
    try:
        job = run_job(state.spool, "receive", params, RECEIVE_WAIT_S, state.stopping,
                      _client_gone())
    except JobTimeout as e:
        raise json_error(503, {"status": "error", "error": str(e)}) from None
    status, body = update_answer(job)
    discard(upload)  # the receive steps remove it already; this covers a job that failed early
    record_session(
        state.config.state.sessions, ip, "update", version=version, status=body["status"],
        max_mb=state.config.retention.sessions_max_mb,
    )
    bottle.response.status = status
    return body
