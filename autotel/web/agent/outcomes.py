"""What the agent answers for a finished job, decided from the job record alone (pure)."""

from __future__ import annotations

from typing import Any

from autotel.errors import (
    AutotelError,
    BodyTooLargeError,
    DiskSpaceError,
    IncompleteBodyError,
    RequestError,
)
from autotel.spool.jobfile import failed_steps
from autotel.web.agent.upload_resume import ResumeRefused

# The receive job's failure classes (the runner records the exception class name).
_UPDATE_FAILURES = {
    "SignatureError": (400, "invalid_sig"),
    "VerificationError": (400, "invalid_sig"),
    "NotNewerError": (409, "same_version"),
    "PackageError": (400, "invalid_package"),
    "DiskSpaceError": (507, "disk_full"),
}


def update_answer(job: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) for a finished `receive` job, per DESIGN's update answers."""
    if job.get("state") == "done":
        return 200, {"status": "queued"}
    status, word = _UPDATE_FAILURES.get(str(job.get("error_type")), (500, "error"))
    return status, {"status": word, "error": _step_error(job)}


def _step_error(job: dict[str, Any]) -> str:
    """The failed step's own words: the job's error wraps them in "step receive failed:",
    a name from inside the site that tells the admin nothing."""
    failed = failed_steps(job)
    return str(failed[-1].get("error") if failed else job.get("error")
               or "the update could not be received")


def upload_refusal(error: AutotelError) -> tuple[int, dict[str, Any], str]:
    """(HTTP status, JSON body, sessions.jsonl status) for an upload the agent could not
    even store, so no job ever saw it.

    A body cut short or stalled is no package (`invalid_package`, as the contract says for
    an unusable one) but is logged as `incomplete`, which tells the admin to resend it.
    A full disk has no status in the contract: `disk_full`, with 507, says it is the
    site's problem, not the package's; nor has a resumed upload that names bytes the site
    does not hold: `resume_failed`, with 409 and the `offset` to send from.
    """
    message = str(error)
    if isinstance(error, ResumeRefused):
        return 409, {"status": "resume_failed", "offset": error.held, "error": message}, \
            "resume_failed"
    if isinstance(error, DiskSpaceError):
        return 507, {"status": "disk_full", "error": message}, "disk_full"
    if isinstance(error, BodyTooLargeError):
        return 413, {"status": "too_large", "error": message}, "too_large"
    status = error.http_status if isinstance(error, RequestError) else 400
    logged = "incomplete" if isinstance(error, IncompleteBodyError) else "invalid_package"
    return status, {"status": "invalid_package", "error": message}, logged


def export_result(job: dict[str, Any]) -> dict[str, Any] | None:
    """The export step's result if the job succeeded with a usable one, else None."""
    result = job.get("result")
    if job.get("state") != "done" or not isinstance(result, dict):
        return None
    wanted = {
        "archive": str,
        "records": int,
        "size": int,
        "sha256": str,
        "period_end": str,
        "cursor": str,
    }
    if not all(isinstance(result.get(k), t) for k, t in wanted.items()):
        return None
    name = result["archive"]
    if "/" in name or "\\" in name or name.startswith("."):
        return None
    return result


def reset_reason(result: dict[str, Any]) -> str:
    """Why the export's cursor did not fit and every row was sent, or "" (one header line)."""
    reason = result.get("reset")
    if not isinstance(reason, str):
        return ""  # results of older exports said only `true`/`false`
    return "".join(c if " " <= c <= "~" else "?" for c in reason)[:300]
