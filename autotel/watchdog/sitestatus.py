"""What `autotel status` reports: version, pending update, last sync, licence, the agent's and
the portal's ports, the agent's certificate, services, recent jobs.

Reads only: the state directory, the licence, the watchdog's services file (trusted
only while the watchdog holds its lock, and each pid checked against the live
system), and the job spool. A damaged part is reported as such, never a reason to
report nothing.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from autotel.apply.workdir import WorkDir
from autotel.config import Config
from autotel.crypto.tls import fingerprint_pem
from autotel.errors import AutotelError
from autotel.licensing.files import check_site_license, today_utc
from autotel.lockfile import ProcessLock
from autotel.package.pending import read_pending
from autotel.spool.queue import Spool
from autotel.watchdog.statusfile import pid_alive, read_services, watchdog_lock_file

RECENT_JOBS = 5


def site_status(config: Config) -> dict[str, Any]:
    paths = config.state
    return {
        "client_id": config.client_id,
        "product": config.product,
        "config": str(config.config_path.resolve()),
        "installed_version": paths.installed_version(),
        "pending_update": _pending(config),
        "last_sync": _read_text(paths.last_sync),
        "licence": _licence(config),
        "agent": {"host": config.agent.host, "port": config.agent.port,
                  "certificate_sha256": _certificate(config)},
        "portal": {"host": config.portal.host, "port": config.portal.port,
                   "scheme": "https" if config.portal.tls else "http"},
        "watchdog": _watchdog(config),
        "services": _services(config),
        "recent_jobs": _recent_jobs(config),
    }


def _pending(config: Config) -> dict[str, Any] | None:
    try:
        pending = read_pending(config.state)
    except AutotelError as e:
        return {"error": str(e)}
    if pending is None:
        return None
    data = asdict(pending)
    data["path"] = str(pending.path)
    data["unpacked_ahead"] = WorkDir.of_pending(config.state, pending.sha256).is_staged()
    return data


def _licence(config: Config) -> dict[str, Any]:
    """What the watchdog's check would say now: it refuses to start without a valid licence."""
    try:
        lic = check_site_license(config)
    except AutotelError as e:
        return {"valid": False, "error": str(e)}
    return {"valid": True, "expires": lic.expires.isoformat(), "days_left": lic.days_left(today_utc())}


def _certificate(config: Config) -> str | None:
    """SHA-256 of the agent's certificate on disk (what admins pin); None when it is missing."""
    try:
        return fingerprint_pem((config.state.tls / "cert.pem").read_bytes())
    except (OSError, ValueError):
        return None


def _read_text(path: Any) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _watchdog_running(config: Config) -> bool:
    return ProcessLock(watchdog_lock_file(config.state), "watchdog").is_held_elsewhere()


def _watchdog(config: Config) -> dict[str, Any]:
    published = (read_services(config.state) or {}).get("watchdog") or {}
    return {"running": _watchdog_running(config), "pid": published.get("pid"),
            "started": published.get("started")}


def _services(config: Config) -> list[dict[str, Any]]:
    """The services as last published; STOPPED once the watchdog is gone (its file may be stale)."""
    published = read_services(config.state) or {}
    watchdog_up = _watchdog_running(config)
    entries = []
    for entry in published.get("services") or []:
        pid = entry.get("pid")
        alive = bool(pid) and pid_alive(int(pid))
        item = {**entry, "alive": alive}
        if not watchdog_up and entry.get("state") != "STOPPED":
            item["state"] = "STOPPED"
            item["reason"] = "the watchdog is not running" + (f" (pid {pid} still exists)" if alive else "")
        entries.append(item)
    return entries


def _recent_jobs(config: Config) -> list[dict[str, Any]]:
    jobs = sorted(Spool(config.state).all_jobs(), key=lambda j: str(j.get("id")))[-RECENT_JOBS:]
    return [{**{key: job.get(key) for key in ("id", "kind", "state", "created", "finished", "error")},
             "rolled_back_to": _rolled_back_to(job)} for job in jobs]


def _rolled_back_to(job: dict[str, Any]) -> str | None:
    """The version a failed apply put back (its rollback step's result), else None."""
    result = job.get("result")
    if job.get("state") != "failed" or not isinstance(result, dict) or not result.get("rolled_back"):
        return None
    return str(result.get("installed_version") or "") or None
