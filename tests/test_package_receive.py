"""The `receive` job, run by a real runner (thread + step worker process): every
rejection of issue 4, each asserting the error class the agent maps to its answer,
that the upload is gone and that nothing new appeared under `pending_update/`."""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from autotel.config import Config, load_config
from autotel.package.pending import clear_pending, read_pending
from autotel.runner.events import read_events
from autotel.runner.loop import Runner
from autotel.site.create import SiteOptions, create_site
from autotel.spool.queue import Spool
from autotel.timeutil import iso
from tests.package_support import Upload, craft, sha, stage_upload, symlink_info, tree

APP = {"portal/main.py": b"print('v1.2.0')\n", "collector/normalizer.py": b"x = 1\n"}
SQL = {"0012_add_alarms.sql": b"CREATE TABLE alarms (id int);\n"}


@pytest.fixture(scope="module")
def receiver(
    tmp_path_factory: pytest.TempPathFactory, admin_keys: tuple[Path, Path]
) -> Iterator[Config]:
    """One site (installed 1.0.0, trusting the admin key) with its runner running."""
    created = create_site(
        tmp_path_factory.mktemp("recv") / "site",
        SiteOptions(client_id="plant_R", public_keys=[admin_keys[1]], pin="1"),
    )
    config = load_config(created.config_path)
    stop = threading.Event()
    thread = threading.Thread(target=Runner(config, stop).run_forever, daemon=True)
    thread.start()
    yield config
    stop.set()
    thread.join(30)


def run_receive(config: Config, upload: Upload) -> dict[str, Any]:
    spool = Spool(config.state)
    return spool.wait(spool.submit("receive", upload.params()), timeout_s=60)


def assert_refused(
    config: Config, upload: Upload, error_type: str, *needles: str
) -> dict[str, Any]:
    before = tree(config.state.pending)
    job = run_receive(config, upload)
    assert job["state"] == "failed", job
    assert job["error_type"] == error_type, job["error"]
    for needle in needles:
        assert needle in job["error"], job["error"]
    assert tree(config.state.pending) == before
    assert not upload.path.exists()
    return job


# -- signature, listing and hashes: 400 invalid_sig ------------------------------------------


def test_signed_by_an_untrusted_key(receiver: Config, tmp_path: Path, stranger_key: Path) -> None:
    package = craft(tmp_path / "p.zip", stranger_key, APP)
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "does not verify",
    )


def test_manifest_altered_after_signing(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    good = craft(tmp_path / "good.zip", admin_keys[0], APP)
    signature = zipfile.ZipFile(good).read("manifest.sig")
    bad = craft(
        tmp_path / "bad.zip", None, APP, manifest={"notes": "harmless"}, signature=signature
    )
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, bad),
        "SignatureError",
        "manifest.sig does not verify",
    )


@pytest.mark.parametrize("drop", ["manifest.sig", "manifest.json"])
def test_unsigned_or_without_manifest(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], drop: str
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, drop=[drop])
    upload = stage_upload(
        receiver.state.incoming, package, signature="AAAA" if drop == "manifest.sig" else None
    )
    assert_refused(receiver, upload, "SignatureError", f"no {drop}")


def test_file_altered_after_signing(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    evil = b"print('pwned')\n"[: len(APP["portal/main.py"])].ljust(len(APP["portal/main.py"]), b"#")
    entries = {
        "files/portal/main.py": evil,
        "files/collector/normalizer.py": APP["collector/normalizer.py"],
    }
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, entries=entries)
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "files/portal/main.py sha256 mismatch",
        sha(APP["portal/main.py"])[:12],
    )


def test_file_of_another_size(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    entries = {f"files/{p}": b + b"\n# more" for p, b in APP.items()}
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, entries=entries)
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "size mismatch (manifest",
        "bytes, zip",
    )


