"""`ping`: a step that does nothing, so `{"kind": "ping"}` checks the runner is alive."""

from __future__ import annotations

from typing import Any

from autotel.steps import step
from autotel.steps.context import StepContext


@step("ping")
def ping(ctx: StepContext) -> dict[str, Any]:
    return {"pong": True}
