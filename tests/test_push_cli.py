"""`autotel push` as the admin runs it: a real subprocess against the real agent.

Each failure must be one line on stderr with its own exit code (DESIGN.md: 11
unreachable, 12 certificate changed, 13 auth refused, 14 transfer broken).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotel.admin.pinning import KnownAgents
from autotel.config import Config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.tls import fingerprint_pem, make_certificate
from autotel.db.migrate import migrate_site
from tests.agent_support import running_agent
from tests.foundation_support import assert_one_line_error, cli
from tests.push_support import CLIENT, Relay, archived_sensors, free_port, insert_rows, run_push_cli


@pytest.fixture
def migrated_site(site: Config) -> Config:
    migrate_site(site)
    return site


def test_push_prints_pin_and_summary_then_refuses_a_changed_certificate(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    storage = tmp_path / "data"
    insert_rows(migrated_site, 42)
    with running_agent(migrated_site) as agent:
        done = run_push_cli(storage, admin_keys[0], agent.port)
        assert done.returncode == 0, done.stderr
        assert agent.fingerprint in done.stdout and "pinned" in done.stdout
        assert f"no cursor for {CLIENT} in {storage}: this push exports every reading" in done.stdout
        assert "42 records" in done.stdout and str(storage / CLIENT) in done.stdout
        assert len(archived_sensors(storage)) == 42

        other, _ = make_certificate("someone else", ["localhost"], ["127.0.0.1"])
        known = KnownAgents(storage / "known_agents.json", storage / ".incoming")
        known.pin(
            f"127.0.0.1:{agent.port}", other.decode()
        )  # as if the site had another cert before
        changed = run_push_cli(storage, admin_keys[0], agent.port)
        assert changed.returncode == 12
        assert_one_line_error(
            changed, fingerprint_pem(other), agent.fingerprint, f"--accept-cert {agent.fingerprint}"
        )

        accepted = run_push_cli(
            storage, admin_keys[0], agent.port, "--accept-cert", agent.fingerprint
        )
        assert accepted.returncode == 0, accepted.stderr
        assert "0 records" in accepted.stdout and "archive none" in accepted.stdout
        assert "no cursor" not in accepted.stdout
    pins = json.loads((storage / "known_agents.json").read_text())
    assert pins[f"127.0.0.1:{agent.port}"]["sha256"] == agent.fingerprint


def test_another_sites_client_id_is_told_and_loses_nothing(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A --client-id that is not the site's name is said, not refused: DESIGN.md makes it
    only the admin's folder name (a site made without one is named after its host)."""
    storage = tmp_path / "data"
    insert_rows(migrated_site, 5)
    with running_agent(migrated_site) as agent:
        other = cli("push", "--host", "127.0.0.1", "--port", str(agent.port), "--client-id",
                    "plant_B", "--key", str(admin_keys[0]), "--storage", str(storage))
        assert other.returncode == 0, other.stderr
        assert "is site 'plant_A'" in other.stdout and "--client-id 'plant_B'" in other.stdout
        assert "5 records" in other.stdout
        right = run_push_cli(storage, admin_keys[0], agent.port)
        assert right.returncode == 0, right.stderr
        assert "is site" not in right.stdout
        assert "5 records" in right.stdout, "plant_A's own cursor starts from the beginning"


def test_wrong_key_exits_13(migrated_site: Config, tmp_path: Path) -> None:
    stranger, _ = generate_keypair(tmp_path / "stranger")
    with running_agent(migrated_site) as agent:
        refused = run_push_cli(tmp_path / "data", stranger, agent.port)
    assert refused.returncode == 13
    assert_one_line_error(refused, "401", "trusted_keys")


def test_broken_transfer_exits_14(
    migrated_site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    with running_agent(migrated_site) as agent, Relay(agent.port) as relay:
        assert run_push_cli(tmp_path / "data", admin_keys[0], relay.port).returncode == 0
        relay.arm(cut_after=2 * relay.downstream + 50_000)
        insert_rows(migrated_site, 20_000)
        broken = run_push_cli(tmp_path / "data", admin_keys[0], relay.port)
        assert broken.returncode == 14
        assert_one_line_error(broken, "export")
        relay.arm()
        assert run_push_cli(tmp_path / "data", admin_keys[0], relay.port).returncode == 0
    assert len(archived_sensors(tmp_path / "data")) == 20_000


def test_unreachable_exits_11(admin_keys: tuple[Path, Path], tmp_path: Path) -> None:
    port = free_port()
    result = run_push_cli(tmp_path / "data", admin_keys[0], port, "--connect-timeout", "2")
    assert result.returncode == 11
    assert_one_line_error(result, f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("content", "needle"), [(None, "not found"), ("garbage", "not a PEM RSA private key")]
)
def test_bad_key_file_exits_2(tmp_path: Path, content: str | None, needle: str) -> None:
    key = tmp_path / "private.pem"
    if content is not None:
        key.write_text(content)
    result = run_push_cli(tmp_path / "data", key, free_port())
    assert result.returncode == 2
    assert_one_line_error(result, needle)
