"""Helpers for the foundation tests: the real CLI and a real runner, as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from autotel.config import Config
from autotel.fsutil import atomic_write_text
from autotel.runner.events import read_events
from autotel.spool.queue import Spool

T = TypeVar("T")
AUTOTEL_SCRIPT = Path(sys.executable).parent / ("autotel.exe" if os.name == "nt" else "autotel")


def cli(*args: str | Path, config: Path | None = None, script: bool = False,
        env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `python -m autotel ARGS` (or the installed `autotel` script) and capture it."""
    command = [str(AUTOTEL_SCRIPT)] if script else [sys.executable, "-m", "autotel"]
    if config is not None:
        command += ["--config", str(config)]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOTEL_")}
    full_env.update(env or {})
    return subprocess.run([*command, *map(str, args)], check=False, capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    """A user mistake: non-zero exit, one line on stderr saying what is wrong, no traceback."""
    assert result.returncode != 0, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def wait_for(check: Callable[[], T | None], timeout: float = 20, what: str = "condition") -> T:
    """Poll `check` until it returns something truthy and return that (never None, so a
    check may answer None for "not yet"); fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class RunnerProcess:
    """A real `autotel runner` for one site; `kill()` is `kill -9`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.log = config.state.root / "runner-test.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.spool = Spool(config.state)

    def start(self) -> RunnerProcess:
        self.config.state.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autotel", "--config", str(self.config.config_path), "runner"],
                stdout=log, stderr=subprocess.STDOUT,
            )
        return self

    def ready(self) -> RunnerProcess:
        """Wait until the runner has run a ping job (it and its step worker are up)."""
        job = self.spool.wait(self.spool.submit("ping"), 60)
        assert job["state"] == "done", job
        return self

    def run(self, kind: str, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Submit a job and return its final record."""
        return self.spool.wait(self.spool.submit(kind, params), timeout)

    def run_dropped(self, kind: str, timeout: float = 60) -> dict[str, Any]:
        """Drop a job file holding its kind alone, as DESIGN.md lets a person do by hand."""
        atomic_write_text(self.spool.paths.queue / "by-hand.json", json.dumps({"kind": kind}))
        return self.spool.wait("by-hand", timeout)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM, as the watchdog stops it; returns the exit code."""
        assert self.proc is not None
        return terminate(self.proc)

    def children(self) -> list[int]:
        """PIDs of the runner's child processes (its step worker), from Linux /proc."""
        pids: list[int] = []
        for task in Path(f"/proc/{self.pid}/task").glob("*"):
            text = (task / "children").read_text().split()
            pids += [int(p) for p in text]
        return pids


def terminate(proc: subprocess.Popen[Any]) -> int:
    """Stop a service process with SIGTERM (SIGKILL if it ignores it); its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


@contextmanager
def running(config: Config) -> Iterator[RunnerProcess]:
    runner = RunnerProcess(config).start()
    try:
        yield runner.ready()
    finally:
        runner.stop()


def write_kind(config: Config, name: str, text: str) -> None:
    """A job kind of the test site's own `jobs/` folder (read before the shipped ones)."""
    folder = config.install_path / "jobs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")


def events_of(config: Config, job_id: str) -> list[dict[str, Any]]:
    return [e for e in read_events(config.state.events) if e.get("job") == job_id]


def step_starts(config: Config, job_id: str) -> Counter[str]:
    """How often the runner started each step of a job (its "step started" events)."""
    return Counter(e["step"] for e in events_of(config, job_id) if "attempt" in e)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())
