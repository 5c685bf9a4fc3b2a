"""The worker process that runs steps on the runner's behalf.

Python cannot stop a thread, so a step that hangs past its timeout could only be
abandoned, not stopped. Steps therefore run in a child process (spawned, so it
works the same on Windows) that the runner kills and replaces on a timeout.

The worker must never outlive the runner: after a `kill -9` of the runner, the next
runner resumes the interrupted step, and two copies of it must not run at once. So
the worker watches its parent and exits the moment it is gone. It ignores Ctrl+C
(which the console sends to the whole process group): stopping is the runner's call.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from autotel.errors import AutotelError, JobError, StepTimeoutError

if sys.platform == "win32":  # there Pipe() gives the Windows kind of connection
    from multiprocessing.connection import PipeConnection as PipeEnd
else:
    from multiprocessing.connection import Connection as PipeEnd

STOP_GRACE_S = 1.0
READY_TIMEOUT_S = 60.0
READY = "ready"


class StepWorker:
    """The runner's handle on its worker: `run(request, timeout_s)` and `stop()`."""

    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._conn: PipeEnd | None = None

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._process = self._ctx.Process(
            target=worker_main, args=(child, str(self.config_path)), name="autotel-step-worker",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._conn = parent
        self._await_ready()

    def _await_ready(self) -> None:
        """Wait for the worker's hello, so a step's timeout never includes the spawn.

        Raises:
            JobError: the worker died or stayed silent while starting (e.g. a broken install).
        """
        assert self._conn is not None
        try:
            if self._conn.poll(READY_TIMEOUT_S) and self._conn.recv() == READY:
                return
        except (EOFError, OSError):
            pass
        self.stop(grace_s=0)
        raise JobError(f"the step worker process did not start within {READY_TIMEOUT_S:g} s; "
                       "see the runner's log")

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Run one step; return `{"ok": True, "result": ...}` or `{"ok": False, "error": ...}`.

        Raises:
            StepTimeoutError: no answer within `timeout_s`; the worker was killed and replaced.
        """
        if self._conn is None or not self._process.is_alive():  # e.g. killed while idle
            self._restart()
        assert self._conn is not None
        try:
            self._conn.send(request)
            if self._conn.poll(timeout_s):
                answer: dict[str, Any] = self._conn.recv()
                return answer
        except (EOFError, OSError, BrokenPipeError):
            self._restart()
            return {"ok": False, "error": "the step worker process died while running the step"}
        self._restart()
        raise StepTimeoutError(
            f"step {request['step']!r} did not finish within its timeout of {timeout_s:g} s and was stopped"
        )

    def _restart(self) -> None:
        """Replace a worker that hangs or died; it gets no grace, its step already failed."""
        self.stop(grace_s=0)
        self.start()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Close the pipe (an idle worker then exits by itself); kill it if it does not."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(grace_s)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(10)
            self._process = None


def worker_main(conn: PipeEnd, config_path: str) -> None:
    """Loop in the child: receive a step request, run it, send the outcome back."""
    from autotel.config import load_config
    from autotel.runner.progress import StepReporter
    from autotel.steps import load_steps
    from autotel.steps.context import StepContext

    _exit_with_parent()
    for name in ("SIGINT", "SIGBREAK"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    steps = load_steps()
    config = load_config(Path(config_path))
    conn.send(READY)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        reporter = StepReporter(config.state.events, request)
        ctx = StepContext(config=config, job=request["job"], step_name=request["step"],
                          report=reporter.report)
        try:
            result = steps[request["step"]](ctx)
            answer = {"ok": True, "result": result if isinstance(result, dict) else {}}
        except AutotelError as e:
            answer = {"ok": False, "error": str(e), "type": type(e).__name__}
        except Exception as e:  # noqa: BLE001 (a bug in a step must fail the job, not the worker)
            answer = {"ok": False, "error": f"{type(e).__name__}: {e}", "type": type(e).__name__,
                      "traceback": traceback.format_exc(limit=8)}
        answer["pct"] = reporter.last
        conn.send(answer)


def _exit_with_parent() -> None:
    """Exit at once when the runner dies, even in the middle of a step (see module doc)."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
