"""The runner as a real `autotel runner` process: throughput, bad input, hangs, crashes."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from autotel.config import Config
from autotel.errors import StateError
from autotel.runner.events import read_events
from autotel.spool.jobfile import encode_job, job_id, new_job, new_job_name
from autotel.spool.queue import Spool
from autotel.state import StatePaths
from autotel.timeutil import iso, utcnow
from tests.foundation_support import (
    RunnerProcess,
    assert_one_line_error,
    cli,
    events_of,
    pid_alive,
    running,
    step_starts,
    wait_for,
    write_kind,
)

WRITER = """
import sys
from autotel.config import load_config
from autotel.spool.queue import Spool
spool = Spool(load_config(sys.argv[1]).state)
for i in range(int(sys.argv[2])):
    spool.submit("ping", {"writer": sys.argv[3], "n": i})
"""


def job_file(config: Config, job_id_: str, state: str) -> dict[str, Any]:
    path = config.state.job_dir(state) / f"{job_id_}.json"
    return cast(dict[str, Any], json.loads(path.read_text()))  # a job file holds an object


def running_record(config: Config, job_id_: str) -> dict[str, Any] | None:
    """The job's record while it is in `running/` (None before and after)."""
    try:
        return job_file(config, job_id_, "running")
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def step_reported(config: Config, job_id_: str, msg_en: str) -> bool:
    """True once a step of the job, running in the worker, reported `msg_en`."""
    return any(e.get("msg_en") == msg_en for e in events_of(config, job_id_))


def test_300_jobs_from_3_concurrent_writers_complete_exactly_once(bare_site: Config) -> None:
    with running(bare_site):
        writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(bare_site.config_path),
                                     "100", f"w{n}"]) for n in range(3)]
        assert [w.wait(120) for w in writers] == [0, 0, 0]
        done = bare_site.state.job_dir("done")
        wait_for(lambda: len(list(done.glob("*-ping.json"))) >= 301, 180, "301 done jobs")
    jobs = [json.loads(p.read_text()) for p in done.glob("*.json")]
    submitted = [j for j in jobs if "writer" in j["params"]]
    assert sorted((j["params"]["writer"], j["params"]["n"]) for j in submitted) == sorted(
        (f"w{w}", n) for w in range(3) for n in range(100))
    assert all(j["state"] == "done" and j["result"] == {"pong": True} for j in submitted)
    per_job = Counter((e["job"], e["step"]) for e in read_events(bare_site.state.events)
                      if "attempt" in e or e["step"] in ("done", "failed"))
    for job in submitted:
        assert per_job[(job["id"], "ping")] == 1 and per_job[(job["id"], "done")] == 1
    assert not any(per_job[(j["id"], "failed")] for j in submitted)
    for state in ("queue", "running", "failed"):
        assert list(bare_site.state.job_dir(state).iterdir()) == []


def test_a_job_file_written_in_place_is_not_run_half_read(bare_site: Config) -> None:
    name = new_job_name("wait")
    text = json.dumps({"kind": "wait", "params": {"seconds": 0, "note": "complete"}})
    with running(bare_site) as runner:
        with open(bare_site.state.queue / name, "w", encoding="utf-8") as f:
            f.write(text[:15])
            f.flush()
            # Longer than the runner's 1 s rescan, shorter than its 2 s settle time: the
            # runner sees the partial file several times and must leave it alone.
            time.sleep(1.3)
            f.write(text[15:])
        job = runner.spool.wait(job_id(name), 30)
    assert job["state"] == "done", job
    assert job["params"] == {"seconds": 0, "note": "complete"}
    assert step_starts(bare_site, job_id(name)) == {"wait": 1}
    assert not (bare_site.state.job_dir("failed") / (name + ".reason.txt")).exists()


