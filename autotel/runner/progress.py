"""Maps a step's own progress (0–1) to the job's overall percentage, never going back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotel.runner.events import emit


def step_span(index: int, total: int) -> tuple[float, float]:
    """The slice of 0–100 that step `index` of `total` owns."""
    return 100.0 * index / total, 100.0 * (index + 1) / total


class StepReporter:
    def __init__(self, events_file: Path, request: dict[str, Any]) -> None:
        self.events_file = events_file
        self.job = request["job"]
        self.step = request["step"]
        self.low, self.high = request["pct_from"], request["pct_to"]
        self.last = self.low

    def report(self, fraction: float, msg: str, msg_en: str = "") -> None:
        pct = max(self.last, self.low + (self.high - self.low) * fraction)
        self.last = pct
        emit(self.events_file, self.job, self.step, pct, msg, durable=False,
             **({"msg_en": msg_en} if msg_en else {}))
