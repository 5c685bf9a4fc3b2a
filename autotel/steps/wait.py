"""`wait`: pause a job for a while or until a moment, e.g. a maintenance window.

Params (from the job, or fixed per step in the kind's YAML): `seconds` (a number
≥ 0) or `until` (an ISO 8601 time; without an offset it is UTC). The step reports
progress at once and then about once a second, so the operator page shows that the
job is waiting rather than stuck. A step timeout shorter than the wait stops it.

The runner runs one job at a time, so a wait holds back every job queued after it
(exports, updates): keep waits short; the step timeout (`runner.default_step_timeout_s`,
600 s, unless the kind sets `timeout_s`) bounds them.
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any

from autotel.errors import JobError
from autotel.steps import step
from autotel.steps.context import StepContext
from autotel.timeutil import iso, parse_iso, utcnow

REPORT_EVERY_S = 1.0


@step("wait")
def wait(ctx: StepContext) -> dict[str, Any]:
    seconds = wait_seconds(ctx.params, utcnow())
    deadline = time.monotonic() + seconds
    ctx.progress(0.0, f"очікування {seconds:g} с", f"waiting {seconds:g} s")
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, REPORT_EVERY_S))
        left = max(0.0, deadline - time.monotonic())
        ctx.progress(1.0 - left / seconds, f"ще {math.ceil(left)} с", f"{math.ceil(left)} s more")
    return {"waited_s": round(seconds, 3), "waited_until": iso(utcnow())}


def wait_seconds(params: dict[str, Any], now: datetime) -> float:
    """How long to wait, from `seconds` or `until`; a moment already past means 0.

    Raises:
        JobError: neither or both given, or a value that is not a number / a time.
    """
    has_seconds, has_until = "seconds" in params, "until" in params
    if has_seconds == has_until:
        raise JobError('wait: give exactly one of "seconds" (e.g. 30) or "until" '
                       f'(e.g. 2026-03-01T02:00:00Z); got {sorted(params) or "neither"}')
    if has_until:
        try:
            moment = parse_iso(str(params["until"]))
        except ValueError:
            raise JobError(f"wait: until {params['until']!r} is not an ISO 8601 time") from None
        return max(0.0, (moment - now).total_seconds())
    try:
        seconds = float(params["seconds"])
    except (TypeError, ValueError):
        raise JobError(f"wait: seconds {params['seconds']!r} is not a number") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise JobError(f"wait: seconds must be a finite number >= 0, got {params['seconds']!r}")
    return seconds