def test_a_file_that_never_becomes_json_fails_with_a_reason_beside_it(bare_site: Config) -> None:
    with running(bare_site) as runner:
        (bare_site.state.spool_tmp / "broken.json").write_text("{not json", encoding="utf-8")
        os.replace(bare_site.state.spool_tmp / "broken.json", bare_site.state.queue / "broken.json")
        failed = bare_site.state.job_dir("failed") / "broken.json"
        wait_for(failed.exists, 20, "the file in failed/")
        reason = failed.with_name("broken.json.reason.txt")  # written before the move
        assert failed.read_text() == "{not json"
        assert "broken.json: not a valid JSON job file" in reason.read_text()
        assert runner.run("ping")["state"] == "done"


def test_a_file_of_any_name_dropped_into_the_queue_is_a_job(bare_site: Config) -> None:
    """Not only `*.json`: what a person drops by hand is run, or rejected with its reason,
    never left lying in the queue unexplained. A folder there is left alone, and so is a
    named pipe (reading one would block the runner for good)."""
    dropped = {"noext": '{"kind": "ping"}', "Upper.JSON": '{"kind": "ping"}',
               "notes.txt": "apply the update on Monday"}
    (bare_site.state.queue / "old").mkdir()
    os.mkfifo(bare_site.state.queue / "a-pipe.json")
    with running(bare_site) as runner:
        for name, text in dropped.items():
            (bare_site.state.spool_tmp / name).write_text(text, encoding="utf-8")
            os.replace(bare_site.state.spool_tmp / name, bare_site.state.queue / name)
        assert runner.spool.wait("noext", 20)["result"] == {"pong": True}
        failed = bare_site.state.job_dir("failed") / "notes.txt"
        wait_for(failed.exists, 20, "notes.txt in failed/")
        reason = failed.with_name("notes.txt.reason.txt").read_text()
        assert "notes.txt: not a valid JSON job file" in reason
        assert runner.spool.wait("Upper.JSON", 20)["id"] == "Upper"
        assert runner.run("ping")["state"] == "done"
    assert sorted(p.name for p in bare_site.state.queue.iterdir()) == ["a-pipe.json", "old"]
    shown = cli("jobs", "ls", "--state", "failed", config=bare_site.config_path).stdout
    assert "notes.txt" in shown and "not a valid JSON" in shown and ".reason.txt" not in shown


def test_a_hand_written_run_record_is_refused_or_ignored_never_trusted(bare_site: Config) -> None:
    """A malformed `steps` once stopped the runner at every start (and an apply left in
    running/ blocked every update); forged steps marked done must not skip a step."""
    forged = {"kind": "ping", "steps": [{"name": "ping", "state": "done", "result": {"x": 1}}]}
    with running(bare_site) as runner:
        for name, text in (("nulls.json", '{"kind": "apply", "steps": [null]}'),
                           ("forged.json", json.dumps(forged))):
            (bare_site.state.spool_tmp / name).write_text(text, encoding="utf-8")
            os.replace(bare_site.state.spool_tmp / name, bare_site.state.queue / name)
        assert runner.spool.wait("forged", 20)["result"] == {"pong": True}
        assert step_starts(bare_site, "forged") == {"ping": 1}
        rejected = runner.spool.wait("nulls", 20)
        assert rejected["state"] == "failed" and '"steps" must be a list' in rejected["error"]
        assert runner.run("ping")["state"] == "done"
    assert list(bare_site.state.job_dir("running").iterdir()) == []


def test_a_hanging_step_is_stopped_at_its_timeout_and_the_runner_goes_on(bare_site: Config) -> None:
    write_kind(bare_site, "hang", "steps:\n  - {name: wait, timeout_s: 0.5}\n")
    with running(bare_site) as runner:
        started = time.monotonic()
        job = runner.run("hang", seconds=600)
        took = time.monotonic() - started
        assert runner.run("ping")["state"] == "done"
    assert job["state"] == "failed"
    assert "did not finish within its timeout of 0.5 s" in job["error"]
    assert job["error_type"] == "StepTimeoutError"
    assert 0.5 <= took < 15


