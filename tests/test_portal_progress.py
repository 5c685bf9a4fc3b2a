"""`GET /api/update/progress` over real HTTP: replay, live events, the cap, clean stop."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from autotel.config import Config
from autotel.runner.events import emit
from autotel.spool.queue import Spool
from tests.portal_support import PIN, SseReader, append_event, client, running_portal

RIGHT = {"X-Config-Pin": PIN}


def test_replay_of_the_latest_apply_then_live_events(bare_site: Config) -> None:
    append_event(bare_site, job="old", kind="apply", step="done", pct=100, msg="Готово")
    append_event(bare_site, job="a2", kind="apply", step="verify", pct=0, msg="Перевірка пакету...")
    append_event(bare_site, job="e1", kind="export", step="export", pct=0, msg="")
    append_event(bare_site, job="a2", kind="apply", step="backup", pct=20, msg="Резервна копія...")
    with open(bare_site.state.events, "a", encoding="utf-8") as f:
        f.write('{"job": "a2", "kind": "apply", "step": "pat')  # the runner is mid-write
    with (running_portal(bare_site) as portal, client(portal) as http,
          http.stream("GET", "/api/update/progress", headers=RIGHT) as response):
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        sse = SseReader(response)
        first, second = sse.next_event(), sse.next_event()
        assert [first["step"], second["step"]] == ["verify", "backup"]
        assert first["replay"] is True and first["job"] == "a2"
        assert first["msg"] == "Перевірка пакету..."
        with open(bare_site.state.events, "a", encoding="utf-8") as f:
            f.write('ch", "pct": 40, "msg": "Застосування файлів..."}\n')
        live = sse.next_event()
        assert live == {"job": "a2", "kind": "apply", "step": "patch", "pct": 40,
                        "msg": "Застосування файлів..."}
        for kind in ("export", "receive", "stage"):  # their `done` is not the update's
            append_event(bare_site, job=f"{kind}1", kind=kind, step="done", pct=100, msg="")
        append_event(bare_site, job="a2", kind="apply", step="migrate", pct=80, msg="")
        assert sse.next_event()["step"] == "migrate", "only the apply jobs' events are streamed"


STREAM_STEPS = {"verify", "backup", "patch", "migrate", "done", "failed"}  # DESIGN.md


def test_only_the_contract_steps_are_streamed_a_rollback_under_the_step_that_failed(
        bare_site: Config) -> None:
    """The apply job's own `restart` and `rollback` steps are not among DESIGN.md's
    stream steps: `restart` stays out, `rollback` goes out as the failed step, marked."""
    ok = [("verify", 0), ("backup", 20), ("patch", 40), ("migrate", 60), ("restart", 80),
          ("done", 100)]
    for step, pct in ok:
        append_event(bare_site, job="a1", kind="apply", step=step, pct=pct, msg=step)
    with (running_portal(bare_site) as portal, client(portal) as http,
          http.stream("GET", "/api/update/progress", headers=RIGHT) as response):
        sse = SseReader(response)
        replayed = [sse.next_event()["step"] for _ in range(5)]
        assert replayed == ["verify", "backup", "patch", "migrate", "done"]
        bad = [("verify", 0), ("backup", 20), ("patch", 40), ("migrate", 60), ("rollback", 60),
               ("rollback", 60), ("failed", 60)]
        for step, pct in bad:
            append_event(bare_site, job="a2", kind="apply", step=step, pct=pct, msg=step)
        live = [sse.next_event() for _ in bad]
    assert {e["step"] for e in live} <= STREAM_STEPS
    assert [(e["step"], e["msg"], e.get("rollback")) for e in live[3:]] == [
        ("migrate", "migrate", None), ("migrate", "rollback", True),
        ("migrate", "rollback", True), ("failed", "failed", None)]


def test_a_failed_event_says_which_step_failed(bare_site: Config) -> None:
    spool = Spool(bare_site.state)
    job_id = spool.submit("apply", {"sha256": "d" * 64})
    name = job_id + ".json"
    path = spool.claim(name)
    assert path is not None
    job = spool.load(job_id)
    job.update(error="step migrate failed: syntax error", error_type="DatabaseError", steps=[
        {"name": "verify", "phase": "main", "state": "done"},
        {"name": "migrate", "phase": "main", "state": "failed", "error": "syntax error"},
        {"name": "rollback", "phase": "on_failure", "state": "done"},
    ])
    spool.finish(path, job, "failed")
    emit(bare_site.state.events, job, "failed", 60, job["error"])
    with (running_portal(bare_site) as portal, client(portal) as http,
          http.stream("GET", "/api/update/progress", headers=RIGHT) as response):
        event = SseReader(response).next_event()
    assert event["step"] == "failed" and event["replay"] is True
    assert event["failed_step"] == "migrate" and event["error_type"] == "DatabaseError"


def test_progress_needs_the_pin(bare_site: Config) -> None:
    with running_portal(bare_site) as portal, client(portal) as http:
        answer = http.get("/api/update/progress")
    assert answer.status_code == 401 and "error" in answer.json()


def test_streams_are_capped_and_a_closed_one_frees_its_place(
    bare_site: Config, caplog: pytest.LogCaptureFixture
) -> None:
    with running_portal(bare_site, max_sse_clients=2) as portal, client(portal) as http:
        def open_stream() -> httpx.Response:
            return http.send(http.build_request("GET", "/api/update/progress", headers=RIGHT),
                             stream=True)

        first, second = open_stream(), open_stream()
        try:
            assert first.status_code == second.status_code == 200
            full = http.get("/api/update/progress", headers=RIGHT)
            assert full.status_code == 503 and "too many" in full.json()["error"]
            assert full.headers["Retry-After"] == "5"
            assert http.get("/api/update/status", headers=RIGHT).status_code == 200
        finally:
            second.close()
        # The server notices the closed stream when a write fails (the second heartbeat at most).
        deadline = time.monotonic() + 15
        while True:
            with http.stream("GET", "/api/update/progress", headers=RIGHT) as again:
                if again.status_code == 200:
                    break
                assert time.monotonic() < deadline, "the closed stream's place was never freed"
            time.sleep(0.2)
        first.close()
    # closing the page is how a progress stream ends: nothing to warn about
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_stop_ends_open_streams_at_once(bare_site: Config) -> None:
    with (running_portal(bare_site) as portal, client(portal) as http,
          http.stream("GET", "/api/update/progress", headers=RIGHT) as response):
        lines = response.iter_lines()
        assert next(lines).startswith("retry:")
        stopper = threading.Thread(target=portal.stop)
        started = time.monotonic()
        stopper.start()
        stopper.join(15)
        assert not stopper.is_alive(), "stop() hung on an open stream"
        assert time.monotonic() - started < 8
        assert list(lines) == [""] or list(lines) == []
