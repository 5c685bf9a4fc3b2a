"""An update upload the link cut goes on where it stopped (`autotel.web.agent.upload_resume`).

The real agent and runner over real TLS on 127.0.0.1; a cut upload is a real request
whose body generator fails midway, so httpx drops the connection under the agent.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from autotel.package.pending import read_pending
from autotel.web.agent import sweep_stale_uploads, upload_resume
from autotel.web.bodies import RequestBody
from tests.agent_support import RunningAgent, logged_in, receiving_agent
from tests.package_support import craft, signature_b64

_addresses = itertools.count(10)


@pytest.fixture
def agent(admin_keys: tuple[Path, Path], tmp_path: Path) -> Iterator[RunningAgent]:
    with receiving_agent(tmp_path / "site", admin_keys[1], max_update_mb=4) as running:
        yield running


@pytest.fixture
def session(agent: RunningAgent, admin_keys: tuple[Path, Path]) -> Iterator[httpx.Client]:
    with logged_in(agent, admin_keys[0], f"127.0.1.{next(_addresses)}") as client:
        yield client


@pytest.fixture
def package(tmp_path: Path, admin_keys: tuple[Path, Path]) -> Path:
    """A signed v1.2.0 of about 1 MB that does not compress."""
    return craft(tmp_path / "update_v1.2.0.zip", admin_keys[0],
                 {"app/firmware.bin": os.urandom(1 << 20)})


def sha(package: Path) -> str:
    return hashlib.sha256(package.read_bytes()).hexdigest()


def send(client: httpx.Client, package: Path, offset: int = 0, *, cut_at: int | None = None,
         **headers: str) -> httpx.Response:
    """POST the package from byte `offset`, named for resuming; `cut_at`: the link breaks
    after that many bytes of the body (httpx drops the connection)."""
    data = package.read_bytes()

    def body() -> Iterator[bytes]:
        rest = data[offset:]
        for start in range(0, len(rest), 16_384):
            if cut_at is not None and start >= cut_at:
                raise ConnectionResetError("the link broke")
            yield rest[start:start + 16_384]

    return client.post("/update", content=body(), headers={
        "Content-Type": "application/zip", "X-Update-Version": "1.2.0",
        "X-Manifest-Signature": signature_b64(package), "Content-Length": str(len(data) - offset),
        "X-Upload-SHA256": sha(package), "X-Upload-Length": str(len(data)),
        "X-Upload-Offset": str(offset), **headers})


def held(client: httpx.Client, package: Path) -> int:
    answer = client.get("/update/upload", params={"sha256": sha(package)})
    assert answer.status_code == 200, answer.text
    return int(answer.json()["offset"])


def cut(client: httpx.Client, package: Path, at: int) -> int:
    with pytest.raises(ConnectionResetError):  # httpx drops the connection and re-raises
        send(client, package, cut_at=at)
    return wait_until_held(client, package)


def wait_until_held(client: httpx.Client, package: Path) -> int:
    """What the agent holds once it noticed the dropped connection (at once, or soon)."""
    deadline = time.monotonic() + 10
    while (found := held(client, package)) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_a_cut_upload_goes_on_where_it_stopped(
    agent: RunningAgent, session: httpx.Client, package: Path
) -> None:
    assert held(session, package) == 0
    kept = cut(session, package, 400_000)
    assert 100_000 < kept <= 400_000 + 16_384  # what was sent before the link broke
    answer = send(session, package, kept)
    assert answer.status_code == 200 and answer.json() == {"status": "queued"}, answer.text
    pending = read_pending(agent.config.state)
    assert pending is not None and pending.path.read_bytes() == package.read_bytes()
    assert held(session, package) == 0 and list(agent.config.state.incoming.iterdir()) == []


def test_a_resume_from_bytes_the_site_does_not_hold_is_refused_with_what_it_holds(
    session: httpx.Client, package: Path
) -> None:
    kept = cut(session, package, 200_000)
    answer = send(session, package, kept + 50_000)
    assert answer.status_code == 409
    assert answer.json()["status"] == "resume_failed" and answer.json()["offset"] == kept
    assert send(session, package, kept).json() == {"status": "queued"}


def test_kept_bytes_damaged_on_the_site_make_no_package(
    agent: RunningAgent, session: httpx.Client, package: Path
) -> None:
    kept = cut(session, package, 200_000)
    part = agent.config.state.incoming / f"resume-{sha(package)}.part"
    damaged = bytearray(part.read_bytes())
    damaged[kept // 2] ^= 0xFF  # a bad disk block
    part.write_bytes(bytes(damaged))
    answer = send(session, package, kept)
    assert answer.status_code == 400 and answer.json()["status"] == "invalid_package"
    assert "arrived damaged" in answer.json()["error"]
    assert read_pending(agent.config.state) is None and not part.exists()
    assert send(session, package).json() == {"status": "queued"}  # sent whole again


def test_one_kept_upload_at_a_time(
    agent: RunningAgent, session: httpx.Client, package: Path, tmp_path: Path,
    admin_keys: tuple[Path, Path]
) -> None:
    cut(session, package, 200_000)
    other = craft(tmp_path / "other.zip", admin_keys[0], {"app/other.bin": os.urandom(1 << 20)})
    cut(session, other, 200_000)
    assert [p.name for p in agent.config.state.incoming.iterdir()] == [f"resume-{sha(other)}.part"]
    assert held(session, package) == 0


def test_kept_uploads_a_week_old_go_when_the_agent_starts(
    agent: RunningAgent, session: httpx.Client, package: Path
) -> None:
    cut(session, package, 200_000)
    part = agent.config.state.incoming / f"resume-{sha(package)}.part"
    assert sweep_stale_uploads(agent.config) == []  # fresh: kept
    week_ago = time.time() - 7 * 86400 - 60
    os.utime(part, (week_ago, week_ago))
    assert sweep_stale_uploads(agent.config) == [part.name]


@pytest.mark.parametrize(("headers", "status"), [
    ({"X-Upload-SHA256": "abc"}, 400),
    ({"X-Upload-Length": "many"}, 400),
    ({"X-Upload-Offset": "-1"}, 400),
    ({"X-Upload-Offset": "99999999"}, 400),
    ({"X-Upload-Length": str(50 << 20)}, 413),
])
def test_malformed_resume_headers_are_refused(
    session: httpx.Client, package: Path, headers: dict[str, str], status: int
) -> None:
    answer = session.post("/update", content=package.read_bytes(), headers={
        "X-Update-Version": "1.2.0", "X-Manifest-Signature": signature_b64(package),
        "X-Upload-SHA256": sha(package), "X-Upload-Length": str(package.stat().st_size),
        **headers})
    assert answer.status_code == status, answer.text
    assert session.get("/update/upload", params={"sha256": "../x"}).status_code == 400


def test_asking_what_is_held_needs_the_session_token(
    agent: RunningAgent, package: Path
) -> None:
    with agent.client() as client:
        assert client.get("/update/upload", params={"sha256": sha(package)}).status_code == 401


class FullDisk:
    """A fake disk that fills up once `room` bytes of the kept upload were written:
    `write_body` for `upload_resume`, raising ENOSPC as the OS would."""

    def __init__(self, room: int) -> None:
        self.room = room

    def __call__(self, body: RequestBody, limit: int, out: IO[bytes],
                 piece_bytes: int = 1 << 20) -> None:
        written = 0
        while piece := body.read(min(piece_bytes, limit - written)):
            if written + len(piece) > self.room:
                raise OSError(errno.ENOSPC, "No space left on device")
            out.write(piece)
            written += len(piece)


def test_a_disk_that_fills_during_a_resumed_upload_gets_its_room_back(
    agent: RunningAgent, session: httpx.Client, package: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = cut(session, package, 400_000)
    monkeypatch.setattr(upload_resume, "write_body", FullDisk(room=200_000))
    answer = send(session, package, kept)
    assert answer.status_code == 507 and answer.json()["status"] == "disk_full", answer.text
    # the collector writes its readings to this disk: what the upload held must not stay
    assert list(agent.config.state.incoming.iterdir()) == []
    monkeypatch.undo()
    assert held(session, package) == 0
    assert send(session, package).json() == {"status": "queued"}  # room again: sent whole
