"""`GET /api/update/progress`: `state/events.jsonl` as Server-Sent Events.

On connect a client first gets the events of the latest apply job (marked
`"replay": true`), so a page reloaded mid-apply or after the restart still sees
where the apply is, or that it ended `done` or `failed`. Then it gets each apply
job's events as the runner appends them, and a heartbeat comment while nothing
happens (which is also how a dead client is noticed: the write fails). Other jobs'
events stay out of this stream: the `done` of the `stage` job that follows each
received update, or of an export, is not the update's.

Each event's `step` is one DESIGN.md lists for this stream (`StreamSteps`): the
apply job's own `restart` and `rollback` steps are not among them.

cheroot's `stop()` waits without a timeout for busy workers, so every wait here is
bounded and checks the server's `stopping` event; a stream ends within one poll
interval of `ServerHandle.stop()`. The number of open streams is capped because
each one holds a server thread.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from autotel.runner.events import EventTail, parse_lines

APPLY_KIND = "apply"
STREAM_STEPS = frozenset({"verify", "backup", "patch", "migrate", "done", "failed"})  # DESIGN.md
# The replay reads at most this much of the file's end (the latest apply is near it);
# events.jsonl and its previous generation hold up to 2 x retention.events_max_mb, and
# each new stream must not read them all.
REPLAY_WINDOW_BYTES = 4 * 1024 * 1024

Enricher = Callable[[dict[str, Any]], dict[str, Any]]


class SubscriberCap:
    """At most `limit` open streams; `try_enter()` is False when full (the portal answers 503)."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)

    def try_enter(self) -> bool:
        return self._slots.acquire(blocking=False)

    def leave(self) -> None:
        self._slots.release()


def latest_apply_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of the last apply job in `events`, in order."""
    job = next((e.get("job") for e in reversed(events) if e.get("kind") == APPLY_KIND), None)
    return [e for e in events if job is not None and e.get("job") == job]


class StreamSteps:
    """Names each apply event's step as the stream's contract does, or leaves it out.

    `restart` (writing version.txt and restart.flag, milliseconds before `done`) is
    left out: the `done` that follows says "Перезапуск..." as the seed's does.
    `rollback` goes out under the name of the step that failed, marked
    `"rollback": true`, so the page can say the previous version is being restored
    while a long rollback runs. Anything else unknown is left out.
    """

    def __init__(self) -> None:
        self._last: tuple[Any, str] | None = None  # (job, its last step streamed)

    def __call__(self, event: dict[str, Any]) -> dict[str, Any] | None:
        step, job = event.get("step"), event.get("job")
        if step in STREAM_STEPS:
            self._last = (job, str(step))
            return event
        if step == "rollback" and self._last is not None and self._last[0] == job:
            return {**event, "step": self._last[1], "rollback": True}
        return None


def sse_message(event: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode()


class ProgressStream:
    """The WSGI body of one SSE client; `close()` (called by the server) frees its slot."""

    def __init__(self, events_file: Path, stopping: threading.Event, release: Callable[[], None],
                 enrich: Enricher, *, poll_s: float = 0.25, heartbeat_s: float = 3.0) -> None:
        self._release = release
        self._released = False
        self._lock = threading.Lock()
        self._events = self._generate(EventTail(events_file), stopping, enrich, poll_s, heartbeat_s)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        return next(self._events)

    def close(self) -> None:
        try:
            self._events.close()
        finally:
            with self._lock:
                if not self._released:
                    self._released = True
                    self._release()

    @staticmethod
    def _generate(tail: EventTail, stopping: threading.Event, enrich: Enricher, poll_s: float,
                  heartbeat_s: float) -> Generator[bytes, None, None]:
        yield b"retry: 2000\n\n"
        named = StreamSteps()
        for event in latest_apply_events(parse_lines(tail.recent(REPLAY_WINDOW_BYTES))):
            if (streamed := named(event)) is not None:
                yield sse_message({**enrich(streamed), "replay": True})
        beat = time.monotonic()
        while not stopping.is_set():
            for event in parse_lines(tail.read_new()):
                if event.get("kind") == APPLY_KIND and (streamed := named(event)) is not None:
                    yield sse_message(enrich(streamed))
            if time.monotonic() - beat >= heartbeat_s:
                beat = time.monotonic()
                yield b": keepalive\n\n"
            stopping.wait(poll_s)
