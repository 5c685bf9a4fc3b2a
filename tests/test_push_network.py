"""`autotel push` over real poor links: the kernel's TCP between two network namespaces.

The site's agent and runner run as `autotel agent` / `autotel runner`, the admin's
push as `autotel push` in its own namespace (`tests.network_support`). The link is
slowed and made lossy with `tc tbf`, or cut silently with `ip link set down`. The
test relay on 127.0.0.1 (`tests.push_support.Relay`) covers clean cuts and stalls
inside one host; here the kernel retransmits, buffers and times out for real.

Timeouts are short on both sides so each case takes seconds, yet longer than any
pause a slow but working link makes: a false timeout would fail the slow-link case.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from autotel.config import Config
from autotel.package.pending import read_pending
from autotel.package.zipread import file_sha256
from autotel.spool.queue import Spool
from tests.foundation_support import assert_one_line_error, running, wait_for
from tests.network_support import (
    Link,
    NetAgent,
    cut_while,
    finish_push,
    kernel_link,
    push_command,
    run_push,
    site_services,
    start_push,
)
from tests.portal_support import publish
from tests.push_support import CLIENT, archived_sensors, insert_rows

AGENT_TIMEOUT_S = 2  # the agent's socket timeout (whole seconds)
STALL_S = 2  # the admin's --stall-timeout
MARGIN_S = 3  # process start and exit, on a machine busy with other tests
ADMIN = ("--stall-timeout", str(STALL_S), "--connect-timeout", "10")
QUEUE_BYTES = 12_000  # eight full packets: a burst beyond that is dropped


@pytest.fixture
def link() -> Iterator[Link]:
    with kernel_link() as made:
        yield made


def sensors(count: int, start: int = 0) -> list[str]:
    return [f"s{i}" for i in range(start, start + count)]


def package_of_1mb(tmp_path: Path, key: Path) -> Path:
    """A signed update whose payload does not compress: about 1 MB on the wire."""
    return publish(tmp_path, key, "1.1.0", {"app/firmware.bin": os.urandom(1 << 20)})


def test_slow_lossy_link_delivers_readings_and_update(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, link: Link
) -> None:
    """A site on a weak cellular uplink: 384 kbit/s to the admin, 4 Mbit/s back, both
    dropping packets. Its archive goes in one 256 KiB write that takes seconds here."""
    insert_rows(migrated_site, 30_000)
    package = package_of_1mb(tmp_path, admin_keys[0])
    storage = tmp_path / "data"
    link.shape(384, QUEUE_BYTES, up_kbit=4000)
    with site_services(migrated_site, link, socket_timeout_s=AGENT_TIMEOUT_S) as agent:
        done = run_push(push_command(link, storage, admin_keys[0], *ADMIN,
                                     "--update", str(package)))
    assert done.returncode == 0, done.stderr
    assert "watchfiles" not in agent.log()  # waiting for the runner is no news for the log
    assert "first contact" in done.stdout and "pinned" in done.stdout  # over the same link
    assert "30000 records" in done.stdout and "update v1.1.0: queued" in done.stdout
    assert sorted(archived_sensors(storage)) == sorted(sensors(30_000))
    pending = read_pending(migrated_site.state)
    assert pending is not None and pending.version == "1.1.0"
    assert link.drops() > 0  # the link did lose packets, and TCP made up for them


def test_slow_uplink_delivers_an_update_within_a_short_stall_timeout(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, link: Link
) -> None:
    """The admin's own uplink is slow but flowing: every write of the package must
    finish within --stall-timeout (here 1 s; 384 kbit/s takes 1.4 s for 64 KiB)."""
    package = publish(tmp_path, admin_keys[0], "1.1.0", {"app/firmware.bin": os.urandom(200_000)})
    link.shape(4000, QUEUE_BYTES, up_kbit=384)
    with site_services(migrated_site, link, socket_timeout_s=AGENT_TIMEOUT_S):
        done = run_push(push_command(link, tmp_path / "data", admin_keys[0], "--stall-timeout",
                                     "1", "--update", str(package)))
    assert done.returncode == 0, done.stderr
    assert "update v1.1.0: queued" in done.stdout
    pending = read_pending(migrated_site.state)
    assert pending is not None and pending.version == "1.1.0"


def test_link_lost_mid_download(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, link: Link
) -> None:
    storage, key = tmp_path / "data", admin_keys[0]
    insert_rows(migrated_site, 100)
    with site_services(migrated_site, link, socket_timeout_s=AGENT_TIMEOUT_S,
                       auth_per_minute=20) as agent:
        assert run_push(push_command(link, storage, key, *ADMIN)).returncode == 0
        cursor = (storage / CLIENT / "cursor.json").read_text()
        insert_rows(migrated_site, 120_000, start=100)  # about 1 MB of archive
        link.shape(4000, QUEUE_BYTES)
        interrupt_mid_download(link, push_command(link, storage, key, *ADMIN))

        failed, seconds = cut_while(link, push_command(link, storage, key, *ADMIN),
                                    lambda: link.delivered()[0] > 100_000,
                                    STALL_S + MARGIN_S)
        assert failed.returncode == 14, failed.stderr
        assert "resuming the download the link cut last time" in failed.stdout  # the Ctrl+C's
        assert_one_line_error(failed, "export stalled")
        assert seconds < STALL_S + MARGIN_S
        assert (storage / CLIENT / "cursor.json").read_text() == cursor
        kept = sorted(p.name for p in (storage / ".incoming").iterdir())
        assert kept == [f"{CLIENT}~resume.json", f"{CLIENT}~resume.part"]  # to resume
        assert sorted(archived_sensors(storage)) == sorted(sensors(100))

        assert_agent_let_go(agent, link)
        lost = [line for line in agent.log().splitlines() if "WARNING" in line]
        assert len(lost) == 2, agent.log()
        assert f"lost {link.admin_ip}:" in lost[0] and "closed the connection" in lost[0]
        assert f"lost {link.admin_ip}:" in lost[1] and f"took nothing for {AGENT_TIMEOUT_S} s" in lost[1]
        interrupted = agent.sessions()[-1]
        assert interrupted.pop("resumed_from") > 50_000  # what arrived before the Ctrl+C
        assert interrupted | {"time": "-"} == {
            "time": "-", "peer_ip": link.admin_ip, "action": "export", "records": 120_000,
            "version": None, "status": "interrupted"}
        other = run_push(push_command(link, tmp_path / "other", key, *ADMIN, from_site=True))
        assert other.returncode == 0, other.stderr  # another admin, while the link is down
        assert "120100 records" in other.stdout

        link.restore()
        again = run_push(push_command(link, storage, key, *ADMIN))
    assert again.returncode == 0, again.stderr
    assert "120000 records" in again.stdout
    assert sorted(archived_sensors(storage)) == sorted(sensors(120_100))


def test_link_lost_mid_upload(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, link: Link
) -> None:
    storage, incoming = tmp_path / "data", migrated_site.state.incoming
    package = package_of_1mb(tmp_path, admin_keys[0])
    push = push_command(link, storage, admin_keys[0], *ADMIN, "--update", str(package))
    insert_rows(migrated_site, 100)
    link.shape(4000, QUEUE_BYTES)
    with site_services(migrated_site, link, socket_timeout_s=AGENT_TIMEOUT_S,
                       auth_per_minute=20) as agent:
        failed, seconds = cut_while(link, push, lambda: link.delivered()[1] > 100_000,
                                    STALL_S + MARGIN_S)
        assert failed.returncode == 14, failed.stderr
        assert_one_line_error(failed, "update stalled")
        assert seconds < STALL_S + MARGIN_S

        wait_for(lambda: [s for s in agent.sessions() if s["action"] == "update"],
                 AGENT_TIMEOUT_S + MARGIN_S, "the agent to give up the upload")
        assert agent.sessions()[-1]["status"] == "incomplete"
        assert_agent_let_go(agent, link)
        assert f"refused the update upload from {link.admin_ip}" in agent.log()
        kept = list(incoming.iterdir())  # what arrived, kept to be resumed
        assert [p.name for p in kept] == [f"resume-{file_sha256(package)}.part"]
        assert kept[0].stat().st_size > 50_000
        assert read_pending(migrated_site.state) is None
        assert "receive" not in {job["kind"] for job in Spool(migrated_site.state).all_jobs()}

        link.restore()
        again = run_push(push)
    assert again.returncode == 0, again.stderr
    assert "update v1.1.0: queued (resumed: " in again.stdout
    pending = read_pending(migrated_site.state)
    assert pending is not None and pending.version == "1.1.0"
    assert pending.path.read_bytes() == package.read_bytes()
    assert sorted(archived_sensors(storage)) == sorted(sensors(100))


def interrupt_mid_download(link: Link, push: list[str]) -> None:
    """An admin who presses Ctrl+C while the archive arrives: its kernel resets the
    connection under the agent's writes (in TLS, `socket.error 8` for cheroot)."""
    proc = start_push(push)
    wait_for(lambda: link.delivered()[0] > 100_000, 30, "the download")
    proc.send_signal(signal.SIGINT)
    assert finish_push(proc, 10).returncode != 0


