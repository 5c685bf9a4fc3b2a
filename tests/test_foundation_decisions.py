"""Pure decisions of the spool, the wait step and the CLI table, tested with plain values."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from autotel.cli._common import render_table
from autotel.errors import JobError
from autotel.spool.jobfile import current_step, parse_job, start_over
from autotel.steps.wait import wait_seconds

NOW = datetime(2026, 3, 1, 1, 59, 30, tzinfo=UTC)


@pytest.mark.parametrize(("params", "seconds"), [
    ({"seconds": 0}, 0.0), ({"seconds": "2.5"}, 2.5),
    ({"until": "2026-03-01T02:00:00Z"}, 30.0), ({"until": "2026-03-01T04:00:00+02:00"}, 30.0),
    ({"until": "2026-03-01T02:00:00"}, 30.0), ({"until": "2026-03-01T01:00:00Z"}, 0.0),
])
def test_wait_seconds(params: dict[str, Any], seconds: float) -> None:
    assert wait_seconds(params, NOW) == seconds


@pytest.mark.parametrize(("params", "message"), [
    ({}, "give exactly one of"), ({"seconds": 1, "until": "2026-03-01T02:00:00Z"}, "exactly one"),
    ({"seconds": "soon"}, "'soon' is not a number"), ({"seconds": -1}, "finite number >= 0"),
    ({"seconds": "nan"}, "finite number >= 0"), ({"seconds": "inf"}, "finite number >= 0"),
    ({"until": "tomorrow"}, "'tomorrow' is not an ISO 8601 time"),
])
def test_wait_refuses_bad_params(params: dict[str, Any], message: str) -> None:
    with pytest.raises(JobError, match=message):
        wait_seconds(params, NOW)


def test_a_minimal_job_file_is_completed() -> None:
    job = parse_job(b'{"kind": "ping"}', "x.json")
    assert (job["id"], job["state"], job["params"], job["steps"]) == ("x", "queued", {}, [])


@pytest.mark.parametrize(("raw", "message"), [
    (b"{", "x.json: not a valid JSON job file"), (b"[]", "expected a JSON object, found list"),
    (b"{}", 'missing "kind"'), (b'{"kind": "Bad Kind"}', "is not valid"),
    (b'{"kind": "ping", "params": []}', '"params" must be an object'),
    (b"\xff", "not a valid JSON job file"),
    (b'{"kind": "apply", "steps": [null]}', '"steps" must be a list of objects'),
    (b'{"kind": "apply", "steps": "x"}', '"steps" must be a list of objects'),
    (b'{"kind": "apply", "steps": [{"state": "done"}]}', 'with a "name"'),
    (b'{"kind": "apply", "state": 1}', '"state" must be a string'),
    (b'{"kind": "apply", "pct": "50"}', '"pct" must be a number'),
])
def test_a_bad_job_file_is_named_in_the_error(raw: bytes, message: str) -> None:
    with pytest.raises(JobError, match=message):
        parse_job(raw, "x.json")


def test_a_job_put_back_into_the_queue_starts_over() -> None:
    job = {"id": "j", "kind": "apply", "params": {"sha256": "ab"}, "created": "t", "state": "failed",
           "error": "boom", "error_type": "PackageError", "result": {"a": 1}, "finished": "t2",
           "steps": [{"name": "verify", "state": "done"}, {"name": "patch", "state": "failed"}]}
    assert start_over(job) == {"id": "j", "kind": "apply", "params": {"sha256": "ab"},
                                    "created": "t", "state": "queued", "steps": [], "result": None,
                                    "error": None, "retried_from": "failed"}


def test_steps_written_into_a_queued_job_by_hand_are_not_trusted() -> None:
    forged = {"id": "j", "kind": "apply", "state": "queued",
              "steps": [{"name": "verify", "state": "done", "result": {"package": "/x.zip"}}]}
    assert start_over(forged) == {"id": "j", "kind": "apply", "state": "queued", "steps": [],
                                  "result": None, "error": None}


@pytest.mark.parametrize(("steps", "shown"), [
    ([], ""),
    ([{"name": "verify", "state": "done"}, {"name": "backup", "state": "running"},
      {"name": "patch", "state": "pending"}], "backup (2/3)"),
    ([{"name": "verify", "state": "done"}, {"name": "backup", "state": "failed"},
      {"name": "rollback", "phase": "on_failure", "state": "done"}], "backup (2/2)"),
    ([{"name": "verify", "state": "failed"},
      {"name": "rollback", "phase": "on_failure", "state": "running"}], "rollback (on failure)"),
    ([{"name": "verify", "state": "done"}, {"name": "backup", "state": "done"}], "backup (2/2)"),
])
def test_the_step_shown_in_a_listing(steps: list[dict[str, Any]], shown: str) -> None:
    assert current_step({"steps": steps}) == shown


def test_render_table_aligns_columns_and_cuts_the_last_to_fit() -> None:
    lines = render_table(("ID", "STATE", "RESULT"), [("a", "done", "x" * 50), ("bbb", "failed", "")], 30)
    assert lines[0] == "ID   STATE   RESULT"
    assert lines[1] == "a    done    " + "x" * 16 + "…" and len(lines[1]) == 30
    assert lines[2] == "bbb  failed"
