"""`autotel agent` as a real process: serves, stops cleanly on SIGTERM, refuses bad config."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from autotel.config import Config


def _start(config: Config, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "autotel", "--config", str(config.config_path), "agent"],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "AUTOTEL_AGENT__HOST": "127.0.0.1", **env},
    )


def _port(proc: subprocess.Popen[str]) -> int:
    assert proc.stderr is not None
    for line in proc.stderr:
        found = re.search(r"agent listening on https://127\.0\.0\.1:(\d+)", line)
        if found:
            return int(found.group(1))
    raise AssertionError(f"the agent never said where it listens (exit {proc.wait()})")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_agent_serves_and_stops_on_signal(bare_site: Config, sig: signal.Signals) -> None:
    proc = _start(bare_site)
    try:
        port = _port(proc)
        pem = (bare_site.state.tls / "cert.pem").read_text()
        import ssl

        with httpx.Client(verify=ssl.create_default_context(cadata=pem)) as client:
            answer = client.get(f"https://127.0.0.1:{port}/auth/challenge")
        assert answer.status_code == 200 and answer.json()["nonce"]
        proc.send_signal(sig)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_agent_without_trusted_keys_is_one_clear_line(bare_site: Config, tmp_path: Path) -> None:
    proc = _start(bare_site, AUTOTEL_TRUSTED_KEYS="[]")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert "trusted_keys" in err and "Traceback" not in err


def test_agent_start_removes_uploads_a_crash_left_but_keeps_a_queued_one(
    bare_site: Config,
) -> None:
    """A crash mid-upload leaves the temporary file (`atomic_writer`'s name for it) and,
    after the upload, possibly a finished one no job took: the next start removes both,
    but not an upload a queued `receive` job still has to check, nor a file not the agent's."""
    from autotel.spool.queue import Spool

    incoming = bare_site.state.incoming
    incoming.mkdir(parents=True, exist_ok=True)
    cut_off = incoming / ".upload-0123456789abcdef.zip.x7k2_p9q.tmp"
    orphan = incoming / "upload-00000000000000aa.zip"
    queued = incoming / "upload-00000000000000bb.zip"
    foreign = incoming / "readme.txt"
    for path in (cut_off, orphan, queued, foreign):
        path.write_bytes(b"PK\x03\x04" + b"\x00" * 4096)
    Spool(bare_site.state).submit(
        "receive", {"upload": str(queued), "version": "1.1.0", "signature": "", "peer_ip": "x"}
    )
    proc = _start(bare_site)
    try:
        _port(proc)  # it serves only after the sweep
        assert not cut_off.exists() and not orphan.exists()
        assert queued.exists() and foreign.exists()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
