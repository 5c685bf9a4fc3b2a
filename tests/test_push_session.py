"""`autotel push` against the real agent over real TLS on 127.0.0.1.

The network faults come from a real TCP relay (`tests.push_support.Relay`) that cuts
or stalls the stream; nothing of the product is mocked.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from autotel.admin.pinning import PinAction
from autotel.admin.push import push
from autotel.admin.session import Timeouts
from autotel.admin.storage import ClientStorage
from autotel.config import Config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.tls import write_certificate
from autotel.db.migrate import migrate_site
from autotel.errors import (
    AuthRefusedError,
    CertificateChangedError,
    ConfigError,
    TransferError,
    UnreachableError,
)
from tests.agent_support import running_agent
from tests.push_support import (
    CLIENT,
    Relay,
    archived_sensors,
    busy,
    free_port,
    insert_rows,
    push_request,
)


def test_first_contact_pins_and_fetches_everything(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    insert_rows(busy_site, 300)
    notices: list[str] = []
    with running_agent(busy_site) as agent:
        result = push(push_request(tmp_path, admin_keys, agent.port), notices.append)
        known = json.loads((tmp_path / "data" / "known_agents.json").read_text())
        assert known[f"127.0.0.1:{agent.port}"]["sha256"] == agent.fingerprint
        assert result.pin is PinAction.FIRST_CONTACT and result.fingerprint == agent.fingerprint
        assert agent.fingerprint in notices[0]
        assert result.export.records == 300 and result.export.archive is not None

        again = push(push_request(tmp_path, admin_keys, agent.port), notices.append)
        assert again.pin is PinAction.TRUSTED and again.export.records == 0
        assert again.export.archive is None and len(notices) == 2  # nothing new the second time
        assert "this push exports every reading" in notices[1]
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(f"s{i}" for i in range(300))
    assert sorted(p.name for p in (tmp_path / "data" / CLIENT).iterdir()) == sorted(
        [result.export.archive.name, "cursor.json"]
    )


def test_changed_certificate_is_refused_until_accepted(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    """The site makes a new certificate; the admin reaches it at the same address."""
    insert_rows(busy_site, 10)
    with Relay(target_port=0) as relay:
        with running_agent(busy_site) as agent:
            relay.target_port = agent.port
            old = push(push_request(tmp_path, admin_keys, relay.port)).fingerprint
        new = write_certificate(busy_site.state.tls, "plant_A")
        insert_rows(busy_site, 5, start=10)
        with running_agent(busy_site) as agent:
            relay.target_port = agent.port
            with pytest.raises(CertificateChangedError) as caught:
                push(push_request(tmp_path, admin_keys, relay.port))
            assert old in str(caught.value) and f"--accept-cert {new}" in str(caught.value)
            with pytest.raises(CertificateChangedError):  # accepting another one changes nothing
                push(push_request(tmp_path, admin_keys, relay.port, accept_cert="0" * 64))
            assert len(archived_sensors(tmp_path / "data")) == 10

            accepted = push(push_request(tmp_path, admin_keys, relay.port, accept_cert=new.upper()))
            assert accepted.pin is PinAction.REPINNED and accepted.export.records == 5
            assert push(push_request(tmp_path, admin_keys, relay.port)).pin is PinAction.TRUSTED


def cursor_of(tmp_path: Path) -> str | None:
    return ClientStorage(tmp_path / "data", CLIENT).read_cursor()


@pytest.mark.parametrize("fault", ["cut", "stall"])
def test_broken_transfer_keeps_cursor_and_rerun_delivers(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path, fault: str
) -> None:
    busy_site = busy(site)
    timeouts = Timeouts(connect_s=5, stall_s=1.0, wait_s=30)
    with running_agent(busy_site) as agent, Relay(agent.port) as relay:
        push(
            push_request(tmp_path, admin_keys, relay.port, timeouts=timeouts)
        )  # empty: pins, sets cursor
        session_bytes = relay.downstream  # a whole session around an empty archive
        cursor = cursor_of(tmp_path)
        insert_rows(busy_site, 20_000)
        limit = 2 * session_bytes + 100_000
        relay.arm(cut_after=limit) if fault == "cut" else relay.arm(stall_after=limit)
        with pytest.raises(TransferError, match="stalled" if fault == "stall" else "export"):
            push(push_request(tmp_path, admin_keys, relay.port, timeouts=timeouts))
        assert relay.broke.is_set()
        assert [p.name for p in (tmp_path / "data" / CLIENT).iterdir()] == ["cursor.json"]
        kept = sorted(p.name for p in (tmp_path / "data" / ".incoming").iterdir())
        assert kept == [f"{CLIENT}~resume.json", f"{CLIENT}~resume.part"]  # to resume
        assert cursor_of(tmp_path) == cursor

        relay.arm()
        delivered = push(push_request(tmp_path, admin_keys, relay.port, timeouts=timeouts))
    assert delivered.export.records == 20_000
    assert delivered.export.size > limit  # so the fault did hit the archive itself
    assert sorted(archived_sensors(tmp_path / "data")) == sorted(f"s{i}" for i in range(20_000))


def test_wrong_key_is_refused_then_rate_limited(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    migrate_site(site)
    stranger = generate_keypair(tmp_path / "stranger")
    with running_agent(site) as agent:
        for _ in range(site.agent.auth_per_minute):
            with pytest.raises(AuthRefusedError, match="401 .*trusted_keys"):
                push(push_request(tmp_path, stranger, agent.port))
        with pytest.raises(AuthRefusedError, match=r"retry after \d+ s"):
            push(push_request(tmp_path, admin_keys, agent.port))
    assert cursor_of(tmp_path) is None
    assert list((tmp_path / "data" / CLIENT).iterdir()) == []


def test_unreachable_agent(admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    with pytest.raises(UnreachableError, match=f"127.0.0.1:{(port := free_port())}"):
        push(push_request(tmp_path, admin_keys, port, timeouts=Timeouts(connect_s=2)))


def test_bad_key_file_fails_before_connecting(tmp_path: Path) -> None:
    (tmp_path / "private.pem").write_text("not a key")
    with pytest.raises(ConfigError, match="private.pem"):
        push(push_request(tmp_path, (tmp_path / "private.pem", tmp_path), free_port()))
    assert not (tmp_path / "data").exists()


def test_agent_that_never_answers_times_out(admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    """A TCP listener that never speaks TLS: the connect timeout ends the push."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(UnreachableError, match="timed out"):
            push(push_request(tmp_path, admin_keys, port, timeouts=Timeouts(connect_s=0.5)))
    assert time.monotonic() - started < 5