def test_migration_altered_after_signing(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(
        tmp_path / "p.zip",
        admin_keys[0],
        APP,
        migrations=SQL,
        drop=["migrations/0012_add_alarms.sql"],
        extra=[("migrations/0012_add_alarms.sql", b"DROP TABLE readings;\n")],
    )
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "migrations/0012_add_alarms.sql sha256 mismatch",
    )


def test_unlisted_entry(receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    package = craft(
        tmp_path / "p.zip", admin_keys[0], APP, extra=[("files/portal/backdoor.py", b"x")]
    )
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "files/portal/backdoor.py is not listed",
    )


def test_listed_entry_missing(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, drop=["files/collector/normalizer.py"])
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "SignatureError",
        "files/collector/normalizer.py is listed in the manifest but missing",
    )


def test_signature_header_differs(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], stranger_key: Path
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    other = stage_upload(tmp_path / "x", craft(tmp_path / "o.zip", stranger_key, APP))
    upload = stage_upload(receiver.state.incoming, package, signature=other.signature)
    assert_refused(receiver, upload, "SignatureError", "X-Manifest-Signature differs")


def test_signature_header_not_base64(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    upload = stage_upload(receiver.state.incoming, package, signature="not base64!")
    assert_refused(receiver, upload, "SignatureError", "not base64")


def test_version_header_differs(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    upload = stage_upload(receiver.state.incoming, package, version="1.3.0")
    assert_refused(receiver, upload, "SignatureError", "X-Update-Version is '1.3.0'", "'1.2.0'")


# -- unsafe content, re-signed with the admin key: 400 invalid_package ------------------------

UNSAFE = {
    "dotdot": ("../evil.py", "'..' leaves the install directory"),
    "dotdot-inside": ("portal/../../evil.py", "'..' leaves the install directory"),
    "absolute": ("/etc/cron.d/evil", "absolute path"),
    "drive": ("C:/Windows/evil.dll", "drive letter"),
    "drive-relative": ("C:evil.dll", "drive letter"),
    "backslash": ("portal\\main.py", "backslash"),
    "backslash-dotdot": ("..\\..\\evil.py", "backslash"),
    "stream": ("license.dat::$DATA", "NTFS stream"),
    "trailing-dot": ("license.dat.", "ends with a dot"),
    "device": ("portal/con.py", "device name"),
    "long-name": ("portal/" + "x" * 300 + ".py", "longer than 255 bytes"),
    "deep": ("/".join(["a"] * 2000), "2000 folders deep"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_path(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], case: str
) -> None:
    path, reason = UNSAFE[case]
    package = craft(tmp_path / "p.zip", admin_keys[0], {path: b"evil\n"})
    assert_refused(receiver, stage_upload(receiver.state.incoming, package), "PackageError", reason)


def test_a_path_too_long_for_this_site_is_refused_on_arrival(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    """4,095 bytes here: the work folders under the state directory must fit it too."""
    room = 4095 - len(str(receiver.state.staging / ("apply-" + "x" * 64) / "replaced" / ""))
    deep = "/".join(["f" * 200] * (room // 201 + 1))
    package = craft(tmp_path / "p.zip", admin_keys[0], {**APP, deep: b"x\n"})
    assert_refused(receiver, stage_upload(receiver.state.incoming, package), "PackageError",
                   "characters on this site, more than the 4095 its system allows")


def test_symlink_entry(receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    target = b"/etc/passwd"
    package = craft(
        tmp_path / "p.zip",
        admin_keys[0],
        {"portal/link": target},
        entries={},
        extra=[(symlink_info("files/portal/link"), target)],
    )
    assert_refused(
        receiver, stage_upload(receiver.state.incoming, package), "PackageError", "symbolic link"
    )


@pytest.mark.parametrize("second", ["PORTAL/Main.py", "./portal/main.py", "portal//main.py"])
def test_duplicate_after_normalisation(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], second: str
) -> None:
    files = {"portal/main.py": b"a\n", second: b"b\n"}
    package = craft(tmp_path / "p.zip", admin_keys[0], files)
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        "name the same file",
    )


def test_duplicate_zip_entry(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(
        tmp_path / "p.zip",
        admin_keys[0],
        APP,
        extra=[("files/portal/main.py", APP["portal/main.py"])],
    )
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        "files/portal/main.py appears 2 times",
    )


def test_duplicate_zip_entry_with_other_content(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(
        tmp_path / "p.zip", admin_keys[0], APP, extra=[("files/portal/main.py", b"evil")]
    )
    assert_refused(receiver, stage_upload(receiver.state.incoming, package), "SignatureError")


@pytest.mark.parametrize(
    "path",
    [
        "license.dat",
        "LICENSE.DAT",
        "License/_core.pyd",
        "license/__init__.py",
        "config.txt",
        "credentials.env",
        "autotel.yaml",
        "keys/admin.pem",
        "state/version.txt",
        "./Config.TXT",
        "keys",
    ],
)
def test_protected_file(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], path: str
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], {**APP, path: b"replaced\n"})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        "is protected",
        "may never replace it",
    )


def test_expired(receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    yesterday = iso(datetime.now(UTC) - timedelta(days=1))
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"expires": yesterday})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        f"expired at {yesterday}",
    )


def test_other_product(receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"product": "othertel"})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        "'othertel'",
        "'autotel'",
    )


