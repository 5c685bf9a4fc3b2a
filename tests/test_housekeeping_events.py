"""events.jsonl stays bounded: rotated by the runner between jobs, and every reader
(the portal's SSE tail and replay, `highest_pct` on resume) keeps working across it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotel.config import Config, RetentionConfig
from autotel.fsutil import MB, append_line, previous_generation, rotate
from autotel.runner.events import EventTail, emit, highest_pct, parse_lines, read_events
from autotel.spool.queue import Spool
from autotel.web.portal.progress import latest_apply_events
from tests.foundation_support import RunnerProcess, events_of, wait_for, write_kind
from tests.portal_support import PIN, SseReader, client, runner_thread, running_portal
from tests.watchdog_support import configure_site

RIGHT = {"X-Config-Pin": PIN}


def with_limits(config: Config, **limits: Any) -> Config:
    return config.model_copy(update={"retention": RetentionConfig(**limits)})


def event(path: Path, job: str, step: str, pct: int, kind: str = "apply") -> None:
    emit(path, {"id": job, "kind": kind}, step, pct)


def steps(data: bytes) -> list[str]:
    return [f"{e['job']}:{e['step']}" for e in parse_lines(data)]


def test_rotate_at_the_limit_keeps_one_previous_generation(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    append_line(log, "a" * 49)
    assert not rotate(log, 100) and log.stat().st_size == 50, "under the limit: left alone"
    append_line(log, "b" * 59)
    assert rotate(log, 100), "over the limit: rotated"
    assert not log.exists()
    assert previous_generation(log).read_text() == "a" * 49 + "\n" + "b" * 59 + "\n"
    append_line(log, "c" * 200)
    assert rotate(log, 100)
    assert previous_generation(log).read_text() == "c" * 200 + "\n", "only one generation is kept"
    assert not rotate(tmp_path / "missing.jsonl", 0)


def test_the_tail_follows_a_rotation_without_losing_or_repeating_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.read_new() == b""
    event(path, "a1", "verify", 0)
    event(path, "a1", "backup", 20)
    assert steps(tail.read_new()) == ["a1:verify", "a1:backup"]
    event(path, "a1", "patch", 40)  # appended, not read yet, when the rotation comes
    assert rotate(path, 0)
    assert steps(tail.read_new()) == ["a1:patch"], "the rotated file's rest, before a new file exists"
    event(path, "a1", "migrate", 60)
    assert steps(tail.read_new()) == ["a1:migrate"]
    event(path, "a1", "restart", 80)
    assert rotate(path, 0)
    event(path, "a1", "done", 100)
    event(path, "e1", "export", 0, kind="export")  # the new file is now longer than the old offset
    assert steps(tail.read_new()) == ["a1:restart", "a1:done", "e1:export"]
    assert tail.read_new() == b""


def test_replay_and_highest_pct_reach_into_the_previous_generation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    event(path, "a0", "done", 100)
    for step, pct in (("verify", 0), ("backup", 20), ("patch", 57)):
        event(path, "a1", step, pct)
    assert rotate(path, 0)  # the runner rotated between jobs: a1 is all in events.jsonl.1
    assert highest_pct(path, "a1") == 57
    replayed = latest_apply_events(parse_lines(EventTail(path).recent(4 * MB)))
    assert [e["step"] for e in replayed] == ["verify", "backup", "patch"]
    event(path, "e1", "export", 0, kind="export")
    tail = EventTail(path)
    window = path.stat().st_size + previous_generation(path).stat().st_size
    assert steps(tail.recent(window)) == ["a0:done", "a1:verify", "a1:backup", "a1:patch",
                                          "e1:export"]
    cut = steps(EventTail(path).recent(path.stat().st_size + 10))
    assert cut == ["e1:export"], "a line of .1 cut by the window is dropped"
    event(path, "e1", "done", 100, kind="export")
    assert steps(tail.read_new()) == ["e1:done"], "after the replay the tail reads only new lines"
    assert [e["step"] for e in read_events(path)] == ["done", "verify", "backup", "patch",
                                                      "export", "done"]


def test_the_runner_rotates_the_events_between_jobs(bare_site: Config) -> None:
    config = with_limits(bare_site, events_max_mb=1000 / MB)
    spool = Spool(config.state)
    with runner_thread(config):
        ids = [spool.submit("ping", {"n": n}) for n in range(8)]
        for ident in ids:
            assert spool.wait(ident, 30)["state"] == "done"
    # the runner thread has ended: the last job's `done` event and tidying are behind it
    rotated = previous_generation(config.state.events)
    assert rotated.stat().st_size > 1000, "a whole generation that passed the limit"
    assert not config.state.events.exists() or config.state.events.stat().st_size <= 1000
    kept = read_events(config.state.events)
    assert kept[-1]["job"] == ids[-1] and kept[-1]["step"] == "done"
    assert len(kept) < 8 * 2, "older generations are gone"
    jobs = [e["job"] for e in kept]
    assert jobs == sorted(jobs), "what is kept is in order, without repeats of a job's lines"


def test_the_progress_stream_keeps_delivering_across_a_rotation(bare_site: Config) -> None:
    path = bare_site.state.events
    event(path, "a1", "verify", 0)
    with running_portal(bare_site) as portal, client(portal) as http:
        with http.stream("GET", "/api/update/progress", headers=RIGHT) as response:
            sse = SseReader(response)
            assert sse.next_event()["step"] == "verify"
            event(path, "a1", "backup", 20)
            assert rotate(path, 0)  # most likely before the stream's next poll: unread in .1
            event(path, "a1", "patch", 40)
            got = [sse.next_event() for _ in range(2)]
            assert [e["step"] for e in got] == ["backup", "patch"]
            assert not any(e.get("replay") for e in got)
            event(path, "a1", "migrate", 60)
            assert rotate(path, 0)
            event(path, "e1", "export", 0, kind="export")
            event(path, "a1", "done", 100)
            assert [sse.next_event()["step"] for _ in range(2)] == ["migrate", "done"]
        with http.stream("GET", "/api/update/progress", headers=RIGHT) as again:
            sse = SseReader(again)
            replay = [sse.next_event() for _ in range(3)]
        assert [(e["step"], e["replay"]) for e in replay] == [
            ("patch", True), ("migrate", True), ("done", True)
        ], "a new page replays the latest apply from events.jsonl.1 (the kept generation) and on"


def test_a_job_resumed_after_a_rotation_keeps_its_highest_pct(bare_site: Config) -> None:
    write_kind(bare_site, "slow", "steps: [ping, wait]\n")
    runner = RunnerProcess(bare_site).start().ready()
    try:
        ident = runner.spool.submit("slow", {"seconds": 3})
        wait_for(lambda: any(e.get("msg_en") == "2 s more" for e in events_of(bare_site, ident)),
                 30, "the wait step's progress")
        runner.kill()
    finally:
        runner.stop()
    before = max(e["pct"] for e in events_of(bare_site, ident))
    assert before > 50, "the interrupted step had reported progress beyond its start (50)"
    config = configure_site(bare_site, retention={"events_max_mb": 100 / MB})
    restarted = RunnerProcess(config).start()  # rotates at start, then resumes the job
    try:
        assert restarted.spool.wait(ident, 30)["state"] == "done"
        wait_for(lambda: not config.state.events.exists(), 10, "the rotation after the job")
    finally:
        restarted.stop()
    resumed = [e for e in parse_lines(previous_generation(config.state.events).read_bytes())
               if e["job"] == ident]
    assert resumed[0]["step"] == "wait" and resumed[-1]["step"] == "done"
    pcts = [e["pct"] for e in resumed]
    assert pcts == sorted(pcts) and pcts[0] >= before, "the bar did not go back on resume"
