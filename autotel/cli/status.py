"""`autotel status [--json]`: the state of this site at a glance."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import typer

from autotel.cli._common import print_json, render_table, say, site_config
from autotel.cli._panels import SITE

# Fewer days left than this and `status` asks for a new licence.
RENEW_WITHIN_DAYS = 30


def register(app: typer.Typer) -> None:
    app.command("status", rich_help_panel=SITE)(status)


def status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
) -> None:
    """Installed version, pending update, last sync, licence, ports, services and recent jobs."""
    from autotel.watchdog.sitestatus import site_status

    report = site_status(site_config(ctx))
    if as_json:
        print_json(report)
        return
    for line in render(report, shutil.get_terminal_size((120, 24)).columns):
        say(line)


def render(report: dict[str, Any], width: int = 120) -> list[str]:
    """The report as text a plant admin reads at a glance."""
    lines = [
        f"site:              {report['client_id']} ({report['product']}), {report['config']}",
        f"installed version: {report['installed_version']}",
        f"pending update:    {_pending(report['pending_update'])}",
        f"last sync:         {report['last_sync'] or 'never'}",
        f"licence:           {_licence(report['licence'])}",
        f"agent:             {_agent(report['agent'])}",
        f"portal:            {_portal(report['portal'])}",
        f"watchdog:          {_watchdog(report['watchdog'])}",
    ]
    if report["services"]:
        services: list[tuple[str, ...]] = [
            (str(s["name"]), str(s["state"]), str(s.get("pid") or "-"), str(s.get("since", "?")),
             "" if s["state"] == "RUNNING" else str(s.get("reason") or "")) for s in report["services"]]
        lines += ["", *render_table(("SERVICE", "STATE", "PID", "SINCE", "REASON"), services, width)]
    else:
        lines.append("services:          none recorded")
    if report["recent_jobs"]:
        jobs: list[tuple[str, ...]] = [
            (str(j["id"]), str(j["kind"]), str(j["state"]), _job_error(j)) for j in report["recent_jobs"]]
        lines += ["", *render_table(("JOB", "KIND", "STATE", "ERROR"), jobs, width)]
    else:
        lines.append("recent jobs:       none")
    return lines


def _job_error(job: dict[str, Any]) -> str:
    """The first line of a job's error; for a failed apply, first the version it put back."""
    error = str(job.get("error") or "").split("\n")[0]
    back = job.get("rolled_back_to")
    return f"rolled back, v{back} runs; {error}" if back else error


def _pending(pending: dict[str, Any] | None) -> str:
    if pending is None:
        return "none"
    if "error" in pending:
        return f"unreadable: {pending['error']}"
    ready = ", unpacked ahead" if pending.get("unpacked_ahead") else ""
    return (f"v{pending['version']} received {pending['received_at']} "
            f"(sha256 {pending['sha256'][:12]}…{ready}); confirm it in the portal")


def _licence(licence: dict[str, Any]) -> str:
    if not licence["valid"]:
        return f"NOT VALID (the watchdog will refuse to start): {licence['error']}"
    days = licence["days_left"]
    soon = "; renew it before then" if days <= RENEW_WITHIN_DAYS else ""
    return f"valid through {licence['expires']} ({days} days left{soon})"


def _listening(section: dict[str, Any]) -> str:
    everywhere = section["host"] in ("0.0.0.0", "::", "")
    return f"port {section['port']}" if everywhere else f"{section['host']}:{section['port']}"


def _agent(agent: dict[str, Any]) -> str:
    fingerprint = agent["certificate_sha256"] or "missing (run `autotel cert`)"
    return f"HTTPS {_listening(agent)} for the admin's push, certificate SHA-256 {fingerprint}"


def _portal(portal: dict[str, Any]) -> str:
    return f"{portal['scheme'].upper()} {_listening(portal)} for the operator (PIN: portal.pin in autotel.yaml)"


def _watchdog(watchdog: dict[str, Any]) -> str:
    if watchdog["running"]:
        return f"running (pid {watchdog['pid']}, since {watchdog['started']})"
    return "not running" + (f" (last started {watchdog['started']})" if watchdog.get("started") else "")
