"""`autotel license issue` and `check` through the real CLI: every way a licence can be wrong."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from autotel.config import Config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import load_private_key, sign
from autotel.licensing.document import License, encode, signed_bytes
from autotel.licensing.files import issue_license, license_path, today_utc
from tests.watchdog_support import run_cli

LICENSE_EXIT = 3


def _issue_cli(private: Path, out: Path) -> None:
    expires = (today_utc() + timedelta(days=30)).isoformat()
    result = run_cli("license", "issue", "--client-id", "plant_A", "--expires", expires,
                     "--key", str(private), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"licence for 'plant_A' (any product) valid through {expires}" in result.stdout


def _issue(private: Path, out: Path, client_id: str = "plant_A", product: str = "autotel") -> None:
    """The same as `autotel license issue`, in-process: the CLI path is tested once above."""
    issue_license(private, client_id, today_utc() + timedelta(days=30), product, out)


def _assert_refused(bare_site: Config, *fragments: str) -> None:
    result = run_cli("license", "check", config=bare_site)
    assert result.returncode == LICENSE_EXIT, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_valid_licence_is_accepted(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    _issue_cli(admin_keys[0], license_path(bare_site))
    result = run_cli("license", "check", config=bare_site)
    assert result.returncode == 0, result.stderr
    assert "licence valid: site 'plant_A'" in result.stdout
    assert "30 days left" in result.stdout


def test_missing_licence_is_refused(bare_site: Config) -> None:
    _assert_refused(bare_site, "no licence file", "license.dat")


def test_altered_licence_is_refused(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    path = license_path(bare_site)
    _issue(admin_keys[0], path)
    document = json.loads(path.read_text())
    document["license"]["expires"] = "2099-12-31"
    path.write_text(json.dumps(document))
    _assert_refused(bare_site, "signature does not match")


def test_licence_signed_by_another_key_is_refused(bare_site: Config, tmp_path: Path) -> None:
    other_private, _ = generate_keypair(tmp_path / "other")
    _issue(other_private, license_path(bare_site))
    _assert_refused(bare_site, "signature does not match")


def test_expired_licence_is_refused(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    lic = License("plant_A", "autotel", today_utc() - timedelta(days=1), "2020-01-01T00:00:00Z")
    signature = sign(load_private_key(admin_keys[0]), signed_bytes(lic.payload()))
    license_path(bare_site).write_bytes(encode(lic, signature))
    _assert_refused(bare_site, "expired on")


def test_licence_of_another_site_is_refused(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    _issue(admin_keys[0], license_path(bare_site), client_id="plant_B")
    _assert_refused(bare_site, "for site 'plant_B'", "this site is 'plant_A'")


def test_licence_issued_without_product_fits_any_product_of_the_site(
        bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    """DESIGN.md's `license issue` has no --product: the licence binds the client_id."""
    _issue_cli(admin_keys[0], license_path(bare_site))
    with bare_site.config_path.open("a", encoding="utf-8") as f:
        f.write("product: widget\n")
    result = run_cli("license", "check", config=bare_site)
    assert result.returncode == 0, result.stderr
    assert "product any" in result.stdout


def test_licence_for_another_product_is_refused(bare_site: Config, admin_keys: tuple[Path, Path]) -> None:
    _issue(admin_keys[0], license_path(bare_site), product="othertel")
    _assert_refused(bare_site, "for product 'othertel'")


@pytest.mark.parametrize("content", [b"", b"not json", b'{"license": {}, "signature": "x"}',
                                     (b'{"license": {"format": 1, "client_id": "plant_A", "product": '
                                      b'"autotel", "expires": "soon", "issued": "x"}, "signature": ""}')])
def test_malformed_licence_is_refused(bare_site: Config, content: bytes) -> None:
    license_path(bare_site).write_bytes(content)
    _assert_refused(bare_site, "license.dat")


@pytest.mark.parametrize(("expires", "message"), [("2001-01-01", "has passed"), ("31.12.2030", "YYYY-MM-DD")])
def test_issue_refuses_bad_expiry(tmp_path: Path, admin_keys: tuple[Path, Path], expires: str,
                                  message: str) -> None:
    out = tmp_path / "license.dat"
    result = run_cli("license", "issue", "--client-id", "plant_A", "--expires", expires,
                     "--key", str(admin_keys[0]), "--out", str(out))
    assert result.returncode == 2 and message in result.stderr
    assert not out.exists()


def test_issue_without_key_says_so(tmp_path: Path) -> None:
    result = run_cli("license", "issue", "--client-id", "plant_A", "--expires", "2099-01-01",
                     "--key", str(tmp_path / "missing.pem"), "--out", str(tmp_path / "l.dat"))
    assert result.returncode == 2 and "private key file not found" in result.stderr
