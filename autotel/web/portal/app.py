"""The portal's HTTP surface: the operator page and `/api/*`, on `ServerHandle`.

Routes stay thin: auth decisions are in `auth`/`lockout`/`sessions`, update
decisions in `updates`, the stream in `progress`, the page in `page`. Every error
is a JSON object `{"error": "..."}`, also for unknown paths and server faults.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import bottle

from autotel.config import Config
from autotel.errors import ConfigError, JobError, RequestError
from autotel.spool.jobfile import failed_steps
from autotel.spool.queue import Spool
from autotel.web.bodies import ClosingGateway, RequestBody, parse_json, refusing_bad_requests
from autotel.web.portal.auth import (
    COOKIE_NAME,
    CSRF_HEADER,
    PIN_HEADER,
    AuthRefused,
    PortalAuth,
    cross_origin,
)
from autotel.web.portal.i18n import choose_language
from autotel.web.portal.page import STATIC_DIR, render_page
from autotel.web.portal.progress import ProgressStream, SubscriberCap
from autotel.web.portal.updates import (
    ApplyGate,
    ApplyRefused,
    ConfirmationMissing,
    update_status,
)
from autotel.web.server import ServerHandle

log = logging.getLogger("autotel.portal")

MAX_BODY_BYTES = 4096          # the API takes a PIN or a hash, nothing bigger
SERVER_BODY_LIMIT = 1 << 20    # cheroot's own (plain-text) 413 only past this
LANG_COOKIE = "autotel_lang"
THREADS_BESIDES_STREAMS = 8
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def build_portal(config: Config, port: int | None = None) -> ServerHandle:
    """The portal server, not yet started (`serve_forever()` or `start_background()`).

    Raises:
        ConfigError: `portal.tls` is on but the site has no certificate.
    """
    certfile = keyfile = None
    if config.portal.tls:
        certfile, keyfile = config.state.tls / "cert.pem", config.state.tls / "key.pem"
        if not (certfile.is_file() and keyfile.is_file()):
            raise ConfigError(f"portal.tls is on but {certfile} or {keyfile} is missing; "
                              "run `autotel cert`")
    app = bottle.Bottle()
    handle = ServerHandle(
        app, config.portal.host, config.portal.port if port is None else port,
        threads=max(config.portal.threads, config.portal.max_sse_clients + THREADS_BESIDES_STREAMS),
        timeout_s=config.portal.socket_timeout_s, max_body_bytes=SERVER_BODY_LIMIT,
        certfile=certfile, keyfile=keyfile, name="autotel-portal",
    )
    handle.server.gateway = ClosingGateway  # a body that cannot be read closes its connection
    PortalRoutes(config, handle.stopping).install(app)
    return handle


def json_error(status: int, message: str,
               headers: dict[str, str] | None = None) -> bottle.HTTPResponse:
    body = json.dumps({"error": message}, ensure_ascii=False)
    return bottle.HTTPResponse(body, status, {"Content-Type": "application/json; charset=utf-8",
                                              "Cache-Control": "no-store", **(headers or {})})


class PortalRoutes:
    def __init__(self, config: Config, stopping: threading.Event) -> None:
        self.config = config
        self.stopping = stopping
        self.scheme = "https" if config.portal.tls else "http"
        self.auth = PortalAuth(config.portal.pin.get_secret_value(),
                               config.state.run / "portal_sessions.json",
                               config.portal.session_ttl_s)
        self.gate = ApplyGate(config)
        self.streams = SubscriberCap(config.portal.max_sse_clients)
        self.spool = Spool(config.state)

    def install(self, app: bottle.Bottle) -> None:
        app.default_error_handler = _error_as_json
        app.add_hook("after_request", _security_headers)
        app.install(refusing_bad_requests(log, json_error))
        app.route("/", "GET", self.page)
        app.route("/static/<name>", "GET", self.static)
        app.route("/api/login", "POST", self.login)
        app.route("/api/logout", "POST", self.logout)
        app.route("/api/update/status", "GET", self.guarded(self.status))
        app.route("/api/update/apply", "POST", self.guarded(self.apply, changes_state=True))
        app.route("/api/update/progress", "GET", self.guarded(self.progress))

    # --- the page -----------------------------------------------------------------

    def page(self) -> str:
        request = bottle.request
        query_lang = request.query.get("lang")
        lang = choose_language(query_lang, request.get_cookie(LANG_COOKIE),
                               request.get_header("Accept-Language"), self.config.portal.lang)
        if query_lang == lang:
            bottle.response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/",
                                       samesite="Strict", secure=self.scheme == "https")
        session = self.auth.session(request.get_cookie(COOKIE_NAME))
        signed_in = session is not None or self._pin_header_accepted()
        bottle.response.set_header("Cache-Control", "no-store")
        return render_page(lang=lang, site=self.config.client_id, signed_in=signed_in,
                           status=update_status(self.config) if signed_in else None,
                           csrf=session.csrf if session else None,
                           pin_set=bool(self.config.portal.pin.get_secret_value()))

    def _pin_header_accepted(self) -> bool:
        """A script may read the page with the PIN header, as it reads the API.

        A wrong PIN counts toward the lockout like any other and the sign-in page is
        served with its status (401, or 429 while locked out).
        """
        pin = bottle.request.get_header(PIN_HEADER)
        if pin is None:
            return False
        try:
            self.auth.check_pin(pin, _peer_ip())
        except AuthRefused as e:
            bottle.response.status = e.status
            return False
        return True

    def static(self, name: str) -> Any:
        response = bottle.static_file(name, root=str(STATIC_DIR))
        response.set_header("Cache-Control", "no-cache")
        return response

    # --- sign-in --------------------------------------------------------------------

    def login(self) -> dict[str, Any]:
        self._refuse_cross_origin()
        pin = _json_body().get("pin")
        if not isinstance(pin, str) or not pin:
            raise json_error(400, 'expected {"pin": "..."}')
        try:
            token, session = self.auth.login(pin, _peer_ip())
        except AuthRefused as e:
            raise json_error(e.status, str(e), e.headers) from None
        bottle.response.set_cookie(COOKIE_NAME, token,
                                   max_age=int(self.config.portal.session_ttl_s), path="/",
                                   httponly=True, samesite="Strict", secure=self.scheme == "https")
        # The body is exactly {"ok": true} (DESIGN.md); the page's own token comes with it.
        bottle.response.set_header(CSRF_HEADER, session.csrf)
        return {"ok": True}

    def logout(self) -> dict[str, Any]:
        self._refuse_cross_origin()
        self.auth.logout(bottle.request.get_cookie(COOKIE_NAME))
        bottle.response.delete_cookie(COOKIE_NAME, path="/")
        return {"ok": True}

    def guarded(self, handler: Callable[[], Any], *,
                changes_state: bool = False) -> Callable[[], Any]:
        """`handler` behind the PIN or a session (and, for changes, proof of the page's origin)."""

        def wrapper() -> Any:
            request = bottle.request
            try:
                self.auth.authorize(
                    pin=request.get_header(PIN_HEADER), token=request.get_cookie(COOKIE_NAME),
                    ip=_peer_ip(), changes_state=changes_state,
                    csrf=request.get_header(CSRF_HEADER), origin=request.get_header("Origin"),
                    host=request.get_header("Host", ""), scheme=self.scheme,
                )
            except AuthRefused as e:
                raise json_error(e.status, str(e), e.headers) from None
            bottle.response.set_header("Cache-Control", "no-store")
            return handler()

        return wrapper

    def _refuse_cross_origin(self) -> None:
        request = bottle.request
        if cross_origin(request.get_header("Origin"), request.get_header("Host", ""), self.scheme):
            raise json_error(403, "request refused: it does not come from the portal page")

    # --- the update API ---------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return update_status(self.config)

    def apply(self) -> dict[str, Any]:
        try:
            job = self.gate.submit(_json_body().get("sha256"))
        except ApplyRefused as e:
            raise json_error(409, str(e)) from None
        except ConfirmationMissing as e:
            raise json_error(400, str(e)) from None
        bottle.response.status = 202
        return {"job": job}

    def progress(self) -> ProgressStream:
        if not self.streams.try_enter():
            raise json_error(503, "too many progress streams are open; close another page",
                             {"Retry-After": "5"})
        response = bottle.response
        response.content_type = "text/event-stream; charset=utf-8"
        response.set_header("Cache-Control", "no-store")
        response.set_header("X-Accel-Buffering", "no")
        return ProgressStream(self.config.state.events, self.stopping, self.streams.leave,
                              self._describe_failure)

    def _describe_failure(self, event: dict[str, Any]) -> dict[str, Any]:
        """A `failed` event plus the step that failed and the error's class, for plain words."""
        if event.get("step") != "failed" or not event.get("job"):
            return event
        try:
            job = self.spool.load(str(event["job"]))
        except JobError:
            return event
        failed = [s for s in failed_steps(job) if s.get("phase", "main") == "main"]
        return {**event, "failed_step": failed[0].get("name") if failed else None,
                "error_type": job.get("error_type")}


def _peer_ip() -> str:
    """The TCP peer; X-Forwarded-For is ignored, or anyone could dodge the PIN lockout."""
    return str(bottle.request.environ.get("REMOTE_ADDR", ""))


def _json_body() -> dict[str, Any]:
    """The request's JSON object ({} for no body).

    Raises:
        RequestError: unreadable, too large, cut short, stalled or not an object (the
            routes' plugin answers it with its 4xx).
    """
    raw = RequestBody(bottle.request.environ).read_all(MAX_BODY_BYTES)
    data = parse_json(raw or b"{}", "a JSON object")
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object")
    return data


def _error_as_json(res: bottle.HTTPError) -> str:
    res.content_type = "application/json; charset=utf-8"
    if res.status_code >= 500:
        log.error("portal error: %s", res.body, exc_info=res.exception)
        return json.dumps({"error": "internal error in the portal; see its log"})
    return json.dumps({"error": str(res.body)}, ensure_ascii=False)


def _security_headers() -> None:
    response = bottle.response
    response.set_header("X-Content-Type-Options", "nosniff")
    response.set_header("X-Frame-Options", "DENY")
    response.set_header("Referrer-Policy", "no-referrer")
    response.set_header("Content-Security-Policy", PAGE_CSP)
