"""`state/run/services.json`: what the watchdog last knew about its services.

Written atomically on every transition; read by `autotel status`, which trusts it
only while the watchdog still holds its lock (a watchdog killed with `kill -9`
leaves a stale file behind) and checks each pid against the live system.
"""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import psutil

from autotel.fsutil import atomic_write_json
from autotel.state import StatePaths
from autotel.timeutil import iso, now_iso, utcnow
from autotel.watchdog.states import Service


def services_file(paths: StatePaths) -> Path:
    return paths.run / "services.json"


def watchdog_lock_file(paths: StatePaths) -> Path:
    return paths.run / "watchdog.lock"


def write_services(paths: StatePaths, started: str, services: list[Service], running: bool) -> None:
    now = time.monotonic()
    data = {
        "watchdog": {"pid": os.getpid(), "started": started, "updated": now_iso(), "running": running},
        "services": [_entry(svc, now) for svc in services],
    }
    atomic_write_json(services_file(paths), data)


def _entry(svc: Service, now: float) -> dict[str, Any]:
    return {
        "name": svc.name,
        "state": str(svc.state),
        "pid": svc.pid,
        "since": iso(utcnow() - timedelta(seconds=now - svc.since)),
        "spawns": svc.spawns,
        "failures": svc.failures,
        "backoff_s": svc.backoff_s,
        "reason": svc.reason,
    }


def read_services(paths: StatePaths) -> dict[str, Any] | None:
    """The last published state, or None when no watchdog ever ran (or the file is unreadable)."""
    try:
        data = json.loads(services_file(paths).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def pid_alive(pid: int) -> bool:
    """True if a process with this pid runs (a zombie waiting to be reaped does not count)."""
    if pid <= 0:
        return False
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but belongs to someone we may not inspect
