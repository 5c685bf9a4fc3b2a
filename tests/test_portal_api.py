"""The portal's HTTP API over real HTTP on 127.0.0.1: status, apply, PIN, cookies, CSRF."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autotel.config import Config
from autotel.spool.queue import Spool
from tests.portal_support import PIN, client, pending_package, running_portal

RIGHT = {"X-Config-Pin": PIN}


def login(http: httpx.Client) -> tuple[str, str]:
    """Sign in; returns (cookie value, CSRF token)."""
    answer = http.post("/api/login", json={"pin": PIN})
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    return answer.cookies["autotel_portal"], answer.headers["X-CSRF-Token"]


def test_status_needs_the_pin_and_reports_no_update(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        refused = http.get("/api/update/status")
        assert refused.status_code == 401 and "error" in refused.json()
        assert http.get("/api/update/status", headers={"X-Config-Pin": "0000"}).status_code == 401
        status = http.get("/api/update/status", headers=RIGHT).json()
    assert status == {"current_version": "1.0.0", "pending_update": False, "pending_version": None,
                      "notes": None, "received_at": None, "sha256": None, "apply_job": None}


def test_status_shows_the_pending_package(bare_site: Config, admin_keys: tuple[Path, Path],
                                          tmp_path: Path) -> None:
    sha256 = pending_package(bare_site, admin_keys[0], tmp_path)
    with running_portal(bare_site) as portal, client(portal) as http:
        status = http.get("/api/update/status", headers=RIGHT).json()
    assert status["pending_update"] is True and status["pending_version"] == "1.1.0"
    assert status["sha256"] == sha256 and status["notes"].startswith("Додано журнал тривог")
    assert status["received_at"].endswith("Z") and status["current_version"] == "1.0.0"


def test_apply_queues_exactly_the_confirmed_package_once(
        bare_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    spool = Spool(bare_site.state)
    with running_portal(bare_site) as portal, client(portal) as http:
        for body in ({"sha256": "a" * 64}, {"sha256": "xyz"}, {}):  # nothing pending comes first
            nothing = http.post("/api/update/apply", headers=RIGHT, json=body)
            assert nothing.status_code == 409 and "no update is pending" in nothing.json()["error"]
        sha256 = pending_package(bare_site, admin_keys[0], tmp_path)
        for other_package in ("b" * 64, "xyz"):
            other = http.post("/api/update/apply", headers=RIGHT, json={"sha256": other_package})
            assert other.status_code == 409 and "another package" in other.json()["error"]
        for bad in ({}, {"sha256": 5}):
            answer = http.post("/api/update/apply", headers=RIGHT, json=bad)
            assert answer.status_code == 400 and "sha256" in answer.json()["error"]
        assert spool.queued_names() == []
        accepted = http.post("/api/update/apply", headers=RIGHT, json={"sha256": sha256.upper()})
        assert accepted.status_code == 202
        job = spool.load(accepted.json()["job"])
        assert job["kind"] == "apply" and job["params"] == {"sha256": sha256}
        again = http.post("/api/update/apply", headers=RIGHT, json={"sha256": sha256})
        assert again.status_code == 409 and "already being applied" in again.json()["error"]
        assert http.get("/api/update/status", headers=RIGHT).json()["apply_job"] == job["id"]
    assert len(spool.queued_names()) == 1


def test_five_wrong_pins_lock_the_ip_out_even_for_the_right_pin(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        wrong = {"X-Config-Pin": "1111"}
        for _ in range(4):
            assert http.get("/api/update/status", headers=wrong).status_code == 401
        assert http.get("/api/update/status", headers=RIGHT).status_code == 200  # resets the count
        for _ in range(5):
            assert http.post("/api/login", json={"pin": "1111"}).status_code == 401
        locked = http.get("/api/update/status", headers=RIGHT)
        assert locked.status_code == 429 and "try again later" in locked.json()["error"]
        assert 290 <= int(locked.headers["Retry-After"]) <= 300
        assert http.post("/api/login", json={"pin": PIN}).status_code == 429
        spoofed = http.get("/api/update/status", headers={**RIGHT, "X-Forwarded-For": "10.1.2.3"})
        assert spoofed.status_code == 429, "X-Forwarded-For must not dodge the lockout"


def test_cookie_login_sets_a_strict_httponly_session(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        answer = http.post("/api/login", json={"pin": PIN})
        cookie = answer.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "samesite=strict" in cookie.lower() and "Path=/" in cookie
        assert f"Max-Age={bare_site.portal.session_ttl_s}" in cookie and "Secure" not in cookie
        token = answer.cookies["autotel_portal"]
        assert len(token) >= 40 and PIN not in token
        assert http.post("/api/login", json={"pin": PIN}).cookies["autotel_portal"] != token
        with client(portal) as fresh:
            fresh.cookies.set("autotel_portal", token)
            assert fresh.get("/api/update/status").status_code == 200
            fresh.cookies.set("autotel_portal", token[:-2] + "xx")
            assert fresh.get("/api/update/status").status_code == 401
        with client(portal) as leaving:
            leaving.cookies.set("autotel_portal", token)
            assert leaving.post("/api/logout").json() == {"ok": True}
        with client(portal) as after:
            after.cookies.set("autotel_portal", token)
            assert after.get("/api/update/status").status_code == 401
        assert http.post("/api/login", json={}).status_code == 400


def test_a_session_survives_a_portal_restart(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        token, _ = login(http)
    saved = (bare_site.state.run / "portal_sessions.json").read_text()
    assert token not in saved
    with running_portal(bare_site) as portal, client(portal) as http:
        http.cookies.set("autotel_portal", token)
        assert http.get("/api/update/status").status_code == 200


def test_state_changes_with_a_cookie_are_refused_from_another_site(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        _, csrf = login(http)
        body = {"sha256": "c" * 64}
        own = f"http://127.0.0.1:{portal.port}"
        evil = http.post("/api/update/apply", json=body, headers={"Origin": "http://evil.example"})
        assert evil.status_code == 403 and "Origin" in evil.json()["error"]
        forged = http.post("/api/update/apply", json=body, headers={"X-CSRF-Token": "guess"})
        assert forged.status_code == 403
        null_origin = http.post("/api/update/apply", json=body, headers={"Origin": "null"})
        assert null_origin.status_code == 403
        # Past the guard, the apply itself is refused: nothing is pending.
        with_token = http.post("/api/update/apply", json=body, headers={"X-CSRF-Token": csrf})
        assert with_token.status_code == 409
        assert http.post("/api/update/apply", json=body, headers={"Origin": own}).status_code == 409
        no_origin = http.post("/api/update/apply", json=body)  # a script with the cookie, not a page
        assert no_origin.status_code == 409
        assert http.get("/api/update/status").status_code == 200, "reads need no proof"
        cross_login = http.post("/api/login", json={"pin": PIN},
                                headers={"Origin": "http://evil.example"})
        assert cross_login.status_code == 403


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("GET", "/no/such/page", {}, 404),
    ("DELETE", "/api/update/status", {}, 405),
    ("POST", "/api/login", {"content": b"{not json"}, 400),
    ("POST", "/api/login", {"content": b"[1, 2]"}, 400),
    ("POST", "/api/login", {"json": {"pin": "1" * 5000}}, 413),
    ("POST", "/api/update/apply", {"content": b"x" * 10_000, "headers": RIGHT}, 413),
])
def test_every_error_is_json(bare_site: Config, method: str, path: str,
                             kwargs: dict[str, object], status: int) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        answer = http.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert answer.status_code == status
    assert answer.headers["Content-Type"].startswith("application/json")
    assert isinstance(json.loads(answer.text)["error"], str)


def test_a_chunked_body_over_the_limit_is_refused(bare_site: Config) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"x" * 1000

    with running_portal(bare_site) as portal, client(portal) as http:
        answer = http.post("/api/login", content=chunks())
    assert answer.status_code == 413 and "error" in answer.json()


def test_tls_portal_sets_a_secure_cookie(bare_site: Config) -> None:
    context = ssl.create_default_context(cafile=str(bare_site.state.tls / "cert.pem"))
    with running_portal(bare_site, tls=True) as portal:
        base = f"https://127.0.0.1:{portal.port}"
        with httpx.Client(base_url=base, verify=context, timeout=10) as http:
            answer = http.post("/api/login", json={"pin": PIN})
            assert answer.status_code == 200 and "Secure" in answer.headers["Set-Cookie"]
            body = {"sha256": "e" * 64}
            assert http.post("/api/update/apply", json=body,
                             headers={"Origin": base.replace("https", "http")}).status_code == 403
            ours = http.post("/api/update/apply", json=body, headers={"Origin": base})
            assert ours.status_code == 409
        try:
            plain = httpx.get(f"http://127.0.0.1:{portal.port}/api/update/status",
                              headers={"X-Config-Pin": PIN}, timeout=5).status_code
        except httpx.HTTPError:
            plain = None
        assert plain != 200, "plain HTTP must not be served when TLS is on"
