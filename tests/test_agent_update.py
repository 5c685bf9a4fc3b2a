"""`POST /update` through the agent, the runner's `receive` job and back to the HTTP answer."""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from autotel.timeutil import iso
from tests.agent_support import RunningAgent, logged_in, receiving_agent
from tests.package_support import craft, signature_b64

APP = {"portal/main.py": b"print('v1.2.0')\n"}
_addresses = itertools.count(10)


@pytest.fixture(scope="module")
def agent(
    admin_keys: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningAgent]:
    with receiving_agent(tmp_path_factory.mktemp("upd") / "site", admin_keys[1],
                         max_update_mb=1) as running:
        yield running


@pytest.fixture
def session(agent: RunningAgent, admin_keys: tuple[Path, Path]) -> Iterator[httpx.Client]:
    """A client from its own loopback address, already logged in."""
    with logged_in(agent, admin_keys[0], f"127.0.1.{next(_addresses)}") as client:
        yield client


def send(
    client: httpx.Client, package: Path, version: str | None = None,
    content: bytes | Iterator[bytes] | None = None,
) -> httpx.Response:
    """POST `package` to /update (or `content` instead of its bytes) with its headers."""
    manifest_version = (
        json.loads(_member(package, "manifest.json"))["version"] if version is None else version
    )
    return client.post(
        "/update",
        content=package.read_bytes() if content is None else content,
        headers={
            "Content-Type": "application/zip",
            "X-Update-Version": manifest_version,
            "X-Manifest-Signature": signature_b64(package),
        },
    )


def _member(package: Path, name: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(package) as zf:
        return zf.read(name)


def assert_answer(answer: httpx.Response, status: int, word: str, agent: RunningAgent) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()
    assert body["status"] == word
    if status != 200:
        assert body.get("error"), body
    assert list(agent.config.state.incoming.iterdir()) == [], "an upload was left behind"
    with agent.client(ip="127.0.2.1") as fresh:
        assert fresh.get("/auth/challenge").status_code in (200, 429)


def last_session(agent: RunningAgent) -> dict[str, object]:
    log = agent.config.state.sessions
    return json.loads(log.read_text().splitlines()[-1]) if log.exists() else {}


def refusals(tmp: Path, key: Path, stranger: Path) -> list[tuple[str, Path, int, str]]:
    yesterday = iso(datetime.now(UTC) - timedelta(days=1))
    garbage = tmp / "garbage.zip"
    garbage.write_bytes(b"PK\x03\x04 not a zip" * 50)
    return [
        ("untrusted key", craft(tmp / "a.zip", stranger, APP), 400, "invalid_sig"),
        (
            "tampered file",
            craft(tmp / "b.zip", key, APP, entries={"files/portal/main.py": b"evil"}),
            400,
            "invalid_sig",
        ),
        (
            "protected file",
            craft(tmp / "c.zip", key, {**APP, "license.dat": b"x"}),
            400,
            "invalid_package",
        ),
        (
            "expired",
            craft(tmp / "d.zip", key, APP, manifest={"expires": yesterday}),
            400,
            "invalid_package",
        ),
        (
            "older version",
            craft(tmp / "e.zip", key, APP, manifest={"version": "0.9.0"}),
            409,
            "same_version",
        ),
        (
            "installed version",
            craft(tmp / "f.zip", key, APP, manifest={"version": "1.0.0"}),
            409,
            "same_version",
        ),
    ]


def test_refused_packages_map_to_their_answers(
    agent: RunningAgent,
    session: httpx.Client,
    tmp_path: Path,
    admin_keys: tuple[Path, Path],
    stranger_key: Path,
) -> None:
    for case, package, status, word in refusals(tmp_path, admin_keys[0], stranger_key):
        answer = send(session, package)
        assert answer.status_code == status, (case, answer.text)
        assert_answer(answer, status, word, agent)
        assert last_session(agent)["status"] == word
    assert not (agent.config.state.pending / "meta.json").exists()


def test_garbage_body_and_bad_version_header(
    agent: RunningAgent, session: httpx.Client, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"version": "1.1.0"})
    assert_answer(
        send(session, package, content=b"\x00garbage" * 100), 400, "invalid_package", agent
    )
    for header in ["", "latest", "1.2", "1.2.0; rm -rf /", "v1.2.0"]:
        assert_answer(send(session, package, version=header), 400, "invalid_package", agent)
    # a well-formed version that is not the package's: the upload is not what was announced
    assert_answer(send(session, package, version="1" * 50 + ".0.0"), 400, "invalid_sig", agent)


def test_accept_then_identical_then_conflicting(
    agent: RunningAgent, session: httpx.Client, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"version": "1.3.0"})
    assert_answer(send(session, package), 200, "queued", agent)
    meta = json.loads((agent.config.state.pending / "meta.json").read_text())
    assert meta["version"] == "1.3.0"
    assert last_session(agent)["action"] == "update" and last_session(agent)["version"] == "1.3.0"
    assert_answer(send(session, package), 200, "queued", agent)
    other = craft(
        tmp_path / "q.zip",
        admin_keys[0],
        {"portal/main.py": b"other\n"},
        manifest={"version": "1.3.0"},
    )
    assert_answer(send(session, other), 409, "same_version", agent)


def test_chunked_upload_is_received(
    agent: RunningAgent, session: httpx.Client, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"version": "1.4.0"})
    data = package.read_bytes()

    def pieces() -> Iterator[bytes]:
        for start in range(0, len(data), 100):
            yield data[start : start + 100]

    assert_answer(send(session, package, content=pieces()), 200, "queued", agent)


def test_oversized_upload_is_413_and_leaves_nothing(
    agent: RunningAgent, session: httpx.Client, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"version": "1.5.0"})
    too_big = b"\x00" * (1024 * 1024 + 1)
    assert_answer(send(session, package, content=too_big), 413, "too_large", agent)

    def pieces() -> Iterator[bytes]:
        for _ in range(40):
            yield b"\x00" * 65536

    with agent.client(ip="127.0.1.250") as client:
        client.headers.update(session.headers)
        try:
            answer = send(client, package, content=pieces())
        except httpx.HTTPError:
            answer = None  # the agent may close before the client finished sending
        if answer is not None:
            assert_answer(answer, 413, "too_large", agent)
    assert list(agent.config.state.incoming.iterdir()) == []


def test_upload_cut_short_leaves_nothing(agent: RunningAgent, session: httpx.Client) -> None:
    token = session.headers["Authorization"]
    with (
        socket.create_connection(("127.0.0.1", agent.port)) as raw,
        agent.ssl_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(
            f"POST /update HTTP/1.1\r\nHost: x\r\nAuthorization: {token}\r\n"
            "X-Update-Version: 1.6.0\r\nContent-Length: 100000\r\n\r\n".encode()
            + b"PK" * 100
        )
    deadline = time.monotonic() + 10  # the agent notices the closed socket on its own thread
    while last_session(agent).get("version") != "1.6.0" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert last_session(agent)["status"] == "incomplete"
    assert list(agent.config.state.incoming.iterdir()) == []
    with agent.client(ip="127.0.2.2") as fresh:
        assert fresh.get("/auth/challenge").status_code == 200
    assert not (agent.config.state.pending / "update_v1.6.0.zip").exists()
