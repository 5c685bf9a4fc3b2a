"""The operator page as the server renders it, and `autotel portal` as a real process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import SecretStr

from autotel.config import Config
from tests.apply_support import receive as make_pending
from tests.portal_support import PIN, client, publish, running_portal


def test_the_page_speaks_ukrainian_unless_asked_otherwise(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        default = http.get("/")
        english = http.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
        chosen = http.get("/?lang=en", headers={"Accept-Language": "uk"})
        remembered = http.get("/", headers={"Accept-Language": "uk"})
    assert '<html lang="uk">' in default.text and "Вхід для оператора" in default.text
    assert '<html lang="en">' in english.text and "Operator sign-in" in english.text
    assert '<html lang="en">' in chosen.text and "autotel_lang=en" in chosen.headers["Set-Cookie"]
    assert '<html lang="en">' in remembered.text, "the choice is kept in a cookie"
    assert default.headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in default.headers["Content-Security-Policy"]
    assert default.headers["X-Frame-Options"] == "DENY"


def test_the_page_needs_nothing_from_the_internet(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        page = http.get("/").text
        assets = re.findall(r'(?:src|href)="([^"]+)"', page)
        assert assets and all(not re.match(r"^(https?:)?//", a) for a in assets), assets
        for asset in ("/static/portal.css", "/static/portal.js"):
            answer = http.get(asset)
            assert answer.status_code == 200 and len(answer.content) > 1000
        assert http.get("/static/../app.py").status_code == 404


def test_before_its_script_runs_the_page_can_neither_lose_a_tap_nor_leak_the_pin(
        bare_site: Config) -> None:
    """The buttons come disabled (the script enables them once it listens), and the PIN
    form posts: an Enter pressed before the script loaded never puts the PIN in a URL."""
    with running_portal(bare_site) as portal, client(portal) as http:
        login = http.get("/").text
        assert re.search(r'<form id="login-form" method="post"', login)
        assert re.search(r'id="login-button"[^>]*\bdisabled\b', login)
        http.post("/api/login", json={"pin": PIN}).raise_for_status()
        page = http.get("/").text
    for button in ("badge", "review", "logout"):  # the browser tests click them enabled
        assert re.search(rf'id="{button}"[^>]*\bdisabled\b', page), button


def test_signed_in_page_shows_version_badge_and_escaped_notes(
        bare_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    notes = "Fix </script><script>alert(1)</script> & <b>bold</b>"
    make_pending(bare_site, publish(tmp_path, admin_keys[0], "1.2.0", {"a.py": b"1"}, notes=notes))
    with running_portal(bare_site) as portal, client(portal) as http:
        assert "1.2.0" not in http.get("/").text, "nothing about updates before sign-in"
        http.post("/api/login", json={"pin": PIN})
        page = http.get("/").text
    assert 'id="current-version">1.0.0<' in page
    assert "Отримано оновлення v1.2.0" in page and "Застосувати" in page and "Пізніше" in page
    assert "<script>alert(1)" not in page and "<b>bold" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)" in page


def test_the_pin_header_reads_the_page_as_it_reads_the_api(
        bare_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    make_pending(bare_site, publish(tmp_path, admin_keys[0], "1.2.0", {"a.py": b"1"}))
    with running_portal(bare_site) as portal, client(portal) as http:
        right = http.get("/", headers={"X-Config-Pin": PIN})
        wrong = http.get("/", headers={"X-Config-Pin": "0000"})
    assert right.status_code == 200 and 'id="current-version">1.0.0<' in right.text
    assert "Отримано оновлення v1.2.0" in right.text
    assert wrong.status_code == 401 and "1.2.0" not in wrong.text


def _start_portal(config: Config, env: dict[str, str]) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "autotel", "--config", str(config.config_path), "portal"],
        stderr=subprocess.PIPE, text=True, env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"portal for plant_A at http://127\.0\.0\.1:(\d+)/", line)
        if found:
            return proc, int(found.group(1))
    raise AssertionError(f"the portal did not start (exit {proc.wait()})")


def test_autotel_portal_serves_until_sigterm(bare_site: Config) -> None:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("AUTOTEL_")},
           "AUTOTEL_PORTAL__HOST": "127.0.0.1"}
    proc, port = _start_portal(bare_site, env)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            assert http.get("/api/update/status", headers={"X-Config-Pin": PIN}).status_code == 200
            with http.stream("GET", "/api/update/progress", headers={"X-Config-Pin": PIN}) as sse:
                assert next(sse.iter_lines()).startswith("retry:")
                started = time.monotonic()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0
                assert time.monotonic() - started < 10, "an open stream delayed the stop"
        with socket.socket() as holder:  # the port is taken: a clear error, exit 2
            holder.bind(("127.0.0.1", 0))
            holder.listen()
            busy = subprocess.run(
                [sys.executable, "-m", "autotel", "--config", str(bare_site.config_path), "portal"],
                capture_output=True, text=True, timeout=60, check=False,
                env={**env, "AUTOTEL_PORTAL__PORT": str(holder.getsockname()[1])},
            )
        assert busy.returncode == 2 and "portal cannot listen on" in busy.stderr
        assert len(busy.stderr.strip().splitlines()) == 1, busy.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_site_without_a_pin_says_so_and_lets_nobody_in(bare_site: Config) -> None:
    with running_portal(bare_site, pin=SecretStr("")) as portal, client(portal) as http:
        assert "PIN-код порталу не налаштовано" in http.get("/").text
        assert http.post("/api/login", json={"pin": "anything"}).status_code == 401
        assert http.get("/api/update/status", headers={"X-Config-Pin": ""}).status_code == 401
