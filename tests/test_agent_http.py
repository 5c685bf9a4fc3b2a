"""The agent over real TLS: a session works, and every attack of issue 3 is refused.

One agent (and runner) serves the whole module. Each test speaks from its own
loopback address (127.0.0.x), so per-IP limits never leak between tests, and each
refusal is followed by proof that the agent still serves.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import itertools
import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from autotel.timeutil import iso, parse_iso
from tests.agent_support import (
    RunningAgent,
    fresh_database,
    login,
    make_site,
    running_agent,
    settle_archives,
    signed_login,
)
from tests.foundation_support import wait_for

_addresses = itertools.count(10)


@pytest.fixture(scope="module")
def agent(
    pg_server: str, admin_keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAgent]:
    with fresh_database(pg_server) as dsn:
        config = make_site(tmp_path_factory.mktemp("agent") / "site", dsn, admin_keys[1])
        with running_agent(config) as running:
            yield running


@pytest.fixture
def ip() -> str:
    """A loopback address no other test uses."""
    return f"127.0.0.{next(_addresses)}"


@pytest.fixture
def client(agent: RunningAgent, ip: str) -> Iterator[httpx.Client]:
    with agent.client(ip=ip) as c:
        yield c


def assert_json_error(answer: httpx.Response, status: int) -> dict[str, object]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert isinstance(body, dict) and body.get("error")
    assert "Traceback" not in answer.text and "<html" not in answer.text.lower()
    return body


def assert_still_serving(agent: RunningAgent) -> None:
    with agent.client(ip=f"127.0.0.{next(_addresses)}") as fresh:
        assert fresh.get("/auth/challenge").status_code == 200


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def insert(agent: RunningAgent, count: int) -> None:
    with psycopg.connect(agent.config.database.dsn.get_secret_value()) as conn:
        conn.execute(
            "INSERT INTO readings (time, sensor, value) SELECT now(), 'http', i "
            "FROM generate_series(1, %s) i",
            (count,),
        )


def test_session_exports_with_every_header(
    agent: RunningAgent, client: httpx.Client, ip: str, admin_keys: tuple[Path, Path]
) -> None:
    insert(agent, 50)
    token = login(agent, client, admin_keys[0])
    answer = client.get("/data/export", headers=bearer(token))
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/gzip"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert answer.headers["x-content-sha256"] == hashlib.sha256(answer.content).hexdigest()
    lines = gzip.decompress(answer.content).splitlines()
    assert int(answer.headers["x-record-count"]) == len(lines) >= 50
    parse_iso(answer.headers["x-period-end"])
    settle_archives(agent.config)
    again = client.get(
        "/data/export", params={"cursor": answer.headers["x-cursor"]}, headers=bearer(token)
    )
    assert again.status_code == 200 and again.headers["x-record-count"] == "0"
    state = agent.config.state
    # superseded archives go, all but the newest (its download may have broken)
    wait_for(lambda: len(list(state.exports.glob("*.jsonl.gz"))) == 2, 10, "the prune")
    wait_for(lambda: len(state.sessions.read_text().splitlines()) == 2, 10, "the session lines")
    sessions = [json.loads(line) for line in state.sessions.read_text().splitlines()]
    assert {"time", "peer_ip", "action", "records", "version", "status"} <= set(sessions[-1])
    assert sessions[-1]["action"] == "export" and sessions[-1]["peer_ip"] == ip
    assert state.last_sync.read_text().strip()
    assert len(list(state.exports.glob("*.jsonl.gz"))) == 2  # older ones than these are gone


def test_since_export(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    insert(agent, 5)
    token = login(agent, client, admin_keys[0])
    answer = client.get(
        "/data/export", params={"since": "2999-01-01T00:00:00Z"}, headers=bearer(token)
    )
    assert answer.status_code == 200 and answer.headers["x-record-count"] == "0"
    assert answer.headers["x-cursor"].startswith("v3.")  # it names the database (export cursor v3)


def test_exactly_once_across_sessions_while_collecting(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    dsn = agent.config.database.dsn.get_secret_value()
    stop = threading.Event()

    def collector() -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute(
                    "INSERT INTO readings (time, sensor, value) "
                    "VALUES (now() - interval '9 days', 'c', 1)"
                )

    token = login(agent, client, admin_keys[0])
    first = client.get("/data/export", headers=bearer(token))
    seen = [json.loads(line)["id"] for line in gzip.decompress(first.content).splitlines()]
    cursor = first.headers["x-cursor"]
    thread = threading.Thread(target=collector)
    thread.start()
    try:
        for _ in range(4):
            answer = client.get("/data/export", params={"cursor": cursor}, headers=bearer(token))
            seen += [
                json.loads(line)["id"] for line in gzip.decompress(answer.content).splitlines()
            ]
            cursor = answer.headers["x-cursor"]
    finally:
        stop.set()
        thread.join()
    answer = client.get("/data/export", params={"cursor": cursor}, headers=bearer(token))
    seen += [json.loads(line)["id"] for line in gzip.decompress(answer.content).splitlines()]
    with psycopg.connect(dsn) as conn:
        ids = sorted(r[0] for r in conn.execute("SELECT id FROM readings"))
    assert len(seen) == len(set(seen)) and sorted(seen) == ids


def test_wrong_key_is_refused(
    agent: RunningAgent, client: httpx.Client, stranger_key: Path
) -> None:
    answer = client.post("/auth", json=signed_login(agent, client, stranger_key))
    assert_json_error(answer, 401)
    assert_still_serving(agent)


def test_reused_nonce_is_refused(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    body = signed_login(agent, client, admin_keys[0])
    assert client.post("/auth", json=body).status_code == 200
    from autotel.crypto.challenge import auth_message
    from autotel.crypto.signing import load_private_key, sign

    fresh_stamp = iso(parse_iso(body["timestamp"]) + timedelta(seconds=1))
    resigned = sign(
        load_private_key(admin_keys[0]), auth_message(fresh_stamp, body["nonce"], agent.fingerprint)
    )
    answer = client.post(
        "/auth",
        json={**body, "timestamp": fresh_stamp, "signature": base64.b64encode(resigned).decode()},
    )
    assert "nonce" in str(assert_json_error(answer, 401)["error"])
    assert_still_serving(agent)


def test_replayed_auth_body_is_refused(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    body = signed_login(agent, client, admin_keys[0])
    assert client.post("/auth", json=body).status_code == 200
    with agent.client(ip=f"127.0.0.{next(_addresses)}") as attacker:
        assert_json_error(attacker.post("/auth", json=body), 401)
    assert_still_serving(agent)


def test_signature_for_another_fingerprint_is_refused(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    body = signed_login(agent, client, admin_keys[0], fingerprint="0" * 64)
    assert_json_error(client.post("/auth", json=body), 401)
    assert_still_serving(agent)


def test_stale_timestamp_is_refused(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    agent_time = parse_iso(client.get("/auth/challenge").json()["agent_time"])
    body = signed_login(
        agent, client, admin_keys[0], timestamp=iso(agent_time - timedelta(seconds=120))
    )
    assert "timestamp" in str(assert_json_error(client.post("/auth", json=body), 401)["error"])
    assert_still_serving(agent)


def test_fourth_attempt_in_a_minute_is_429(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    for _ in range(3):
        assert (
            client.post(
                "/auth", json={"timestamp": "x", "nonce": "y", "signature": "AA=="}
            ).status_code
            == 401
        )
    good = signed_login(agent, client, admin_keys[0])
    answer = client.post("/auth", json=good, headers={"X-Forwarded-For": "10.9.9.9"})
    assert_json_error(answer, 429)
    assert 1 <= int(answer.headers["retry-after"]) <= 60
    assert_still_serving(agent)


def test_challenge_flood_is_429(agent: RunningAgent, client: httpx.Client) -> None:
    answers = [
        client.get("/auth/challenge").status_code
        for _ in range(agent.config.agent.challenge_per_minute + 1)
    ]
    assert answers[:-1] == [200] * agent.config.agent.challenge_per_minute
    assert_json_error(client.get("/auth/challenge"), 429)
    assert_still_serving(agent)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer forged-token",
        "Basic dXNlcjpwYXNz",
        "bearer " + "A" * 43,
        "Bearer " + "x" * 5000,
    ],
)
def test_export_without_a_valid_token_is_401(
    agent: RunningAgent, client: httpx.Client, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    assert_json_error(client.get("/data/export", headers=headers), 401)
    assert_json_error(client.post("/update", headers=headers, content=b"PK\x03\x04"), 401)
    assert_still_serving(agent)


def test_token_of_a_previous_agent_is_refused(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    """Tokens live in memory only: a restarted agent (a new server) knows none of them."""
    from autotel.web.agent import build_agent

    token = login(agent, client, admin_keys[0])
    other = build_agent(agent.config, port=0).start_background()
    try:
        with httpx.Client(
            base_url=f"https://127.0.0.1:{other.port}", verify=agent.ssl_context()
        ) as c:
            assert_json_error(c.get("/data/export", headers=bearer(token)), 401)
    finally:
        other.stop()


@pytest.mark.parametrize(
    "query",
    [
        {"cursor": "garbage"},
        {"cursor": "v9.eyJ4aWQiOjF9"},
        {"since": "yesterday"},
        {"since": "2026-02-20T00:00:00Z", "cursor": "v1.eyJ4aWQiOjF9"},
        {"cursor": "v1." + "A" * 1000},
        {"cursor": ""},
        {"since": " "},
        {"cursor": ["v1.eyJ4aWQiOjF9", "v1.eyJ4aWQiOjJ9"]},
        {"since": "2026-02-20T00:00:00Zé"},
    ],
)
def test_malformed_since_or_cursor_is_400(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path], query: dict[str, str]
) -> None:
    token = login(agent, client, admin_keys[0])
    assert_json_error(client.get("/data/export", params=query, headers=bearer(token)), 400)
    assert_still_serving(agent)


def test_head_does_not_run_an_export(
    agent: RunningAgent, client: httpx.Client, admin_keys: tuple[Path, Path]
) -> None:
    token = login(agent, client, admin_keys[0])
    jobs_before = len(list(agent.config.state.job_dir("done").iterdir()))
    assert client.head("/data/export", headers=bearer(token)).status_code == 405
    assert len(list(agent.config.state.job_dir("done").iterdir())) == jobs_before


def test_client_leaving_mid_download_is_logged_and_archive_released(
    agent: RunningAgent, client: httpx.Client, ip: str, admin_keys: tuple[Path, Path]
) -> None:
    _fill_beyond_socket_buffers(agent)
    token = login(agent, client, admin_keys[0])
    sessions = _break_off_download(agent, client, token, ip)
    assert sessions[-1]["peer_ip"] == ip and sessions[-1]["status"] == "interrupted"


def test_downloads_broken_off_again_and_again_leave_one_archive_on_the_site(
    agent: RunningAgent, client: httpx.Client, ip: str, admin_keys: tuple[Path, Path]
) -> None:
    """A link that dies mid-download at every push must not fill the site's disk: each
    export is a new archive of every row since the admin's cursor. Kept: the one being
    served and the newest other broken one (its admin may resume it)."""
    _fill_beyond_socket_buffers(agent)
    token = login(agent, client, admin_keys[0])
    for attempt in range(1, 5):
        settle_archives(agent.config)
        sessions = _break_off_download(agent, client, token, ip)
        assert sessions[-1]["status"] == "interrupted", f"download {attempt} was not broken off"
        kept = sorted(agent.config.state.exports.glob("*.jsonl.gz"))
        assert len(kept) <= 2, f"after {attempt} broken downloads: {[p.name for p in kept]}"


def _fill_beyond_socket_buffers(agent: RunningAgent) -> None:
    """Rows enough for an archive larger than the socket buffers on both ends (random text
    barely compresses), so the agent is still writing when the client goes away."""
    with psycopg.connect(agent.config.database.dsn.get_secret_value()) as conn:
        count = conn.execute("SELECT count(*) FROM readings").fetchone()
        if count is not None and count[0] >= 300000:
            return
        conn.execute(
            "INSERT INTO readings (time, sensor, value) SELECT now(), "
            "md5(random()::text) || md5(random()::text), random() FROM generate_series(1, 300000)"
        )


def _break_off_download(
    agent: RunningAgent, client: httpx.Client, token: str, ip: str
) -> list[dict[str, Any]]:
    """Start a full export, read one piece, hang up; the session lines once the agent noticed."""
    sessions = agent.config.state.sessions
    before = len(sessions.read_text().splitlines()) if sessions.exists() else 0
    with client.stream("GET", "/data/export", headers=bearer(token)) as answer:
        assert answer.status_code == 200
        next(answer.iter_raw(1024))
    deadline = time.monotonic() + 10  # the agent notices the closed connection at its next write
    while time.monotonic() < deadline:
        lines = sessions.read_text().splitlines() if sessions.exists() else []
        if len(lines) > before and json.loads(lines[-1])["peer_ip"] == ip:
            break
        time.sleep(0.05)
    return [json.loads(line) for line in sessions.read_text().splitlines()]


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"garbage", 400),
        (b"\xff\xfe\x00binary", 400),
        (b"[1, 2]", 400),
        (b"{}", 400),
        (b'{"timestamp": 1, "nonce": [], "signature": null}', 400),
        (b"x" * 9000, 413),
    ],
)
def test_garbage_auth_bodies(
    agent: RunningAgent, client: httpx.Client, content: bytes, status: int
) -> None:
    assert_json_error(client.post("/auth", content=content), status)
    assert_still_serving(agent)


def test_oversized_chunked_auth_body_is_413(agent: RunningAgent, client: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"{" * 1024

    assert_json_error(client.post("/auth", content=chunks()), 413)
    assert_still_serving(agent)


def test_huge_declared_body_is_refused_before_reading(agent: RunningAgent) -> None:
    """A raw request claiming 10 GB gets a JSON 413 at once, without sending the body."""
    import socket

    with (
        socket.create_connection(
            ("127.0.0.1", agent.port), source_address=(f"127.0.0.{next(_addresses)}", 0)
        ) as raw,
        agent.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /update HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n")
        reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413") and b"application/json" in reply
    assert_still_serving(agent)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("DELETE", "/auth", 405),
        ("PUT", "/data/export", 405),
        ("GET", "/update", 405),
        ("GET", "/../../etc/passwd", 404),
    ],
)
def test_unknown_routes_answer_json(
    agent: RunningAgent, client: httpx.Client, method: str, path: str, status: int
) -> None:
    assert_json_error(client.request(method, path), status)


def test_malformed_content_length_is_400(agent: RunningAgent) -> None:
    import socket

    with (
        socket.create_connection(("127.0.0.1", agent.port)) as raw,
        agent.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n")
        reply = tls.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400")
    assert_still_serving(agent)