@pytest.mark.parametrize("signed", [True, False])
def test_zip_bomb(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], signed: bool
) -> None:
    bomb = bytes(64 * 1024 * 1024)  # 64 MiB of zeros deflate to ~64 KiB
    files = {"data/zeros.bin": bomb} if signed else APP
    extra = [] if signed else [("files/data/zeros.bin", bomb)]
    package = craft(tmp_path / "p.zip", admin_keys[0], files, extra=extra)
    assert package.stat().st_size < 1024 * 1024
    assert_refused(
        receiver, stage_upload(receiver.state.incoming, package), "PackageError", "zip bomb"
    )


def test_not_a_zip(receiver: Config, tmp_path: Path) -> None:
    garbage = tmp_path / "p.zip"
    garbage.write_bytes(b"PK\x03\x04 but not really a zip" * 100)
    upload = stage_upload(receiver.state.incoming, garbage, version="1.2.0", signature="AAAA")
    assert_refused(receiver, upload, "PackageError", "not a zip archive")


def test_invalid_manifest_despite_valid_signature(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"files": [{"path": "a"}]})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "PackageError",
        "manifest.json is invalid",
    )


# -- versions: 409 same_version ------------------------------------------------------------


@pytest.mark.parametrize("version", ["1.0.0", "0.9.9", "1.0.0-rc.1"])
def test_not_newer_than_installed(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path], version: str
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, manifest={"version": version})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, package),
        "NotNewerError",
        "not newer than the installed 1.0.0",
    )


# -- acceptance and the pending rules ------------------------------------------------------


def test_accepted_package_becomes_pending(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    clear_pending(receiver.state)
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, migrations=SQL)
    upload = stage_upload(receiver.state.incoming, package)
    job = run_receive(receiver, upload)
    assert job["state"] == "done", job.get("error")
    assert job["result"]["version"] == "1.2.0" and job["result"]["stored"] is True
    pending = read_pending(receiver.state, verify_sha256=True)
    assert pending is not None and pending.version == "1.2.0"
    assert pending.path == receiver.state.pending / "update_v1.2.0.zip"
    assert pending.path.read_bytes() == package.read_bytes()
    assert pending.sha256 == sha(package.read_bytes())
    meta = json.loads((receiver.state.pending / "meta.json").read_text(encoding="utf-8"))
    assert {"version", "notes", "received_at", "sha256"} <= set(meta)
    assert meta["notes"] == "Додано журнал тривог."
    assert not upload.path.exists()
    mine = [e for e in read_events(receiver.state.events) if e.get("job") == job["id"]]
    assert any(e["msg"] == "Отримано оновлення v1.2.0" for e in mine)
    spool = Spool(receiver.state)
    stage = next(j for j in spool.all_jobs()
                 if j["kind"] == "stage" and j["params"] == {"sha256": pending.sha256})
    assert spool.wait(stage["id"], 60)["result"]["staged"] is True, "unpacked ahead"


