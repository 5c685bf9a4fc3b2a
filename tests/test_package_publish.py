"""`autotel publish` through the real CLI (a subprocess): reproducible output, the
manifest it writes, interoperability with openssl, and every refusal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from autotel.cli import main as autotel_main
from autotel.config import Config
from autotel.package.verify import verify_package
from autotel.timeutil import parse_iso
from tests.foundation_support import assert_one_line_error, cli
from tests.package_support import sha


@pytest.fixture
def admin(tmp_path: Path, admin_keys: tuple[Path, Path]) -> Path:
    """An admin's working folder: the key, an app tree and a migration."""
    shutil.copyfile(admin_keys[0], tmp_path / "private.pem")
    app = tmp_path / "app"
    for path, text in {
        "portal/main.py": "print('1.2.0')\n",
        "portal/static/app.js": "go();\n",
        "collector/normalizer.py": "x = 1\n",
        "README.txt": "notes\n",
    }.items():
        (app / path).parent.mkdir(parents=True, exist_ok=True)
        (app / path).write_text(text, encoding="utf-8")
    (tmp_path / "sql").mkdir()
    (tmp_path / "sql/0012_add_alarms.sql").write_text(
        "CREATE TABLE alarms (id int);\n", encoding="utf-8"
    )
    return tmp_path