def test_bad_kinds_fail_the_job_with_a_message_naming_the_file(bare_site: Config) -> None:
    write_kind(bare_site, "badyaml", "steps: [ping\n")
    write_kind(bare_site, "badstep", "steps: [ping, no_such_step]\n")
    write_kind(bare_site, "badpolicy", "steps:\n  - {name: ping, timeout_s: -1, colour: red}\n")
    jobs_dir = bare_site.install_path / "jobs"
    expected = {
        "nosuchkind": "unknown job kind 'nosuchkind': no nosuchkind.yaml in " + str(jobs_dir),
        "badyaml": f"{jobs_dir / 'badyaml.yaml'}: not valid YAML",
        "badstep": f"{jobs_dir / 'badstep.yaml'}: unknown step(s) no_such_step",
        "badpolicy": f"{jobs_dir / 'badpolicy.yaml'}: invalid job kind: steps.0.timeout_s",
    }
    with running(bare_site) as runner:
        ids = {kind: runner.spool.submit(kind) for kind in expected}
        results = {kind: runner.spool.wait(ident, 30) for kind, ident in ids.items()}
        assert runner.run("ping")["state"] == "done"
    for kind, message in expected.items():
        assert results[kind]["state"] == "failed"
        assert message in results[kind]["error"], results[kind]["error"]
    assert "colour: Extra inputs are not permitted" in results["badpolicy"]["error"]


def _exited(pid: int) -> bool:
    return not pid_alive(pid)


def test_kill_9_mid_job_resumes_at_the_first_unfinished_step(bare_site: Config) -> None:
    write_kind(bare_site, "slow", "steps: [ping, wait]\n")
    runner = RunnerProcess(bare_site).start().ready()
    try:
        ident = runner.spool.submit("slow", {"seconds": 3})
        wait_for(lambda: step_reported(bare_site, ident, "2 s more"), 30, "the wait step's progress")
        worker_pids = runner.children()
        runner.kill()
        before = running_record(bare_site, ident)
    finally:
        runner.stop()
    assert worker_pids
    for pid in worker_pids:  # an orphaned worker would run the step twice at once
        wait_for(functools.partial(_exited, pid), 10, f"the orphaned worker {pid} to exit")
    assert before is not None and before["steps"][0]["state"] == "done"
    with running(bare_site) as runner:
        job = runner.spool.wait(ident, 30)
    assert job["state"] == "done"
    assert step_starts(bare_site, ident) == {"ping": 1, "wait": 2}
    assert job["steps"][0]["started"] == before["steps"][0]["started"]
    assert job["result"]["waited_s"] == 3.0
    pcts = [e["pct"] for e in events_of(bare_site, ident)]
    assert pcts == sorted(pcts) and pcts[-1] == 100  # the bar never went back on resume
    assert max(p for p in pcts if p < 100) > 50  # the interrupted step had reported progress


def test_a_second_runner_on_the_same_state_dir_refuses(bare_site: Config) -> None:
    with running(bare_site) as runner:
        second = cli("runner", config=bare_site.config_path, timeout=60)
        assert runner.proc is not None and runner.proc.poll() is None
    assert_one_line_error(second, "another runner is already running for this site")
    assert second.returncode == 7


def test_a_step_is_retried_as_its_policy_says(bare_site: Config) -> None:
    write_kind(bare_site, "patient",
               "steps:\n  - {name: wait, timeout_s: 0.5, retries: 20, retry_delay_s: 0}\n")
    write_kind(bare_site, "impatient",
               "steps:\n  - {name: wait, params: {seconds: 60}, timeout_s: 0.3, retries: 2,"
               " retry_delay_s: 0}\n")
    with running(bare_site) as runner:
        until = iso(utcnow() + timedelta(seconds=2.5))
        patient = runner.run("patient", until=until)
        impatient = runner.run("impatient", seconds=0)  # the kind's params win over the job's
    assert patient["state"] == "done", patient
    attempts = patient["steps"][0]["attempt"]
    assert attempts >= 2 and step_starts(bare_site, patient["id"]) == {"wait": attempts}
    assert impatient["state"] == "failed"
    assert impatient["steps"][0]["attempt"] == 3
    assert step_starts(bare_site, impatient["id"]) == {"wait": 3}


FRAGILE = """\
description: fails in its second step, then cleans up
steps:
  - ping
  - {name: wait, params: {seconds: 60}, timeout_s: 0.3}
on_failure:
  - {name: wait, params: {seconds: %s}}
"""


