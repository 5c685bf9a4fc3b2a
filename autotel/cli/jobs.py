"""`autotel jobs ls | add | show`."""

from __future__ import annotations

import shutil
from typing import Annotated, Any

import typer

from autotel.cli._common import print_json, render_table, say, site_config
from autotel.cli._lists import spreading
from autotel.cli._panels import SITE
from autotel.errors import ConfigError, JobError
from autotel.runner.kinds import available_kinds
from autotel.spool.jobfile import current_step
from autotel.spool.queue import Spool
from autotel.state import JOB_STATES
from autotel.timeutil import parse_iso, utcnow

jobs_app = typer.Typer(no_args_is_help=True, help="List, add and inspect jobs.")


def _is_pair(token: str) -> bool:
    """Another `KEY=VALUE` after `--param` (anything else is the next argument)."""
    return "=" in token


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs", rich_help_panel=SITE)


@jobs_app.command("ls")
def jobs_ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100000, help="Show the newest N jobs")] = 30,
    state: Annotated[str | None, typer.Option(help="Only queued, running, done or failed jobs")] = None,
) -> None:
    """A table of jobs, newest last: id, kind, state, step, age, result or error."""
    folders = JOB_STATES if state is None else (_folder_of(state),)
    jobs = Spool(site_config(ctx).state).recent(limit, folders)
    if not jobs:
        say("no jobs" + (f" {state}" if state else ""))
        return
    width = shutil.get_terminal_size((120, 24)).columns
    for line in render_table(("ID", "KIND", "STATE", "STEP", "AGE", "RESULT"),
                             [_row(j) for j in jobs], width):
        say(line)


@jobs_app.command("add", cls=spreading({"--param": _is_pair, "-p": _is_pair}))
def jobs_add(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(
        metavar="KIND", help="Job kind: a file jobs/KIND.yaml (e.g. ping, export)")],
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE; several after one flag, or the flag repeated")] = None,
    wait: Annotated[float, typer.Option(
        help="Wait up to this many seconds for the result (0: do not wait); the runner must run")] = 0,
) -> None:
    """Queue a job of KIND; prints its id (with --wait, then its outcome)."""
    config = site_config(ctx)
    known = available_kinds(config.install_path)
    if kind not in known:
        raise JobError(f"unknown job kind {kind!r}; known kinds: {', '.join(known)}")
    spool = Spool(config.state)
    job_id = spool.submit(kind, _parse_params(param or []))
    say(job_id)
    if wait > 0:
        job = spool.wait(job_id, wait)
        if job["state"] != "done":
            raise JobError(f"job {job_id} failed: {job.get('error')}")
        say("done")


@jobs_app.command("show")
def jobs_show(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(
        metavar="ID", help="A job id from `autotel jobs ls`, or its unique start")],
) -> None:
    """The whole record of one job, as JSON."""
    print_json(Spool(site_config(ctx).state).load(job_id))


def _folder_of(state: str) -> str:
    folders = {"queued": "queue", "queue": "queue", "running": "running", "done": "done",
               "failed": "failed"}
    if state not in folders:
        raise ConfigError(f"--state {state!r}: expected queued, running, done or failed")
    return folders[state]


def _parse_params(pairs: list[str]) -> dict[str, str]:
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {pair!r}: expected KEY=VALUE")
        params[key] = value
    return params


def _row(job: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(job.get("id", "")), str(job.get("kind", "")), str(job.get("state", "")),
        current_step(job), _age(job.get("created")), _result(job),
    )


def _age(created: Any) -> str:
    try:
        seconds = (utcnow() - parse_iso(str(created))).total_seconds()
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _result(job: dict[str, Any]) -> str:
    """The error of a failed job, else its result as `key=value` pairs."""
    if job.get("error"):
        lines = str(job["error"]).splitlines()
        return lines[0] if lines else ""
    result = job.get("result")
    if isinstance(result, dict) and result:
        return ", ".join(f"{k}={v}" for k, v in result.items())
    return ""


