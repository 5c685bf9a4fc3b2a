"""The backup's zip writer: what it writes is what `zipfile` (and so the rollback) reads."""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

import pytest

from autotel.apply import storedzip
from autotel.apply.storedzip import WHOLE, StoredZipWriter

SIZES = {"empty.txt": 0, "one.txt": 1, "whole.bin": WHOLE, "big.bin": WHOLE + 1,
         "bigger.bin": 3 * WHOLE + 5, "тека/дані.csv": 4096}


def _write_files(root: Path) -> dict[str, bytes]:
    contents = {name: os.urandom(size) for name, size in SIZES.items()}
    for name, data in contents.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return contents


def _zip_of(root: Path, names: list[str], out: Path) -> bytes:
    with open(out, "wb") as f:
        archive = StoredZipWriter(f)
        for name in names:
            archive.add_file(root / name, "files/" + name)
        archive.add_bytes("index.json", b'{"format": 2}')
        archive.close()
    return out.read_bytes()


def _assert_reads_back(out: Path, contents: dict[str, bytes]) -> None:
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == [f"files/{n}" for n in contents] + ["index.json"]
        for name, data in contents.items():
            info = archive.getinfo("files/" + name)
            assert (info.compress_type, info.file_size) == (zipfile.ZIP_STORED, len(data))
            assert archive.read(info) == data
        assert archive.read("index.json") == b'{"format": 2}'


def test_every_size_reads_back_with_its_crc_and_permissions(tmp_path: Path) -> None:
    contents = _write_files(tmp_path / "src")
    tool = tmp_path / "src/tool.sh"
    tool.write_bytes(b"#!/bin/sh\n")
    tool.chmod(0o755)
    os.utime(tool, (0, 0))  # 1970: before anything a zip can say
    contents["tool.sh"] = b"#!/bin/sh\n"

    _zip_of(tmp_path / "src", list(contents), tmp_path / "out.zip")

    _assert_reads_back(tmp_path / "out.zip", contents)
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        info = archive.getinfo("files/tool.sh")
        assert info.date_time[0] == 1980
        if os.name != "nt":
            assert stat.S_IMODE(info.external_attr >> 16) == 0o755


def test_sizes_offsets_and_counts_past_the_32_bit_fields_go_into_zip64_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As CPython's zipfile tests do, the limits are lowered instead of writing 4 GiB."""
    monkeypatch.setattr(storedzip, "ZIP64_LIMIT", 2000)
    monkeypatch.setattr(storedzip, "ZIP64_COUNT_LIMIT", 3)
    contents = _write_files(tmp_path / "src")

    data = _zip_of(tmp_path / "src", list(contents), tmp_path / "out.zip")

    assert b"PK\x06\x06" in data and b"PK\x06\x07" in data, "zip64 end records"
    _assert_reads_back(tmp_path / "out.zip", contents)


def test_a_file_that_grows_while_it_is_read_stops_the_backup(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake (another program writing): the size seen when the file is opened is 100 bytes
    short of what is then read, as if a writer appended in between."""
    source = tmp_path / "log.txt"
    source.write_bytes(b"x" * 5000)
    real_fstat = os.fstat

    def fstat_before_the_append(fd: int) -> os.stat_result:
        info = list(real_fstat(fd))
        info[stat.ST_SIZE] -= 100
        return os.stat_result(info)

    monkeypatch.setattr("autotel.apply.storedzip.os.fstat", fstat_before_the_append)
    with open(tmp_path / "out.zip", "wb") as f, pytest.raises(OSError, match="changed while"):
        StoredZipWriter(f).add_file(source, "log.txt")
