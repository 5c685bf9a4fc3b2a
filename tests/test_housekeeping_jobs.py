"""Finished jobs are pruned to the newest N of each outcome; queued and running ones never."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from autotel.config import Config, RetentionConfig, config_from_values
from autotel.errors import ConfigError
from autotel.spool.jobfile import job_id, new_job_name
from autotel.spool.queue import Spool
from autotel.spool.retention import kind_of, prune_finished
from autotel.timeutil import utcnow
from tests.foundation_support import wait_for
from tests.portal_support import runner_thread


def job_files(config: Config, state: str, kinds: list[str]) -> list[str]:
    """Job files named as the spool names them, one a second apart, oldest first."""
    start = utcnow() - timedelta(days=1)
    folder = config.state.job_dir(state)
    names = [new_job_name(kind, start + timedelta(seconds=i)) for i, kind in enumerate(kinds)]
    for name in names:
        (folder / name).write_text(f'{{"kind": "{kind_of(name)}"}}\n')
    return names


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_prune_keeps_exactly_the_newest_n_and_never_touches_queue_or_running(
        bare_site: Config) -> None:
    paths = bare_site.state
    done = job_files(bare_site, "done", ["ping"] * 7)
    failed = job_files(bare_site, "failed", ["export"] * 5)
    reason = paths.job_dir("failed") / (failed[0] + ".reason.txt")
    reason.write_text("not a valid JSON job file\n")
    queued = job_files(bare_site, "queue", ["ping"] * 6)
    running = job_files(bare_site, "running", ["ping"] * 2)
    assert prune_finished(paths, 3) == 4 + 2
    assert listing(paths.job_dir("done")) == done[-3:]
    assert listing(paths.job_dir("failed")) == failed[-3:], "a pruned job's reason file goes too"
    assert listing(paths.job_dir("queue")) == queued
    assert listing(paths.job_dir("running")) == running
    assert prune_finished(paths, 3) == 0


def test_the_newest_apply_job_is_kept_whatever_its_age(bare_site: Config) -> None:
    paths = bare_site.state
    names = job_files(bare_site, "failed", ["apply", "apply", "export", "export", "export"])
    prune_finished(paths, 2)
    assert listing(paths.job_dir("failed")) == [names[1], *names[-2:]], \
        "the portal reads the latest apply's job file to say which step failed"


def test_the_runner_prunes_after_each_job(bare_site: Config) -> None:
    config = bare_site.model_copy(update={"retention": RetentionConfig(keep_finished_jobs=2)})
    spool = Spool(config.state)
    with runner_thread(config):
        ids = []
        for n in range(5):
            ids.append(spool.submit("ping", {"n": n}))
            assert spool.wait(ids[-1], 30)["state"] == "done"
        wait_for(lambda: len(listing(config.state.job_dir("done"))) == 2, 10, "the pruning")
    assert [job_id(n) for n in listing(config.state.job_dir("done"))] == ids[-2:]


def test_the_limits_are_configuration_keys_with_env_overrides(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "autotel.yaml"
    assert config_from_values({}, path).retention == RetentionConfig(
        events_max_mb=10, sessions_max_mb=5, console_log_max_mb=5, keep_finished_jobs=500)
    monkeypatch.setenv("AUTOTEL_RETENTION__KEEP_FINISHED_JOBS", "40")
    config = config_from_values({"retention": {"events_max_mb": 0.5}}, path)
    assert (config.retention.events_max_mb, config.retention.keep_finished_jobs) == (0.5, 40)
    monkeypatch.setenv("AUTOTEL_RETENTION__KEEP_FINISHED_JOBS", "0")
    with pytest.raises(ConfigError, match="retention.keep_finished_jobs: .*from AUTOTEL_RETENTION"):
        config_from_values({}, path)
    with pytest.raises(ConfigError, match="retention.events_max_kb: unknown key"):
        config_from_values({"retention": {"events_max_kb": 1}}, path)
