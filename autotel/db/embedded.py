"""The embedded PostgreSQL (pgserver) under `state/pgdata`: attach, start on demand, stop.

Several processes of one site (runner, agent, portal, the CLI) may need the database
at the same moment, and any of them may be killed (`kill -9`, a power cut). So:

- Whoever finds no running server starts it, under a file lock (`state/run/
  pgserver.lock`, outside pgdata, which initdb wants empty); the others wait on that
  lock and then attach to what was started.
- The server is started with pgserver's `cleanup_mode=None`: it outlives the process
  that started it. pgserver's own reference count (a PID list in pgdata) is not
  used: a SIGKILLed process never leaves that list, and a CLI command that happened
  to start the server must not stop it under the runner's feet on exit.
- Only `stop()` stops it; the watchdog, which owns the site's services, calls it.
- What is running is read from `postmaster.pid` each time, never cached, so a
  server left by a killed process is found and a restarted one (a new port on
  Windows, where pgserver listens on TCP) is seen.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import psutil

from autotel.errors import DatabaseError, StateError
from autotel.fsutil import rotate
from autotel.lockfile import ProcessLock

if TYPE_CHECKING:
    from pgserver.utils import PostmasterInfo

log = logging.getLogger(__name__)
# pgserver's failures reach us as exceptions; without a handler of its own, Python's
# last-resort handler would also print its multi-line error logs on a CLI's stderr.
logging.getLogger("pgserver").addHandler(logging.NullHandler())

LOCK_TIMEOUT_S = 120.0  # a first start (initdb) on a slow plant PC under load
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30


class ServerState(Enum):
    READY = "ready"  # a postgres process answers for this pgdata
    BUSY = "busy"  # a postgres process is starting, stopping or recovering
    LEFTOVER = "leftover"  # postmaster.pid of a crash: its PID is gone, a zombie, or reused


def ensure_running(pgdata: Path, lock_path: Path, *, recheck: bool = False,
                   log_max_bytes: int | None = None) -> str:
    """The URI of the server for `pgdata`, started if none runs.

    `recheck` skips the lock-free fast path (used after a failed connection).
    `log_max_bytes` bounds the server's log (`pgdata/log`), see `_rotate_server_log`.

    Raises:
        DatabaseError: the server cannot be started, or did not become ready in time.
    """
    pgdata = pgdata.resolve()
    if not recheck:
        info = read_postmaster(pgdata)
        if info is not None and classify(info) is ServerState.READY:
            return info.get_uri()
    with _locked(lock_path, "embedded database"):
        return _attach_or_start(pgdata, log_max_bytes)


def stop(pgdata: Path, lock_path: Path) -> None:
    """Stop the server for `pgdata` if one runs (fast shutdown: sessions are cut off).

    Raises:
        DatabaseError: it is still running after the stop and a kill.
    """
    pgdata = pgdata.resolve()
    if not (pgdata / "PG_VERSION").exists():
        return
    with _locked(lock_path, "embedded database"):
        _stop_locked(pgdata)


def _stop_locked(pgdata: Path) -> None:
    info = read_postmaster(pgdata)
    if info is None or classify(info) is ServerState.LEFTOVER:
        return
    try:
        _pgserver().pg_ctl(
            ["-w", "-t", str(STOP_TIMEOUT_S), "-m", "fast", "stop"],
            pgdata=pgdata,
            user=_server_user(pgdata),
            timeout=STOP_TIMEOUT_S + 5,
        )
    except (subprocess.SubprocessError, OSError) as e:
        log.warning("pg_ctl stop failed for %s (%s); terminating the postmaster", pgdata, e)
        _kill(info)


def read_postmaster(pgdata: Path) -> PostmasterInfo | None:
    """What `pgdata/postmaster.pid` says; None when absent or not fully written yet."""
    try:
        lines = (
            (pgdata / "postmaster.pid").read_text(encoding="utf-8", errors="replace").splitlines()
        )
    except OSError:
        return None
    try:
        info: PostmasterInfo = _pgserver().utils.PostmasterInfo(lines[:8])
    except (AssertionError, ValueError, IndexError):
        return None  # a server starting up writes the file in several steps
    return info


def classify(info: PostmasterInfo) -> ServerState:
    """Decide from postmaster.pid and the process table what state the server is in."""
    process = info.process
    try:
        if process is None or process.status() == psutil.STATUS_ZOMBIE:
            return ServerState.LEFTOVER
        if not process.name().lower().startswith("postgres"):
            return ServerState.LEFTOVER
    except psutil.NoSuchProcess:
        return ServerState.LEFTOVER
    except psutil.Error:
        pass  # another user's process we may not inspect: trust postmaster.pid
    return ServerState.READY if info.status == "ready" else ServerState.BUSY


def _attach_or_start(pgdata: Path, log_max_bytes: int | None = None) -> str:
    """Under the lock: attach to a ready server, wait out a busy one, clear a leftover, or start."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while (info := read_postmaster(pgdata)) is not None:
        state = classify(info)
        if state is ServerState.READY:
            return info.get_uri()
        if state is ServerState.LEFTOVER:
            _clear_leftover(pgdata, info, deadline)
            break
        _wait_a_little(
            deadline,
            f"the embedded PostgreSQL in {pgdata} (PID {info.pid}) stayed "
            f"'{info.status}' for {READY_TIMEOUT_S:g} s; see its log {pgdata / 'log'}",
        )
    return _start(pgdata, log_max_bytes)


