"""The demo site's watchdog as a real subprocess, and waiting on what it runs.

The watchdog gets its own process group (Windows) or session (POSIX), so the
operator's Ctrl+C reaches only the demo, which then stops the watchdog the graceful
way (SIGTERM, or CTRL_BREAK_EVENT on Windows); the watchdog stops the services and
the embedded database before it exits.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from autotel.config import Config
from autotel.errors import StateError
from autotel.watchdog.process import GRACEFUL_STOP, OWN_GROUP_FLAGS, WINDOWS, last_line

T = TypeVar("T")
POLL_S = 0.1
STOP_WAIT_S = 60.0


class SiteProcess:
    def __init__(self, config: Config, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTEL_")}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autotel", "--config", str(self.config.config_path), "watchdog"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                creationflags=OWN_GROUP_FLAGS, start_new_session=not WINDOWS)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        """Raises: StateError with the watchdog's last words when it has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise StateError(f"the site's watchdog exited with code {self.proc.returncode}: "
                             f"{last_line(self.log_path) or 'no output'} (log: {self.log_path})")

    def stop(self) -> int | None:
        """Stop the watchdog gracefully; kill it only if it does not stop within STOP_WAIT_S."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(GRACEFUL_STOP)
        try:
            return self.proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def wait_until(self, probe: Callable[[], T | None], timeout_s: float, what: str,
                   stop: threading.Event | None = None) -> T:
        """Poll `probe` until it returns a value, while the watchdog lives.

        Raises:
            StateError: the watchdog died, or `what` did not happen within `timeout_s`.
            KeyboardInterrupt: `stop` was set (the operator pressed Ctrl+C).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            value = probe()
            if value:
                return value
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt
            if time.monotonic() >= deadline:
                raise StateError(f"timed out after {timeout_s:g} s waiting for {what}; "
                                 f"see {self.log_path} and {self.config.state.logs}")
            time.sleep(POLL_S)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False
