"""`autotel demo --auto` end to end, as a user runs it: a fresh folder, no configuration."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil

from tests.watchdog_support import child_env


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live processes whose command line names `text` (the demo's folder)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(text in arg for arg in process.info["cmdline"] or []):
            found.append(process)
    return found


def kill_processes_mentioning(text: str) -> None:
    """After a failed run: leave no watchdog, service or postgres of the demo behind."""
    for process in processes_mentioning(text):
        try:
            process.kill()
        except psutil.Error:
            continue


def test_demo_auto_applies_the_update_and_cleans_up(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    try:
        result = subprocess.run([sys.executable, "-m", "autotel", "demo", "--auto", "--dir", str(root)],
                                capture_output=True, text=True, timeout=150, cwd=tmp_path, env=child_env(),
                                check=False)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        out = result.stdout
        assert "site demo-plant now runs v1.1.0" in out
        assert "update v1.1.0: queued" in out
        assert "runner, agent, portal, collector restarted by the watchdog" in out
        assert "1001_alarm_limits.sql -> 3 alarm limits" in out
        assert "site stopped" in out
        assert (root / "site" / "state" / "version.txt").read_text().strip() == "1.1.0"
        assert list((root / "admin" / "data_storage" / "demo-plant").glob("*.jsonl.gz"))
        assert processes_mentioning(str(root)) == []  # services and the embedded database stopped
    finally:
        kill_processes_mentioning(str(root))