def _clear_leftover(pgdata: Path, info: PostmasterInfo, deadline: float) -> None:
    """Remove the postmaster.pid of a crashed server once none of its processes is left.

    PostgreSQL refuses to start while that file names a live PID (a reused one, or an
    unreaped zombie). Backends of a crashed postmaster exit on their own, soon; until
    they have, the old cluster is still in use and nothing may start on it.
    """
    while holders := processes_in(pgdata):
        _wait_a_little(
            deadline,
            f"processes {holders} still run in {pgdata} after its server "
            "ended; stop them, then retry",
        )
    log.warning(
        "removing %s of a server that is gone (PID %s)", pgdata / "postmaster.pid", info.pid
    )
    (pgdata / "postmaster.pid").unlink(missing_ok=True)


def processes_in(pgdata: Path) -> list[int]:
    """PIDs of live processes working in `pgdata`: every postgres process chdirs there."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.status() != psutil.STATUS_ZOMBIE and Path(process.cwd()) == pgdata:
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or another user's process: not ours to judge
    return found


def _wait_a_little(deadline: float, timeout_message: str) -> None:
    if time.monotonic() > deadline:
        raise DatabaseError(timeout_message)
    time.sleep(0.1)


def _start(pgdata: Path, log_max_bytes: int | None = None) -> str:
    if not (pgdata / "PG_VERSION").exists():
        _create_cluster(pgdata)
    if log_max_bytes is not None:
        _rotate_server_log(pgdata, log_max_bytes)
    log.info("starting the embedded PostgreSQL in %s", pgdata)
    return _run_pgserver(pgdata)


def _rotate_server_log(pgdata: Path, max_bytes: int) -> None:
    """Rename `pgdata/log` to `log.1` once over `max_bytes`, while no server holds it.

    pg_ctl appends every start, stop and checkpoint of the server's life to that one
    file, for ever. Only here, just before a start, is it sure to be closed (Windows
    cannot rename an open file), so a site restarted now and then keeps it bounded.
    """
    try:
        if rotate(pgdata / "log", max_bytes):
            log.info("the embedded PostgreSQL's log passed %d bytes: rotated to log.1", max_bytes)
    except OSError as e:  # a log is never worth a database that does not start
        log.warning("could not rotate %s (will retry at the next start): %s", pgdata / "log", e)


def _run_pgserver(pgdata: Path) -> str:
    """Start (and, in an empty folder, first initdb) a cluster with pgserver; its URI."""
    try:
        uri: str = _pgserver().PostgresServer(pgdata, cleanup_mode=None).get_uri()
    except (subprocess.SubprocessError, OSError, RuntimeError, AssertionError) as e:
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start ({type(e).__name__}: {e}); "
            f"see its log {pgdata / 'log'}"
        ) from e
    return uri


def _create_cluster(pgdata: Path) -> None:
    """Create the cluster in a staging folder, then rename it to `pgdata`.

    A first start cut short (kill -9, power cut) then leaves only the staging folder,
    which the next start discards, never a half-made cluster that fails every start.

    Raises:
        DatabaseError: `pgdata` holds something else (never deleted), or initdb failed.
    """
    if pgdata.is_dir() and any(pgdata.iterdir()):
        raise DatabaseError(
            f"{pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION); "
            "move it away, and autotel creates a new, empty database there"
        )
    staging = pgdata.with_name(pgdata.name + ".new")
    try:
        if staging.exists():
            _stop_locked(staging)
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        log.info("creating the embedded PostgreSQL cluster for %s", pgdata)
        _run_pgserver(staging)
        _stop_locked(staging)
        with contextlib.suppress(FileNotFoundError):
            pgdata.rmdir()  # an empty folder, which Windows cannot rename onto
        _rename_dir(staging, pgdata)
    except OSError as e:
        raise DatabaseError(f"cannot create the embedded database in {pgdata}: {e}") from e


def _rename_dir(source: Path, target: Path) -> None:
    """`os.replace`, retried briefly: on Windows a just-stopped server may hold a handle."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _server_user(pgdata: Path) -> str | None:
    """The system user pg_ctl must run as: pgserver runs postgres as pgdata's owner when root."""
    if sys.platform == "win32" or os.geteuid() != 0:
        return None
    import pwd

    return pwd.getpwuid(pgdata.stat().st_uid).pw_name


def _kill(info: PostmasterInfo) -> None:
    """Fast shutdown by signal (SIGINT; TerminateProcess on Windows), then SIGKILL."""
    process = info.process
    if process is None:
        return
    try:
        if os.name == "nt":
            process.terminate()
        else:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(STOP_TIMEOUT_S)
        except psutil.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
    except psutil.NoSuchProcess:
        return
    except psutil.Error as e:
        raise DatabaseError(
            f"cannot stop the embedded PostgreSQL in {info.pgdata} (PID {info.pid}): {e}; "
            "stop that process by hand"
        ) from e


def _pgserver() -> ModuleType:
    """pgserver, imported on first use.

    Importing it costs time every CLI command would pay, and warns on stderr when
    XDG_RUNTIME_DIR is unset (services, CI), which would spoil one-line CLI errors.
    The warning filter is swapped only for the first import: `catch_warnings` is not
    thread-safe and the agent calls in here from many threads.
    """
    if "pgserver.utils" not in sys.modules:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver.utils  # noqa: F401 - imports pgserver too
    return sys.modules["pgserver"]


@contextlib.contextmanager
def _locked(lock_path: Path, what: str) -> Iterator[None]:
    lock = ProcessLock(lock_path, what)
    try:
        lock.acquire_waiting(LOCK_TIMEOUT_S)
    except StateError as e:
        raise DatabaseError(str(e)) from None
    try:
        yield
    finally:
        lock.release()