def publish(admin: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return cli("publish", *args, cwd=admin)


def manifest_of(package: Path) -> dict[str, object]:
    with zipfile.ZipFile(package) as zf:
        return dict(json.loads(zf.read("manifest.json")))


def test_same_inputs_give_the_same_bytes_in_either_list_form(
    admin: Path, bare_site: Config
) -> None:
    seed_form = publish(
        admin,
        "--version",
        "1.2.0",
        "--base-dir",
        "app",
        "--files",
        "app/portal",
        "app/collector/normalizer.py",
        "--migrations",
        "sql/0012_add_alarms.sql",
        "--notes",
        "Додано журнал тривог.",
        "--out",
        "one",
    )
    assert seed_form.returncode == 0, seed_form.stderr
    repeated = publish(
        admin,
        "--version",
        "1.2.0",
        "--base-dir",
        "app",
        "--files",
        "app/collector/normalizer.py",
        "--files",
        "app/portal",
        "--migrations",
        "sql/0012_add_alarms.sql",
        "--notes",
        "Додано журнал тривог.",
        "--out",
        "two",
    )
    assert repeated.returncode == 0, repeated.stderr
    one, two = admin / "one/update_v1.2.0.zip", admin / "two/update_v1.2.0.zip"
    assert one.read_bytes() == two.read_bytes()
    assert sha(one.read_bytes()) in seed_form.stdout
    with zipfile.ZipFile(one) as zf:
        names = [i.filename for i in zf.infolist()]
        assert (
            names
            == sorted(names)
            == [
                "files/collector/normalizer.py",
                "files/portal/main.py",
                "files/portal/static/app.js",
                "manifest.json",
                "manifest.sig",
                "migrations/0012_add_alarms.sql",
            ]
        )
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    manifest = verify_package(one, bare_site, installed_version="1.0.0")
    assert [f.path for f in manifest.files] == [
        "collector/normalizer.py",
        "portal/main.py",
        "portal/static/app.js",
    ]
    assert manifest.files[1].sha256 == sha(b"print('1.2.0')\n") and manifest.files[1].size == 15
    assert [m.name for m in manifest.migrations] == ["0012_add_alarms.sql"]
    assert manifest.product == "autotel" and manifest.notes == "Додано журнал тривог."


def test_manifest_fields_and_default_expiry(admin: Path) -> None:
    result = publish(
        admin, "--version", "2.0.0", "--files", "README.txt", "--base-dir", "app", "--notes", "n"
    )
    assert result.returncode == 0, result.stderr
    data = manifest_of(admin / "update_v2.0.0.zip")
    assert set(data) == {"version", "notes", "created", "expires", "product", "files", "migrations"}
    created, expires = parse_iso(str(data["created"])), parse_iso(str(data["expires"]))
    assert str(data["created"]).endswith("Z") and str(data["expires"]).endswith("Z")
    assert created.date() == datetime.now(UTC).date()
    assert expires.date() == created.date() + timedelta(days=90)
    assert data["files"] == [{"path": "README.txt", "sha256": sha(b"notes\n"), "size": 6}]


def test_product_and_expiry_flags(admin: Path) -> None:
    day = (date.today() + timedelta(days=10)).isoformat()
    result = publish(
        admin,
        "--version",
        "1.2.0",
        "--files",
        "app/README.txt",
        "--base-dir",
        "app",
        "--notes",
        "n",
        "--product",
        "othertel",
        "--expires",
        day,
        "--key",
        "private.pem",
        "--out",
        "dist",
    )
    assert result.returncode == 0, result.stderr
    data = manifest_of(admin / "dist/update_v1.2.0.zip")
    assert data["product"] == "othertel" and data["expires"] == f"{day}T23:59:59Z"


def test_openssl_verifies_the_signature(admin: Path, admin_keys: tuple[Path, Path]) -> None:
    assert (
        publish(
            admin,
            "--version",
            "1.2.0",
            "--files",
            "app/portal",
            "--base-dir",
            "app",
            "--notes",
            "n",
        ).returncode
        == 0
    )
    with zipfile.ZipFile(admin / "update_v1.2.0.zip") as zf:
        zf.extract("manifest.json", admin / "x")
        zf.extract("manifest.sig", admin / "x")
    command = [
        "openssl",
        "dgst",
        "-sha256",
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:auto",
        "-verify",
        str(admin_keys[1]),
        "-signature",
        str(admin / "x/manifest.sig"),
        str(admin / "x/manifest.json"),
    ]
    ok = subprocess.run(command, check=False, capture_output=True, text=True)
    assert ok.returncode == 0 and "Verified OK" in ok.stdout, ok.stderr
    (admin / "x/manifest.json").write_text("{}", encoding="utf-8")
    assert subprocess.run(command, check=False, capture_output=True, text=True).returncode == 1


REFUSALS = {
    "protected": (["--files", "app/license.dat"], "license.dat is protected"),
    "protected-in-folder": (["--files", "app/keys"], "keys/admin.pem is protected"),
    "protected-case": (["--files", "app/CONFIG.TXT"], "CONFIG.TXT is protected"),
    "outside-base": (["--files", "sql/0012_add_alarms.sql"], "outside the base folder"),
    "missing": (["--files", "app/nope.py"], "app/nope.py: no such file"),
    "missing-migration": (
        ["--files", "app/README.txt", "--migrations", "sql/nope.sql"],
        "no such file",
    ),
    "not-sql": (
        ["--files", "app/README.txt", "--migrations", "app/README.txt"],
        "expected a .sql file",
    ),
    "bad-expiry": (
        ["--files", "app/README.txt", "--expires", "next week"],
        "expected a date YYYY-MM-DD",
    ),
    "past-expiry": (["--files", "app/README.txt", "--expires", "2020-01-01"], "that day is over"),
    "no-key": (
        ["--files", "app/README.txt", "--key", "nokey.pem"],
        "nokey.pem: private key file not found",
    ),
    "nothing": ([], "nothing to publish"),
}


def main(
    admin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """`autotel publish ARGS` through the CLI's entry point, in this process (faster than
    a subprocess, same parsing and error handling); returns (exit code, stderr)."""
    monkeypatch.chdir(admin)
    monkeypatch.setattr(sys, "argv", ["autotel", "publish", *args])
    with pytest.raises(SystemExit) as exited:
        autotel_main()
    return int(exited.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals(
    admin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    (admin / "app/license.dat").write_text("lic", encoding="utf-8")
    (admin / "app/CONFIG.TXT").write_text("cfg", encoding="utf-8")
    (admin / "app/keys").mkdir()
    (admin / "app/keys/admin.pem").write_text("key", encoding="utf-8")
    args, needle = REFUSALS[case]
    code, err = main(
        admin, monkeypatch, capsys, "--version", "1.2.0", "--base-dir", "app", "--notes", "n", *args
    )
    assert code != 0 and len(err.strip().splitlines()) == 1 and needle in err, err
    assert not list(admin.rglob("update_v*.zip")) and not list(admin.glob(".update_v*"))


@pytest.mark.parametrize("version", ["1.2", "v1.2.0", "1.2.0.0", "01.2.0", "latest"])
def test_invalid_versions_are_refused(
    admin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    code, err = main(
        admin,
        monkeypatch,
        capsys,
        "--version",
        version,
        "--files",
        "app/README.txt",
        "--base-dir",
        "app",
        "--notes",
        "n",
    )
    assert code == 2 and "--version" in err and "not a semantic version" in err, err
    assert not list(admin.rglob("update_v*.zip"))


def test_a_refusal_through_a_subprocess_is_one_line(admin: Path) -> None:
    (admin / "app/license.dat").write_text("lic", encoding="utf-8")
    result = publish(
        admin,
        "--version",
        "1.2.0",
        "--files",
        "app/license.dat",
        "app/README.txt",
        "--base-dir",
        "app",
        "--notes",
        "n",
    )
    assert_one_line_error(result, "license.dat is protected")
    assert not list(admin.rglob("update_v*.zip"))
