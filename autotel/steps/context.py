"""What a step sees: the site's config, its job, and a way to report progress."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autotel.config import Config
from autotel.state import StatePaths


@dataclass
class StepContext:
    config: Config
    job: dict[str, Any]
    step_name: str
    report: Callable[..., None] = field(repr=False)  # (fraction, msg[, msg_en])

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.job.get("params") or {})

    @property
    def state(self) -> StatePaths:
        return self.config.state

    @property
    def results(self) -> dict[str, Any]:
        """Merged results of the steps of this job that already finished."""
        merged: dict[str, Any] = {}
        for record in self.job.get("steps", []):
            if record.get("state") == "done" and isinstance(record.get("result"), dict):
                merged.update(record["result"])
        return merged

    def progress(self, fraction: float, msg: str = "", msg_en: str = "") -> None:
        """Report how far this step is (0.0–1.0); the runner maps it to the job's overall pct.

        `msg` is shown to the operator (Ukrainian), `msg_en` on the English page.
        """
        english = (msg_en,) if msg_en else ()
        self.report(max(0.0, min(1.0, fraction)), msg, *english)