def assert_agent_let_go(agent: NetAgent, link: Link) -> None:
    """Within its own timeout the agent holds no connection with the vanished admin,
    and has logged no traceback for a network that failed."""
    wait_for(lambda: not agent.connections_with(link.admin_ip), AGENT_TIMEOUT_S + MARGIN_S,
             "the agent to close the dead connection")
    assert "Traceback" not in agent.console(), agent.console()


def test_admin_waits_for_a_busy_agent_but_not_for_a_dead_link(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, link: Link
) -> None:
    """While the agent prepares the answer nothing flows, for minutes on a slow site PC;
    here its runner is not started yet, so the export waits in the queue. Neither side
    may wait for the job to notice the other is gone: keepalive probes tell both."""
    storage = tmp_path / "data"
    push = push_command(link, storage, admin_keys[0], *ADMIN)
    queued = Spool(migrated_site.state).queued_names
    insert_rows(migrated_site, 1000)
    with site_services(migrated_site, link, runner=False, socket_timeout_s=AGENT_TIMEOUT_S,
                       auth_per_minute=20) as agent:
        failed, seconds = cut_while(link, push, lambda: bool(queued()), STALL_S + MARGIN_S)
        assert failed.returncode == 14, failed.stderr
        assert_one_line_error(failed, "export broken", "the link to it failed")
        assert seconds < STALL_S + MARGIN_S
        assert_agent_let_go(agent, link)  # before: held until export_timeout_s (1 h)

        link.restore()
        waiting = start_push(push)
        wait_for(lambda: len(queued()) == 2, 30, "the second export to be queued")
        time.sleep(STALL_S + 1)  # silent longer than --stall-timeout, on a live link
        with running(migrated_site):
            done = finish_push(waiting, 30)
    assert done.returncode == 0, done.stderr
    assert "1000 records" in done.stdout
    assert sorted(archived_sensors(storage)) == sorted(sensors(1000))
