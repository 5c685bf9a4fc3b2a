"""What a job file holds, and the pure decisions about it (no disk access here)."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime
from typing import Any

from autotel.errors import JobError
from autotel.timeutil import iso, utcnow

JOB_SUFFIX = ".json"
REASON_SUFFIX = ".reason.txt"  # beside a job file the runner could not read (`Spool.reject`)
_KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


def new_job_name(kind: str, moment: datetime | None = None) -> str:
    """`20261129T114000123456Z-3fa1c2-apply.json`: sorts by submission time, never collides."""
    stamp = (moment or utcnow()).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}-{kind}{JOB_SUFFIX}"


def is_job_name(name: str) -> bool:
    """Any file dropped into the queue is a job (DESIGN.md), whatever its name: one that is
    not JSON is rejected with its reason, not ignored. Temporary files (`.x.tmp`, hidden)
    and reason files (`x.json.reason.txt`) are not jobs."""
    return not name.startswith(".") and not name.endswith(REASON_SUFFIX)


def job_id(name: str) -> str:
    """The file name without `.json` (in any case; a person may name a file anything)."""
    return name[: -len(JOB_SUFFIX)] if name.lower().endswith(JOB_SUFFIX) else name


def check_kind(kind: str) -> str:
    if not _KIND_PATTERN.match(kind):
        raise JobError(f"job kind {kind!r} is not valid: use lowercase letters, digits, '-' and '_'")
    return kind


def new_job(kind: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"kind": check_kind(kind), "params": dict(params or {}), "created": iso(utcnow()),
            "state": "queued"}


def parse_job(raw: bytes, name: str) -> dict[str, Any]:
    """Parse a job file; fill in what a person may leave out (`{"kind": "ping"}` is enough).

    Raises:
        JobError: not JSON, not an object, or without a valid `kind`.
    """
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise JobError(f"{name}: not a valid JSON job file ({e})") from None
    if not isinstance(data, dict):
        raise JobError(f"{name}: expected a JSON object, found {type(data).__name__}")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise JobError(f'{name}: missing "kind" (e.g. {{"kind": "ping"}})')
    check_kind(kind)
    params = data.get("params", {})
    if not isinstance(params, dict):
        raise JobError(f'{name}: "params" must be an object, found {type(params).__name__}')
    _check_record(data, name)
    data.setdefault("id", job_id(name))
    data.setdefault("params", {})
    data.setdefault("created", iso(utcnow()))
    data.setdefault("state", "queued")
    data.setdefault("steps", [])
    data.setdefault("result", None)
    data.setdefault("error", None)
    return data


def _check_record(data: dict[str, Any], name: str) -> None:
    """The fields the runner keeps its place in must have their shape, so a file written by
    hand is refused with its reason instead of stopping the runner at every start.

    Raises:
        JobError: naming the field.
    """
    steps = data.get("steps", [])
    if not isinstance(steps, list) or not all(
            isinstance(s, dict) and isinstance(s.get("name"), str) for s in steps):
        raise JobError(f'{name}: "steps" must be a list of objects with a "name" (the runner '
                       "fills it in; leave it out)")
    if not isinstance(data.get("state", "queued"), str):
        raise JobError(f'{name}: "state" must be a string (leave it out)')
    pct = data.get("pct", 0)
    if isinstance(pct, bool) or not isinstance(pct, int | float):
        raise JobError(f'{name}: "pct" must be a number (leave it out)')


def encode_job(job: dict[str, Any]) -> bytes:
    return (json.dumps(job, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


FINAL_STATES = ("done", "failed")


def failed_steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The step records of `job` that failed, in the order they ran."""
    return [s for s in job.get("steps") or [] if isinstance(s, dict) and s.get("state") == "failed"]


def current_step(job: dict[str, Any]) -> str:
    """The step a person wants to see in a listing: the running one, else the one that
    failed, else the last one that ran; with its position, e.g. `backup (2/5)`."""
    steps = [s for s in job.get("steps", []) if isinstance(s, dict)]
    main = [s for s in steps if s.get("phase", "main") == "main"]
    for wanted in ("running", "failed", "done"):
        matches = [s for s in steps if s.get("state") == wanted]
        if matches:
            step = matches[-1]
            if step in main:
                return f"{step.get('name')} ({main.index(step) + 1}/{len(main)})"
            return f"{step.get('name')} (on failure)"
    return ""


def start_over(job: dict[str, Any]) -> dict[str, Any]:
    """A job taken from the queue, with nothing of a run recorded: it starts at its first step.

    Someone may have put back a job that ran (e.g. moved from `failed/`): steps are
    idempotent, and a failed job may have been rolled back, so results recorded by the
    earlier run prove nothing now. Nor do steps written by hand: a `verify` marked done
    in a dropped file must not skip the verification.
    """
    kept: dict[str, Any] = {k: job[k] for k in ("id", "kind", "params", "created") if k in job}
    fresh = {**kept, "state": "queued", "steps": [], "result": None, "error": None}
    if job.get("state") != "queued":
        fresh["retried_from"] = job.get("state")
    return fresh
