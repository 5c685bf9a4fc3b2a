"""`autotel push --update`: the package goes after the export, in the same session.

Packages are made by the real `autotel publish`; the verdicts come from the real
agent and its `receive` job. Exit 0 when the site has the package (queued or
same_version), non-zero when it refused it.
"""

from __future__ import annotations

import base64
import os
import zipfile
from pathlib import Path

import pytest

from autotel.admin.offer import UpdateOffer
from autotel.admin.push import push
from autotel.config import Config
from autotel.errors import ConfigError, PackageError
from autotel.package.pending import read_pending
from autotel.package.zipread import file_sha256
from tests.agent_support import running_agent, with_agent
from tests.foundation_support import assert_one_line_error, cli
from tests.push_support import busy, insert_rows, push_request, run_push_cli


def publish(tmp_path: Path, key: Path, version: str, payload: bytes = b"print('new')\n") -> Path:
    source = tmp_path / f"src-{version}"
    (source / "app").mkdir(parents=True, exist_ok=True)
    (source / "app" / "main.py").write_bytes(payload)
    out = tmp_path / "packages"
    done = cli(
        "publish",
        "--version",
        version,
        "--notes",
        f"release {version}",
        "--files",
        "app",
        "--base-dir",
        str(source),
        "--key",
        str(key),
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    return out / f"update_v{version}.zip"


def with_signature(package: Path, signature: bytes) -> Path:
    """A copy of `package` whose manifest.sig is `signature` (a forged package)."""
    forged = package.with_name("forged_" + package.name)
    with zipfile.ZipFile(package) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = signature if info.filename == "manifest.sig" else src.read(info)
            dst.writestr(info, data)
    return forged


def test_update_is_queued_after_the_export(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    package = publish(tmp_path, admin_keys[0], "1.1.0")
    insert_rows(busy_site, 25)
    with running_agent(busy_site) as agent:
        request = push_request(tmp_path, admin_keys, agent.port, update=package)
        result = push(request)
        assert result.export.records == 25
        assert result.update is not None and result.update.status == "queued"
        assert result.update_version == "1.1.0"
        pending = read_pending(busy_site.state)
        assert pending is not None and pending.version == "1.1.0"

        again = run_push_cli(  # the identical package
            tmp_path / "data", admin_keys[0], agent.port, "--update", str(package)
        )
        assert again.returncode == 0, again.stderr
        assert "update v1.1.0: queued" in again.stdout and "0 records" in again.stdout


def test_same_version_exits_0_and_forged_signature_exits_3(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    installed = publish(tmp_path, admin_keys[0], busy_site.state.installed_version())
    newer = publish(tmp_path, admin_keys[0], "2.0.0")
    forged = with_signature(newer, os.urandom(384))
    with running_agent(busy_site) as agent:
        same = run_push_cli(
            tmp_path / "data", admin_keys[0], agent.port, "--update", str(installed)
        )
        assert same.returncode == 0, same.stderr
        assert "same_version" in same.stdout

        refused = run_push_cli(
            tmp_path / "data", admin_keys[0], agent.port, "--update", str(forged)
        )
        assert refused.returncode == 3
        assert "invalid_sig" in refused.stdout  # the summary still reports the export
        assert_one_line_error(refused, "refused update v2.0.0", "invalid_sig")
    assert read_pending(busy_site.state) is None


def test_same_version_with_other_content_says_why_the_site_kept_its_own(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """A fixed package re-published under the pending version is not delivered: exit 0
    (DESIGN.md), but the summary must tell the admin so, and to publish a higher version."""
    busy_site = busy(site)
    first = publish(tmp_path / "first", admin_keys[0], "1.1.0")
    fixed = publish(tmp_path / "fixed", admin_keys[0], "1.1.0", payload=b"print('fixed')\n")
    with running_agent(busy_site) as agent:
        storage = tmp_path / "data"
        assert run_push_cli(storage, admin_keys[0], agent.port, "--update", str(first)).returncode == 0
        again = run_push_cli(storage, admin_keys[0], agent.port, "--update", str(fixed))
    assert again.returncode == 0, again.stderr
    assert "update v1.1.0: same_version (" in again.stdout
    assert "already pending with other content" in again.stdout
    assert "publish a higher version" in again.stdout
    pending = read_pending(busy_site.state)
    assert pending is not None and pending.sha256 == file_sha256(first)


def test_package_over_the_limit_is_too_large(
    site: Config, admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    busy_site = busy(site)
    small_limit = with_agent(busy_site, max_update_mb=1)
    package = publish(tmp_path, admin_keys[0], "1.2.0", payload=os.urandom(3 * 1024 * 1024))
    with running_agent(small_limit) as agent:
        result = push(push_request(tmp_path, admin_keys, agent.port, update=package))
    assert result.update is not None and result.update.status == "too_large"
    assert not result.update.accepted
    assert read_pending(busy_site.state) is None


def test_offer_reads_version_and_raw_signature(
    admin_keys: tuple[Path, Path], tmp_path: Path
) -> None:
    package = publish(tmp_path, admin_keys[0], "3.4.5")
    offer = UpdateOffer.from_zip(package)
    with zipfile.ZipFile(package) as zf:
        assert base64.b64decode(offer.signature_b64) == zf.read("manifest.sig")
    assert offer.version == "3.4.5" and offer.size == package.stat().st_size


def test_offer_refuses_what_is_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        UpdateOffer.from_zip(tmp_path / "missing.zip")
    (tmp_path / "text.zip").write_text("not a zip")
    with pytest.raises(PackageError, match="not a readable zip"):
        UpdateOffer.from_zip(tmp_path / "text.zip")
    with zipfile.ZipFile(tmp_path / "bare.zip", "w") as zf:
        zf.writestr("manifest.json", '{"version": "1.0.0"}')
    with pytest.raises(PackageError, match="manifest.sig"):
        UpdateOffer.from_zip(tmp_path / "bare.zip")
