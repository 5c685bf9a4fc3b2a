"""`autotel jobs ls | add | show`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from autotel.cli._common import print_json, say, site_config
from autotel.errors import ConfigError
from autotel.spool.jobfile import current_step
from autotel.spool.queue import Spool
from autotel.timeutil import parse_iso, utcnow

jobs_app = typer.Typer(no_args_is_help=True, help="List, add and inspect jobs.")


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")


@jobs_app.command("ls")
def jobs_ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=10000, help="Newest N jobs")] = 30,
    state: Annotated[str | None, typer.Option(help="queued, running, done or failed")] = None,
) -> None:
    """A table of jobs, newest last: id, kind, state, step, age, result."""
    jobs = sorted(Spool(site_config(ctx).state).all_jobs(), key=lambda j: str(j.get("id")))
    if state:
        jobs = [j for j in jobs if j.get("state") == state]
    rows = [_row(j) for j in jobs[-limit:]]
    if not rows:
        say("no jobs")
        return
    header = ("ID", "KIND", "STATE", "STEP", "AGE", "RESULT")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        say("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1])


@jobs_app.command("add")
def jobs_add(
    ctx: typer.Context,
    kind: str,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="KEY=VALUE, repeatable")] = None,
    wait: Annotated[float, typer.Option(help="Wait up to this many seconds for the result")] = 0,
) -> None:
    """Queue a job of KIND; prints its id."""
    config = site_config(ctx)
    spool = Spool(config.state)
    job_id = spool.submit(kind, _parse_params(param or []))
    say(job_id)
    if wait > 0:
        job = spool.wait(job_id, wait)
        say(f"{job['state']}" + (f": {job['error']}" if job.get("error") else ""))
        if job["state"] != "done":
            raise typer.Exit(5)


@jobs_app.command("show")
def jobs_show(ctx: typer.Context, job_id: str) -> None:
    """The whole record of one job (an id or a unique prefix)."""
    print_json(Spool(site_config(ctx).state).load(job_id))


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
    if job.get("error"):
        return str(job["error"]).splitlines()[0][:80]
    result = job.get("result")
    if isinstance(result, dict) and result:
        return ", ".join(f"{k}={v}" for k, v in list(result.items())[:3])[:80]
    return ""