def test_on_failure_steps_run_after_a_failure(bare_site: Config) -> None:
    write_kind(bare_site, "fragile", FRAGILE % 0)
    with running(bare_site) as runner:
        job = runner.run("fragile")
    assert job["state"] == "failed"
    assert job["error"].startswith("step wait failed: step 'wait' did not finish within")
    assert [(s["phase"], s["state"]) for s in job["steps"]] == [
        ("main", "done"), ("main", "failed"), ("on_failure", "done")]
    assert job["result"] == {"pong": True, "waited_s": 0.0, "waited_until": job["result"]["waited_until"]}


def test_on_failure_steps_are_resumed_after_a_crash(bare_site: Config) -> None:
    write_kind(bare_site, "fragile", FRAGILE % 2)
    runner = RunnerProcess(bare_site).start().ready()
    try:
        ident = runner.spool.submit("fragile")
        wait_for(lambda: step_reported(bare_site, ident, "waiting 2 s"), 30,
                 "the on_failure step to run")
        runner.kill()
    finally:
        runner.stop()
    with running(bare_site) as runner:
        job = runner.spool.wait(ident, 30)
    assert job["state"] == "failed"
    assert [(s["phase"], s["state"]) for s in job["steps"]] == [
        ("main", "done"), ("main", "failed"), ("on_failure", "done")]
    assert step_starts(bare_site, ident) == {"ping": 1, "wait": 1 + 2}
    assert "did not finish within its timeout" in job["error"]


def test_a_job_final_but_not_yet_moved_is_moved_without_running_again(bare_site: Config) -> None:
    name = new_job_name("ping")
    job = {**new_job("ping"), "id": job_id(name), "state": "failed", "error": "boom",
           "steps": [{"name": "ping", "phase": "main", "state": "failed", "error": "boom"}]}
    (bare_site.state.job_dir("running") / name).write_bytes(encode_job(job))
    with running(bare_site) as runner:
        final = runner.spool.wait(job_id(name), 30)
    assert final["state"] == "failed" and final["error"] == "boom"
    assert step_starts(bare_site, job_id(name)) == {}


def test_a_finished_job_moved_back_into_the_queue_runs_again_from_the_start(
        bare_site: Config) -> None:
    with running(bare_site) as runner:
        first = runner.run("wait", seconds="soon")
        assert first["state"] == "failed"
        name = first["id"] + ".json"
        os.replace(bare_site.state.job_dir("failed") / name, bare_site.state.queue / name)
        wait_for(lambda: (bare_site.state.job_dir("failed") / name).exists(), 30, "the rerun")
    again = json.loads((bare_site.state.job_dir("failed") / name).read_text())
    assert again["retried_from"] == "failed" and len(again["steps"]) == 1
    assert step_starts(bare_site, first["id"]) == {"wait": 2}


def test_spool_submit_outside_a_site_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="does not exist; is this a site"):
        Spool(StatePaths(tmp_path / "nowhere")).submit("ping")


def test_jobs_add_wait_reports_the_outcome(bare_site: Config) -> None:
    with running(bare_site):
        ok = cli("jobs", "add", "ping", "--wait", "30", config=bare_site.config_path)
        bad = cli("jobs", "add", "wait", "-p", "seconds=x", "--wait", "30",
                  config=bare_site.config_path)
    assert ok.returncode == 0 and ok.stdout.splitlines()[1] == "done", ok
    assert job_file(bare_site, ok.stdout.splitlines()[0], "done")["pct"] == 100
    assert_one_line_error(bad, "failed: step wait failed: wait: seconds 'x' is not a number")
    assert bad.returncode == 5


def test_a_worker_killed_while_idle_is_replaced_before_the_next_step(bare_site: Config) -> None:
    with running(bare_site) as runner:
        for pid in runner.children():  # as the OOM killer would
            os.kill(pid, signal.SIGKILL)
        job = runner.run("ping")
        assert runner.proc is not None and runner.proc.poll() is None
    assert job["state"] == "done", job
    assert step_starts(bare_site, job["id"]) == {"ping": 1}
