"""`autotel demo` waiting for an operator: address and PIN printed, apply by hand, Ctrl+C stops all."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from autotel.demo.portal_client import PortalClient
from tests.test_demo_auto import kill_processes_mentioning, processes_mentioning
from tests.watchdog_support import child_env


class Lines:
    """The demo's stdout, line by line, readable with a timeout."""

    def __init__(self, stream: Iterable[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}")


def test_operator_applies_through_the_portal_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "autotel", "demo", "--dir", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
    try:
        assert proc.stdout is not None  # stdout=PIPE
        lines = Lines(proc.stdout)
        url = lines.wait_for(r"Operator portal: (http://\S+)").group(1)
        pin = lines.wait_for(r"PIN:\s+(\d{6})").group(1)
        lines.wait_for("Press Ctrl\\+C")
        with PortalClient(url) as portal:  # what the operator's browser does
            portal.login(pin)
            status = portal.status()
            assert status["pending_version"] == "1.1.0" and status["current_version"] == "1.0.0"
            portal.apply(status["sha256"])
        lines.wait_for("update applied: the site now runs v1.1.0")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(lines.seen)
        lines.wait_for("site stopped", timeout=5)
        assert processes_mentioning(str(root)) == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_processes_mentioning(str(root))
