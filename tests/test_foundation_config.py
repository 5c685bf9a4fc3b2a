"""autotel.yaml: the shipped file, env overrides, and errors a plant admin can act on."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autotel.config import load_config
from autotel.errors import ConfigError
from tests.foundation_support import assert_one_line_error, cli

SHIPPED = Path(__file__).resolve().parents[1] / "autotel.yaml"


def test_the_shipped_autotel_yaml_is_valid_and_has_the_contract_defaults(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("AUTOTEL_")]:
        monkeypatch.delenv(name)
    config = load_config(SHIPPED)
    assert (config.install_dir, config.state_dir, config.product) == (Path("."), Path("state"), "autotel")
    assert (config.agent.port, config.agent.session_ttl_s, config.agent.auth_per_minute,
            config.agent.challenge_per_minute, config.agent.max_update_mb) == (9876, 300, 3, 10, 512)
    assert config.portal.port == 8000 and config.database.dsn.get_secret_value() == ""
    assert config.trusted_keys == []
    assert {"license.dat", "config.txt", "credentials.env", "autotel.yaml", "keys/**",
            "state/**"} <= set(config.protected)
    assert config.state.root == SHIPPED.parent / "state"


def test_an_environment_variable_overrides_one_key_and_keeps_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "autotel.yaml"
    path.write_text("client_id: plant_B\nagent:\n  port: 9000\n  session_ttl_s: 60\n")
    monkeypatch.setenv("AUTOTEL_AGENT__PORT", "9877")
    config = load_config(path)
    assert (config.client_id, config.agent.port, config.agent.session_ttl_s) == ("plant_B", 9877, 60)


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "site" / "autotel.yaml"
    path.parent.mkdir()
    path.write_text("state_dir: data/state\ntrusted_keys: [keys/a.pem]\n")
    config = load_config(path)
    assert config.state.root == (tmp_path / "site" / "data" / "state").resolve()
    assert config.trusted_key_paths == [(tmp_path / "site" / "keys" / "a.pem").resolve()]


BAD = """\
client_id: NO
agnet: {}
agent:
  port: 70000
  session_ttl_s: soon
portal:
  pin: [1, 2]
"""


def test_a_bad_file_gives_one_line_per_problem_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "autotel.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    header, *problems = str(caught.value).splitlines()
    assert header == f"{path}: 5 configuration error(s):"
    by_key = {line.split(":")[0].strip(" -"): line for line in problems}
    assert set(by_key) == {"client_id", "agnet", "agent.port", "agent.session_ttl_s", "portal.pin"}
    assert "valid string (got False, from autotel.yaml)" in by_key["client_id"]
    assert "less than or equal to 65535 (got 70000" in by_key["agent.port"]
    assert "unknown key; expected one of: agent, client_id," in by_key["agnet"]
    assert "got 'soon'" in by_key["agent.session_ttl_s"]
    assert "got a secret value" in by_key["portal.pin"] and "[1, 2]" not in by_key["portal.pin"]


def test_a_bad_environment_variable_is_named_as_the_source(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "autotel.yaml"
    path.write_text("client_id: a\n")
    monkeypatch.setenv("AUTOTEL_RUNNER__RESCAN_MS", "1")
    with pytest.raises(ConfigError, match=r"runner.rescan_ms: .* \(got '1', from AUTOTEL_RUNNER__RESCAN_MS\)"):
        load_config(path)


def test_the_cli_reports_a_bad_file_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "autotel.yaml"
    path.write_text(BAD)
    result = cli("jobs", "ls", config=path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == f"autotel: error: {path}: 5 configuration error(s):"
    assert len(lines) == 6 and all(line.startswith("  - ") for line in lines[1:])


def test_one_bad_key_is_one_line_on_stderr(tmp_path: Path) -> None:
    """DESIGN.md: an invalid config is a user mistake, reported in one line."""
    path = tmp_path / "autotel.yaml"
    path.write_text("client_id: a\n")
    result = cli("jobs", "ls", config=path, env={"AUTOTEL_AGENT__PORT": "abc"})
    assert result.returncode == 2
    assert_one_line_error(result, f"{path}: agent.port: ", "(got 'abc', from AUTOTEL_AGENT__PORT)")


@pytest.mark.parametrize(("content", "message"), [
    (None, "configuration file not found; create a site with `autotel init DIR`"),
    ("agent:\n  port: [\n", "not valid YAML: line 3, column 1: expected the node content"),
    ("agent: {port: 1\n", "not valid YAML: line 2, column 1"),
    ("- a\n- b\n", "expected a mapping of keys, found list"),
])
def test_a_missing_or_unparsable_file_gives_one_clear_line(
        tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "autotel.yaml"
    if content is not None:
        path.write_text(content)
    assert_one_line_error(cli("jobs", "ls", config=path), str(path), message)


def test_a_folder_as_config_names_its_autotel_yaml(tmp_path: Path) -> None:
    """`--config SITE_DIR` (the folder `autotel init` made) is a natural slip."""
    assert_one_line_error(cli("jobs", "ls", config=tmp_path), "a folder, not a configuration file",
                          f"--config {tmp_path / 'autotel.yaml'}")


def test_autotel_config_env_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text("client_id: [\n")
    result = cli("jobs", "ls", env={"AUTOTEL_CONFIG": str(path)}, cwd=tmp_path)
    assert_one_line_error(result, f"{path}: not valid YAML")


@pytest.mark.parametrize("key", ["AUTOTEL_AGENT__SOCKET_TIMEOUT_S", "AUTOTEL_PORTAL__SOCKET_TIMEOUT_S"])
def test_a_socket_timeout_is_whole_seconds(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """cheroot takes whole seconds; 0.5 used to become 0 (non-blocking sockets, lost answers)."""
    path = tmp_path / "autotel.yaml"
    path.write_text("client_id: a\n")
    monkeypatch.setenv(key, "0.5")
    with pytest.raises(ConfigError, match=r"socket_timeout_s: .* \(got '0.5', from "):
        load_config(path)
    monkeypatch.setenv(key, "2")
    config = load_config(path)
    assert 2 in (config.agent.socket_timeout_s, config.portal.socket_timeout_s)
