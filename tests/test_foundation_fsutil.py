"""Atomic writes: the old file survives any failure and no temporary file is left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autotel.errors import StateError
from autotel.fsutil import append_line, atomic_write_bytes, atomic_write_json, atomic_writer
from autotel.lockfile import ProcessLock


class FailingDisk:
    """A fake for what is outside the product: a disk whose rename fails (full, yanked, AV lock)."""

    def __init__(self, error: OSError) -> None:
        self.error = error
        self.calls: list[tuple[str, str]] = []

    def replace(self, source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        self.calls.append((os.fspath(source), os.fspath(target)))
        raise self.error


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   PermissionError(13, "Access is denied")])
def test_a_failed_replace_keeps_the_old_file_and_leaves_no_temp(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    target = tmp_path / "job.json"
    target.write_bytes(b"old")
    disk = FailingDisk(error)
    monkeypatch.setattr("autotel.fsutil.os.replace", disk.replace)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(target, b"new")
    assert caught.value is error
    assert len(disk.calls) == 1 and disk.calls[0][1] == os.fspath(target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.json"]


def test_an_error_while_writing_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_writer(target) as f:
        f.write(b"half")
        raise RuntimeError("the producer broke")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_write_replaces_the_file_with_the_mode_asked(tmp_path: Path) -> None:
    target = tmp_path / "private.pem"
    atomic_write_bytes(target, b"secret", mode=0o600)
    assert target.read_bytes() == b"secret"
    assert os.stat(target).st_mode & 0o777 == 0o600
    atomic_write_json(target, {"a": "ї"})
    assert target.read_text(encoding="utf-8") == '{\n  "a": "ї"\n}\n'


def test_append_line_adds_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "events.jsonl"
    append_line(log, '{"a": 1}')
    append_line(log, '{"b": 2}\n')
    assert log.read_text() == '{"a": 1}\n{"b": 2}\n'


def test_a_process_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    path = tmp_path / "run" / "runner.lock"
    first = ProcessLock(path, "runner")
    with first:
        assert path.read_text().strip() == str(os.getpid())
        with pytest.raises(StateError, match="another runner is already running for this site"):
            ProcessLock(path, "runner").acquire()
        assert ProcessLock(path, "runner").is_held_elsewhere()
    assert not ProcessLock(path, "runner").is_held_elsewhere()
    with ProcessLock(path, "runner"):
        pass
