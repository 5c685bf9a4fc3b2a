"""The `autotel` command through real subprocesses: init, cert, keygen, jobs, mistakes."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from autotel.config import Config, load_config
from autotel.crypto.tls import fingerprint_pem
from autotel.spool.queue import Spool
from tests.foundation_support import assert_one_line_error, cli


def sans(cert_path: Path) -> tuple[set[str], set[str]]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)), {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


@pytest.mark.parametrize("script", [False, True], ids=["python -m autotel", "autotel script"])
def test_init_creates_a_complete_site(tmp_path: Path, admin_keys: tuple[Path, Path],
                                      script: bool) -> None:
    site = tmp_path / "site"
    result = cli("init", site, "--client-id", "plant_A", "--public-key", admin_keys[1],
                 "--agent-port", "9877", "--portal-port", "8001", "--pin", "2468",
                 "--version", "1.2.3", "--product", "meter", "--collector", "python collect.py",
                 script=script)
    assert result.returncode == 0, result.stderr
    config = load_config(site / "autotel.yaml")
    assert (config.client_id, config.agent.port, config.portal.port, config.product) == (
        "plant_A", 9877, 8001, "meter")
    assert config.portal.pin.get_secret_value() == "2468"
    assert config.collector.command == "python collect.py"
    assert config.database.dsn.get_secret_value() == ""
    assert config.trusted_key_paths == [site / "keys" / "admin.pem"]
    assert (site / "keys" / "admin.pem").read_bytes() == admin_keys[1].read_bytes()
    assert (site / "state" / "version.txt").read_text().strip() == "1.2.3"
    for folder in ("jobs/queue", "jobs/running", "jobs/done", "jobs/failed", "pending_update",
                   "backups", "exports", "tls"):
        assert (site / "state" / folder).is_dir(), folder
    dns, ips = sans(site / "state" / "tls" / "cert.pem")
    assert {"localhost", socket.gethostname()} <= dns and "127.0.0.1" in ips
    fingerprint = fingerprint_pem((site / "state" / "tls" / "cert.pem").read_bytes())
    assert fingerprint in result.stdout
    assert stat.S_IMODE(os.stat(site / "state" / "tls" / "key.pem").st_mode) == 0o600


def test_init_refuses_an_existing_site_unless_forced(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert cli("init", site, "--client-id", "one", "--pin", "1111").returncode == 0
    before = (site / "autotel.yaml").read_text()
    assert_one_line_error(cli("init", site, "--client-id", "two"), "already exists", "--force")
    assert (site / "autotel.yaml").read_text() == before
    assert cli("init", site, "--client-id", "two", "--force").returncode == 0
    assert load_config(site / "autotel.yaml").client_id == "two"


def test_init_force_keeps_the_version_the_site_runs_unless_told(tmp_path: Path) -> None:
    """A re-created site that runs v1.2.0 must not take the v1.1.0 package back."""
    site = tmp_path / "site"
    assert cli("init", site, "--client-id", "one").returncode == 0
    version_file = site / "state" / "version.txt"
    assert version_file.read_text() == "1.0.0\n"
    version_file.write_text("1.2.0\n")  # as an applied update leaves it
    assert cli("init", site, "--client-id", "one", "--force").returncode == 0
    assert version_file.read_text() == "1.2.0\n"
    assert cli("init", site, "--client-id", "one", "--force", "--version", "1.0.5").returncode == 0
    assert version_file.read_text() == "1.0.5\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--client-id", "bad id"], "client_id: String should match pattern"),
    (["--version", "1.2"], "--version '1.2': expected a semantic version X.Y.Z"),
    (["--public-key", "missing.pem"], "missing.pem: public key file not found"),
    (["--agent-port", "70000"], "Invalid value for '--agent-port'"),
])
def test_init_with_a_bad_flag_writes_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("init", tmp_path / "site", *args, cwd=tmp_path)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "site").exists()


@pytest.mark.parametrize("names", [
    ["--ip", "10.20.30.40", "--ip", "fd00::7", "--dns", "plant-a.example", "--dns", "b.example"],
    ["--ip", "10.20.30.40", "fd00::7", "--dns", "plant-a.example", "b.example"],  # the seed's form
])
def test_cert_adds_the_given_names_and_changes_the_fingerprint(
        bare_site: Config, names: list[str]) -> None:
    cert = bare_site.state.tls / "cert.pem"
    before = fingerprint_pem(cert.read_bytes())
    result = cli("cert", *names, config=bare_site.config_path)
    assert result.returncode == 0, result.stderr
    after = fingerprint_pem(cert.read_bytes())
    assert after != before and f"--accept-cert {after}" in result.stdout
    assert "until it restarts" in result.stdout  # the running agent still serves the old one
    dns, ips = sans(cert)
    assert {"plant-a.example", "b.example", "localhost"} <= dns
    assert {"10.20.30.40", str(ipaddress.ip_address("fd00::7")), "127.0.0.1"} <= ips


@pytest.mark.parametrize(("flag", "value"), [("--ip", "10.0.0"), ("--dns", "bad_name!")])
def test_cert_refuses_a_bad_name_and_keeps_the_old_certificate(
        bare_site: Config, flag: str, value: str) -> None:
    cert = bare_site.state.tls / "cert.pem"
    before = cert.read_bytes()
    assert_one_line_error(cli("cert", flag, value, config=bare_site.config_path), f"{flag} '{value}'")
    assert cert.read_bytes() == before


def test_keygen_writes_a_private_key_only_the_owner_can_read(tmp_path: Path) -> None:
    out = tmp_path / "keys"
    result = cli("keygen", "--out", out, script=True)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(os.stat(out / "private.pem").st_mode) == 0o600
    key = load_pem_private_key((out / "private.pem").read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 3072
    assert b"BEGIN PUBLIC KEY" in (out / "public.pem").read_bytes()
    before = (out / "private.pem").read_bytes()
    assert_one_line_error(cli("keygen", "--out", out), "private.pem already exists")
    assert (out / "private.pem").read_bytes() == before


@pytest.mark.parametrize("params", [
    ["--param", "seconds=5", "-p", "note=a=b"],
    ["--param", "seconds=5", "note=a=b"],  # the seed's form
])
def test_jobs_add_ls_show(bare_site: Config, params: list[str]) -> None:
    added = cli("jobs", "add", "wait", *params, config=bare_site.config_path)
    assert added.returncode == 0, added.stderr
    job_id = added.stdout.strip()
    shown = cli("jobs", "show", job_id[:-6], config=bare_site.config_path)
    assert shown.returncode == 0, shown.stderr
    record = json.loads(shown.stdout)
    assert record["kind"] == "wait" and record["state"] == "queued"
    assert record["params"] == {"seconds": "5", "note": "a=b"}
    listing = cli("jobs", "ls", config=bare_site.config_path).stdout.splitlines()
    assert listing[0].split() == ["ID", "KIND", "STATE", "STEP", "AGE", "RESULT"]
    assert listing[1].split()[:3] == [job_id, "wait", "queued"]
    assert cli("jobs", "ls", "--state", "done", config=bare_site.config_path).stdout == "no jobs done\n"


def test_jobs_ls_is_a_table_with_the_step_and_the_result_or_error(bare_site: Config) -> None:
    spool = Spool(bare_site.state)
    ids = [spool.submit("ping") for _ in range(3)]
    done = bare_site.state.job_dir("done") / f"{ids[0]}.json"
    failed = bare_site.state.job_dir("failed") / f"{ids[1]}.json"
    record = json.loads((bare_site.state.queue / done.name).read_text())
    (bare_site.state.queue / done.name).unlink()
    done.write_text(json.dumps({**record, "state": "done", "result": {"pong": True}, "steps": [
        {"name": "ping", "phase": "main", "state": "done"}]}))
    (bare_site.state.queue / failed.name).unlink()
    failed.write_text(json.dumps({**record, "id": ids[1], "state": "failed", "error": "boom\nmore",
                                  "steps": [{"name": "ping", "phase": "main", "state": "failed"}]}))
    (bare_site.state.job_dir("failed") / "torn.json").write_text("{")
    (bare_site.state.job_dir("failed") / "torn.json.reason.txt").write_text("torn.json: not JSON\n")
    lines = cli("jobs", "ls", config=bare_site.config_path, env={"COLUMNS": "200"}).stdout.splitlines()
    rows = {line.split()[0]: line for line in lines[1:]}
    columns = [lines[0].index(h) for h in ("KIND", "STATE", "STEP", "AGE", "RESULT")]
    assert all(line[c - 2:c] == "  " for line in lines for c in columns if len(line) > c)
    assert rows[ids[0]].split()[2:5] == ["done", "ping", "(1/1)"] and rows[ids[0]].endswith("pong=True")
    assert rows[ids[1]].split()[2:5] == ["failed", "ping", "(1/1)"] and rows[ids[1]].endswith("boom")
    assert rows[ids[2]].split()[2] == "queued"
    assert rows["torn"].endswith("torn.json: not JSON")
    assert len(cli("jobs", "ls", "--limit", "2", config=bare_site.config_path).stdout.splitlines()) == 3
    narrow = cli("jobs", "ls", config=bare_site.config_path, env={"COLUMNS": "60"}).stdout
    assert all(len(line) <= max(60, lines[0].index("RESULT") + 10) for line in narrow.splitlines())


def test_jobs_ls_shows_the_latest_jobs_by_time_whatever_their_names(bare_site: Config) -> None:
    """A hand-named file sorts after every spool name; it must not hide newer jobs."""
    failed = bare_site.state.job_dir("failed")
    (failed / "nokind.json").write_text('{"params": {}}')
    (failed / "nokind.json.reason.txt").write_text('nokind.json: missing "kind"\n')
    an_hour_ago = time.time() - 3600
    os.utime(failed / "nokind.json", (an_hour_ago, an_hour_ago))
    newer = Spool(bare_site.state).submit("ping")
    latest = cli("jobs", "ls", "--limit", "1", config=bare_site.config_path).stdout.splitlines()
    assert latest[1].split()[:3] == [newer, "ping", "queued"]
    both = cli("jobs", "ls", config=bare_site.config_path, env={"COLUMNS": "200"}).stdout
    rows = both.splitlines()[1:]
    assert rows[0].split()[:3] == ["nokind", "?", "failed"] and rows[0].endswith('missing "kind"')
    assert rows[1].startswith(newer)


@pytest.mark.parametrize(("args", "message", "code"), [
    (["jobs", "add", "nosuchkind"], "unknown job kind 'nosuchkind'; known kinds: ", 5),
    (["jobs", "add", "ping", "--param", "novalue"], "--param 'novalue': expected KEY=VALUE", 2),
    (["jobs", "show", "nosuchjob"], "no job 'nosuchjob'", 5),
    (["jobs", "ls", "--state", "odd"], "--state 'odd': expected queued, running, done or failed", 2),
    (["jobs", "ls", "--limit", "0"], "Invalid value for '--limit'", 2),
    (["jobs", "frobnicate"], "No such command 'frobnicate'", 2),
])
def test_user_mistakes_give_one_line_and_a_non_zero_exit(
        bare_site: Config, args: list[str], message: str, code: int) -> None:
    result = cli(*args, config=bare_site.config_path)
    assert_one_line_error(result, message)
    assert result.returncode == code


def test_a_job_that_fails_under_jobs_add_wait_exits_non_zero(bare_site: Config) -> None:
    result = cli("jobs", "add", "ping", "--wait", "0.2", config=bare_site.config_path)
    assert_one_line_error(result, "did not finish within 0.2 s; is `autotel runner`")
    assert result.returncode == 5


def test_no_site_here_is_one_line(tmp_path: Path) -> None:
    result = cli("jobs", "ls", cwd=tmp_path)
    assert_one_line_error(result, f"{tmp_path / 'autotel.yaml'}: configuration file not found")


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert_one_line_error(cli("keygen", "--out", blocker / "keys"), str(blocker / "keys"))


def test_written_config_is_yaml_a_person_can_read(tmp_path: Path) -> None:
    assert cli("init", tmp_path / "s", "--client-id", "plant_A", "--pin", "1").returncode == 0
    data = yaml.safe_load((tmp_path / "s" / "autotel.yaml").read_text())
    assert data["client_id"] == "plant_A" and data["portal"]["pin"] == "1"
