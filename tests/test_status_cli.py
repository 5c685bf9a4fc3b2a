"""`autotel status` through the real CLI: a fresh site, a busy one, and a watchdog that died."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any, cast

from autotel.config import Config
from autotel.crypto.tls import fingerprint_pem
from autotel.fsutil import atomic_write_text
from autotel.package.pending import store_pending
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from autotel.spool.queue import Spool
from autotel.steps.stage import stage_ahead
from autotel.watchdog.statusfile import pid_alive
from tests.apply_support import run_step
from tests.watchdog_support import WatchdogProcess, license_site, run_cli


def _status(config: Config) -> dict[str, Any]:
    result = run_cli("status", "--json", config=config)
    assert result.returncode == 0, result.stderr
    return cast(dict[str, Any], json.loads(result.stdout))  # `status --json` prints an object


def test_fresh_site(bare_site: Config) -> None:
    report = _status(bare_site)
    assert report["installed_version"] == "1.0.0"
    assert report["pending_update"] is None and report["last_sync"] is None
    assert report["watchdog"]["running"] is False
    assert report["services"] == [] and report["recent_jobs"] == []
    text = run_cli("status", config=bare_site).stdout
    for line in ("installed version: 1.0.0", "pending update:    none", "last sync:         never",
                 "watchdog:          not running", "services:          none recorded"):
        assert line in text


def test_licence_ports_and_certificate(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    """What an admin needs before the first push: is the licence good, which port is
    what, and which certificate fingerprint the first push must show."""
    fingerprint = fingerprint_pem((bare_site.state.tls / "cert.pem").read_bytes())
    report = _status(bare_site)
    assert report["licence"]["valid"] is False and "no licence file" in report["licence"]["error"]
    assert report["agent"] == {"host": "0.0.0.0", "port": 9876, "certificate_sha256": fingerprint}
    assert report["portal"]["scheme"] == "http"
    text = run_cli("status", config=bare_site).stdout
    assert "licence:           NOT VALID (the watchdog will refuse to start)" in text
    assert f"agent:             HTTPS port 9876 for the admin's push, certificate SHA-256 {fingerprint}" in text
    assert "portal:            HTTP port 8000 for the operator" in text

    license_site(bare_site, admin_keys[0], days=10)
    report = _status(bare_site)
    assert report["licence"]["valid"] is True and report["licence"]["days_left"] == 10
    assert "(10 days left; renew it before then)" in run_cli("status", config=bare_site).stdout


def test_pending_update_last_sync_and_jobs(bare_site: Config, admin_keys: tuple[Path, Path],
                                           tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "collector.json").write_text('{"rate_hz": 2}')
    published = run_cli("publish", "--version", "1.1.0", "--notes", "Новий датчик", "--files",
                        "collector.json", "--base-dir", str(tmp_path / "src"), "--key", str(admin_keys[0]),
                        "--out", str(tmp_path))
    assert published.returncode == 0, published.stderr
    package = tmp_path / "update_v1.1.0.zip"
    manifest = verify_package(package, bare_site, installed_version="1.0.0")
    upload = bare_site.state.incoming / package.name
    shutil.copyfile(package, upload)
    store_pending(bare_site.state, upload, manifest, file_sha256(package))
    atomic_write_text(bare_site.state.last_sync, "2026-11-29T10:00:00Z\n")
    job_ids = [Spool(bare_site.state).submit("ping") for _ in range(7)]

    report = _status(bare_site)
    assert report["pending_update"]["version"] == "1.1.0"
    assert report["pending_update"]["notes"] == "Новий датчик"
    assert report["pending_update"]["sha256"] == file_sha256(package)
    assert report["last_sync"] == "2026-11-29T10:00:00Z"
    assert [j["id"] for j in report["recent_jobs"]] == job_ids[-5:]
    assert {j["state"] for j in report["recent_jobs"]} == {"queued"}
    assert report["pending_update"]["unpacked_ahead"] is False
    text = run_cli("status", config=bare_site).stdout
    assert "pending update:    v1.1.0 received" in text and "confirm it in the portal" in text
    assert "unpacked ahead" not in text
    assert re.search(rf"^{job_ids[-1]}\s+ping\s+queued$", text, re.MULTILINE)

    assert run_step(bare_site, "stage", stage_ahead, file_sha256(package))["staged"]
    assert _status(bare_site)["pending_update"]["unpacked_ahead"] is True
    assert "…, unpacked ahead); confirm it in the portal" in run_cli("status", config=bare_site).stdout


def test_services_while_the_watchdog_runs_and_after_it_died(site: Config, admin_keys: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    license_site(site, admin_keys[0])
    with WatchdogProcess(site, tmp_path / "watchdog.out") as wd:
        runner = wd.wait_state("runner", "STARTING", "RUNNING")
        report = _status(site)
        assert report["watchdog"]["running"] is True
        assert report["watchdog"]["pid"] == wd.proc.pid  # type: ignore[union-attr]
        entry = next(s for s in report["services"] if s["name"] == "runner")
        assert entry["alive"] is True and entry["pid"] == runner["pid"]
        assert "watchdog:          running (pid" in run_cli("status", config=site).stdout

        os.kill(wd.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
        wd.proc.wait()  # type: ignore[union-attr]
        report = _status(site)
        assert report["watchdog"]["running"] is False
        entry = next(s for s in report["services"] if s["name"] == "runner")
        assert entry["state"] == "STOPPED" and entry["alive"] is pid_alive(runner["pid"])
        assert entry["reason"].startswith("the watchdog is not running")
