"""Services left running by a watchdog that died (`kill -9`, a crash): stopped before a new start.

Children run in their own session or process group, so they outlive a killed
watchdog; a new one would then find the runner's lock held and its own runner would
crash-loop. The previous services file names their pids. A pid is touched only if
that process still runs the exact command line this watchdog would start for that
service, so a pid the OS has since reused for something else is left alone.
"""

from __future__ import annotations

import logging

import psutil

from autotel.state import StatePaths
from autotel.watchdog.process import GRACEFUL_STOP, ServiceSpec
from autotel.watchdog.statusfile import read_services

log = logging.getLogger("autotel.watchdog")

KILL_WAIT_S = 5.0


def stop_orphans(paths: StatePaths, specs: list[ServiceSpec], timeout_s: float) -> list[str]:
    """Stop (then kill, after `timeout_s`) the previous watchdog's services; return their names."""
    orphans = _find(paths, {spec.name: spec for spec in specs})
    for name, process in orphans:
        log.warning("%s (pid %d) was left running by a previous watchdog; stopping it", name, process.pid)
        try:
            process.send_signal(GRACEFUL_STOP)
        except psutil.Error:
            continue
    _, alive = psutil.wait_procs([p for _, p in orphans], timeout=timeout_s)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=KILL_WAIT_S)
    return [name for name, _ in orphans]


def _find(paths: StatePaths, specs: dict[str, ServiceSpec]) -> list[tuple[str, psutil.Process]]:
    published = read_services(paths) or {}
    found = []
    for entry in published.get("services") or []:
        spec, pid = specs.get(str(entry.get("name"))), entry.get("pid")
        if spec is None or not isinstance(pid, int):
            continue
        try:
            process = psutil.Process(pid)
            if process.cmdline() == spec.argv:
                found.append((spec.name, process))
        except psutil.Error:
            continue  # gone, or not ours to inspect
    return found
