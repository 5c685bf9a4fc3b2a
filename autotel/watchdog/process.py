"""The watchdog's one seam to the operating system: spawn, stop, kill, poll.

`SubprocessLauncher` is the real thing. Tests swap in a fake launcher (wrapping this
one) to inject what the OS does rarely, such as a process that will not spawn.

Children get their own process group (Windows) or session (POSIX), so a Ctrl+C at
the console reaches only the watchdog, which then stops them in order. A graceful
stop is SIGTERM on POSIX and CTRL_BREAK_EVENT on Windows (where `terminate()` would
be a hard TerminateProcess); `kill` is the hard way after the stop timeout. A
CTRL_BREAK_EVENT needs a console shared with the child; where there is none (a
watchdog run as a Windows service) sending it fails quietly and the kill follows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from autotel.watchdog.console import ConsolePump

CONSOLE_LOG_MAX_BYTES = 5 * 1024 * 1024
WINDOWS = sys.platform == "win32"
if sys.platform == "win32":
    OWN_GROUP_FLAGS = subprocess.CREATE_NEW_PROCESS_GROUP
    GRACEFUL_STOP = signal.CTRL_BREAK_EVENT  # reaches the child's group; its SIGBREAK handler stops it
else:
    OWN_GROUP_FLAGS = 0
    GRACEFUL_STOP = signal.SIGTERM


@dataclass(frozen=True)
class ServiceSpec:
    """What to run for one service, and where its console output goes."""

    name: str
    argv: list[str]
    cwd: Path
    console_log: Path
    env: dict[str, str] = field(default_factory=dict, repr=False)
    console_log_max_bytes: int = CONSOLE_LOG_MAX_BYTES


class Child(Protocol):
    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...


class Launcher(Protocol):
    def spawn(self, spec: ServiceSpec) -> Child:
        """Start the process. Raises: OSError when the OS refuses."""

    def stop(self, child: Child) -> None:
        """Ask the process to stop (it may take a while, or ignore it)."""

    def kill(self, child: Child) -> None:
        """Stop the process now."""

    def poll(self, child: Child) -> int | None:
        """Its exit code, or None while it runs."""


class SubprocessLauncher:
    """Real processes; their output reaches the console log through a `ConsolePump` each."""

    def __init__(self) -> None:
        self._pumps: dict[int, ConsolePump] = {}

    def spawn(self, spec: ServiceSpec) -> Child:
        child = subprocess.Popen(spec.argv, cwd=spec.cwd, env=spec.env or None,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, creationflags=OWN_GROUP_FLAGS,
                                 start_new_session=not WINDOWS)
        assert child.stdout is not None  # stdout=PIPE
        self._pumps[child.pid] = ConsolePump(child.stdout, spec.console_log,
                                             spec.console_log_max_bytes)
        return child

    def stop(self, child: Child) -> None:
        _send(child, GRACEFUL_STOP)

    def kill(self, child: Child) -> None:
        if isinstance(child, subprocess.Popen) and child.poll() is None:
            with contextlib.suppress(OSError):  # it ended in between
                child.kill()

    def poll(self, child: Child) -> int | None:
        """Its exit code once its last output is in the console log (the exit reason is
        read from there), else None."""
        code = child.poll()
        if code is not None and (pump := self._pumps.pop(child.pid, None)) is not None:
            pump.drain()
        return code


def _send(child: Child, sig: int) -> None:
    if isinstance(child, subprocess.Popen) and child.poll() is None:
        with contextlib.suppress(OSError):  # it ended in between
            child.send_signal(sig)


def last_line(path: Path, max_chars: int = 200) -> str:
    """The last non-empty line a service printed (often the error that killed it)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            tail = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    lines = [line.strip() for line in tail.splitlines() if line.strip()]
    return lines[-1][:max_chars] if lines else ""


def describe_exit(code: int) -> str:
    """`exited with code 3` or `killed by signal 9 (SIGKILL)`."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        return f"killed by signal {-code} ({name})"
    return f"exited with code {code}"