def test_identical_resend_changes_nothing(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    clear_pending(receiver.state)
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    assert run_receive(receiver, stage_upload(receiver.state.incoming, package))["state"] == "done"
    before = tree(receiver.state.pending)
    upload = stage_upload(receiver.state.incoming, package)
    job = run_receive(receiver, upload)
    assert job["state"] == "done" and job["result"]["stored"] is False
    assert tree(receiver.state.pending) == before
    assert not upload.path.exists()


def test_same_version_as_pending_with_other_content(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    clear_pending(receiver.state)
    first = craft(tmp_path / "a.zip", admin_keys[0], APP)
    assert run_receive(receiver, stage_upload(receiver.state.incoming, first))["state"] == "done"
    second = craft(tmp_path / "b.zip", admin_keys[0], {**APP, "portal/extra.py": b"y\n"})
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, second),
        "NotNewerError",
        "already pending with other content",
    )
    pending = read_pending(receiver.state)
    assert pending is not None and pending.sha256 == sha(first.read_bytes())


def test_newer_replaces_pending_and_older_does_not(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    clear_pending(receiver.state)
    old = craft(tmp_path / "a.zip", admin_keys[0], APP, manifest={"version": "1.2.0"})
    new = craft(tmp_path / "b.zip", admin_keys[0], APP, manifest={"version": "1.3.0"})
    assert run_receive(receiver, stage_upload(receiver.state.incoming, old))["state"] == "done"
    job = run_receive(receiver, stage_upload(receiver.state.incoming, new))
    assert job["state"] == "done" and job["result"]["replaced"] == "1.2.0"
    assert sorted(tree(receiver.state.pending)) == ["meta.json", "update_v1.3.0.zip"]
    assert_refused(
        receiver,
        stage_upload(receiver.state.incoming, old),
        "NotNewerError",
        "1.3.0 is already pending",
    )


def test_upload_outside_incoming_is_never_touched(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    upload = Upload(package, "1.2.0", "")
    job = run_receive(receiver, upload)
    assert job["state"] == "failed" and job["error_type"] == "JobError"
    assert package.exists()


def test_a_run_resumed_after_storing_reports_success(
    receiver: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    clear_pending(receiver.state)
    package = craft(tmp_path / "p.zip", admin_keys[0], APP)
    assert run_receive(receiver, stage_upload(receiver.state.incoming, package))["state"] == "done"
    gone = Upload(receiver.state.incoming / "upload-gone.zip", "1.2.0", "")
    job = run_receive(receiver, gone)  # as if the runner died after storing, before recording
    assert job["state"] == "done" and job["result"]["stored"] is False
    other = Upload(receiver.state.incoming / "upload-gone.zip", "1.4.0", "")
    assert_refused(receiver, other, "PackageError", "the uploaded file is gone")


def test_a_step_killed_by_its_timeout_still_removes_the_upload(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    kinds = bare_site.install_path / "jobs"
    kinds.mkdir()
    (kinds / "receive.yaml").write_text(
        "steps: [{name: receive, timeout_s: 0.01}]\non_failure: [receive_cleanup]\n",
        encoding="utf-8",
    )
    package = craft(tmp_path / "p.zip", admin_keys[0], {"big.bin": os.urandom(16 << 20)})
    upload = stage_upload(bare_site.state.incoming, package)
    stop = threading.Event()
    thread = threading.Thread(target=Runner(bare_site, stop).run_forever, daemon=True)
    thread.start()
    try:
        job = run_receive(bare_site, upload)
    finally:
        stop.set()
        thread.join(30)
    assert job["state"] == "failed" and job["error_type"] == "StepTimeoutError", job
    assert not upload.path.exists()
    assert tree(bare_site.state.pending) == {}
