"""The pending-update store and unpacking verified content, on real files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from autotel.config import Config, load_config
from autotel.errors import PackageError, SignatureError, StateError
from autotel.package.pending import clear_pending, read_pending, store_pending
from autotel.package.unpack import read_migrations
from autotel.package.verify import verify_package
from autotel.package.zipread import file_sha256
from tests.package_support import craft, sha, tree

APP = {"portal/main.py": b"print(1)\n", "lib/deep/util.py": b"y = 2\n"}
SQL = {"0013_b.sql": b"SELECT 2;\n", "0012_a.sql": b"SELECT 1;\n"}


def stored(config: Config, tmp_path: Path, key: Path, version: str) -> Path:
    package = craft(tmp_path / f"{version}.zip", key, APP, manifest={"version": version})
    return store_again(config, package, version)


def store_again(config: Config, package: Path, version: str) -> Path:
    """Upload and store `package` (the same bytes, whenever it is sent)."""
    upload = config.state.incoming / f"up-{version}.zip"
    upload.write_bytes(package.read_bytes())
    manifest = verify_package(upload, config, installed_version="1.0.0")
    store_pending(config.state, upload, manifest, file_sha256(upload))
    return package


def test_store_read_replace_clear(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    assert read_pending(bare_site.state) is None
    first = stored(bare_site, tmp_path, admin_keys[0], "1.2.0")
    pending = read_pending(bare_site.state, verify_sha256=True)
    assert pending is not None
    assert (pending.version, pending.sha256, pending.notes) == (
        "1.2.0",
        sha(first.read_bytes()),
        "Додано журнал тривог.",
    )
    stored(bare_site, tmp_path, admin_keys[0], "1.3.0")
    assert sorted(tree(bare_site.state.pending)) == ["meta.json", "update_v1.3.0.zip"]
    assert not clear_pending(bare_site.state, only_sha256=sha(first.read_bytes()))
    assert read_pending(bare_site.state) is not None
    assert clear_pending(bare_site.state)
    assert read_pending(bare_site.state) is None and tree(bare_site.state.pending) == {}


def test_a_stored_zip_altered_on_disk_is_caught(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = stored(bare_site, tmp_path, admin_keys[0], "1.2.0")
    path = bare_site.state.pending / "update_v1.2.0.zip"
    with open(path, "r+b") as f:
        f.seek(10)
        f.write(b"\xff")
    assert read_pending(bare_site.state) is not None  # cheap read: no hashing
    with pytest.raises(StateError, match="was altered"):
        read_pending(bare_site.state, verify_sha256=True)
    # The same package sent again (built anew, its manifest's time could differ by a second).
    store_again(bare_site, package, "1.2.0")  # a damaged one counts as none
    assert read_pending(bare_site.state, verify_sha256=True) is not None


def test_a_crash_between_zip_and_meta_leaves_the_old_pending(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    stored(bare_site, tmp_path, admin_keys[0], "1.2.0")
    (bare_site.state.pending / "update_v1.3.0.zip").write_bytes(b"stray from a crash")
    pending = read_pending(bare_site.state, verify_sha256=True)
    assert pending is not None and pending.version == "1.2.0"
    stored(bare_site, tmp_path, admin_keys[0], "1.4.0")
    assert sorted(tree(bare_site.state.pending)) == ["meta.json", "update_v1.4.0.zip"]


def test_unreadable_meta_is_a_clear_error(bare_site: Config) -> None:
    (bare_site.state.pending / "meta.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(StateError, match="unreadable pending-update record"):
        read_pending(bare_site.state)


def test_migrations_are_read_in_name_order(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, migrations=SQL)
    manifest = verify_package(package, bare_site, installed_version="1.0.0")
    assert read_migrations(package, manifest) == [
        ("0012_a.sql", "SELECT 1;\n"),
        ("0013_b.sql", "SELECT 2;\n"),
    ]


def test_a_migration_swapped_after_verifying_is_refused(
    bare_site: Config, tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    package = craft(tmp_path / "p.zip", admin_keys[0], APP, migrations=SQL)
    manifest = verify_package(package, bare_site, installed_version="1.0.0")
    craft(
        tmp_path / "p.zip",
        None,
        APP,
        signature=b"x",
        migrations={**SQL, "0012_a.sql": b"DROP x;\n"},
    )
    with pytest.raises(SignatureError, match=re.escape("migrations/0012_a.sql sha256 mismatch")):
        read_migrations(package, manifest)


def test_the_sites_own_files_are_protected_wherever_configured(
    tmp_path: Path, admin_keys: tuple[Path, Path]
) -> None:
    install = tmp_path / "plant"
    (install / "conf/trust").mkdir(parents=True)
    (install / "conf/trust/admin.pem").write_bytes(admin_keys[1].read_bytes())
    (install / "conf/site.yaml").write_text(
        "state_dir: var/autotel\ntrusted_keys: [trust/admin.pem]\ninstall_dir: ..\n",
        encoding="utf-8",
    )
    config = load_config(install / "conf/site.yaml")
    config.state.create()
    for path in ["conf/site.yaml", "conf/trust/ADMIN.pem", "conf/var/autotel/version.txt"]:
        package = craft(tmp_path / "p.zip", admin_keys[0], {path: b"x"})
        with pytest.raises(PackageError, match="is protected"):
            verify_package(package, config, installed_version="1.0.0")
    package = craft(tmp_path / "p.zip", admin_keys[0], {"conf/other.yaml": b"x"})
    assert verify_package(package, config, installed_version="1.0.0").version == "1.2.0"
