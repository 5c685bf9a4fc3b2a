"""The pure rules of packages, with plain values: paths, protected globs, versions,
zip-bomb limits, the pending-replacement decision, and the CLI's list spreading."""

from __future__ import annotations

import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autotel.cli._lists import spread
from autotel.cli.publish import LIST_OPTIONS
from autotel.config import DEFAULT_PROTECTED
from autotel.errors import NotNewerError, PackageError
from autotel.package.manifest import Manifest
from autotel.package.paths import find_duplicate, normalise, protected_match
from autotel.package.pending import PendingUpdate, decide
from autotel.package.rules import Entry, Limits, check_limits, check_not_expired
from autotel.package.semver import parse_version


@pytest.mark.parametrize(
    "raw, clean",
    [
        ("portal/main.py", "portal/main.py"),
        ("./portal//main.py", "portal/main.py"),
        ("a/./b.txt", "a/b.txt"),
        ("Ünïcode/файл.py", "Ünïcode/файл.py"),
        ("x~y.txt", "x~y.txt"),
        ("a" * 255, "a" * 255),
        ("я" * 127 + "x", "я" * 127 + "x"),  # 255 bytes in UTF-8
        ("/".join(["d"] * 64), "/".join(["d"] * 64)),
    ],
)
def test_safe_paths_are_normalised(raw: str, clean: str) -> None:
    assert normalise(raw) == clean


@pytest.mark.parametrize(
    "raw",
    [
        "",
        ".",
        "./",
        "..",
        "../a",
        "a/../../b",
        "a/..",
        "/etc/passwd",
        "//server/share/x",
        "C:/x",
        "c:x",
        "a\\b",
        "..\\x",
        "a/b\x00.py",
        "a/\nb",
        "a/b:stream",
        "a/b.",
        "a/b ",
        "CON",
        "aux.txt",
        "lpt1.log",
        "nul",
        "LICENS~1.DAT",
        "a/b|c",
        "a/b*",
        "a/" + "b" * 256,
        "я" * 128,  # 256 bytes in UTF-8: too long for ext4
        "/".join(["d"] * 65),
    ],
)
def test_unsafe_paths_are_refused(raw: str) -> None:
    with pytest.raises(PackageError, match="unsafe path"):
        normalise(raw)


@pytest.mark.parametrize(
    "path, pattern",
    [
        ("license.dat", "license.dat"),
        ("LICENSE.DAT", "license.dat"),
        ("./License.Dat", "license.dat"),
        ("license/_core.pyd", "license/_core.pyd"),
        ("license/__init__.py", "license/__init__.py"),
        ("license", "license/_core.pyd"),  # a file that would replace the protected folder
        ("config.txt", "config.txt"),
        ("credentials.env", "credentials.env"),
        ("autotel.yaml", "autotel.yaml"),
        ("keys/admin.pem", "keys/**"),
        ("KEYS/a/b/c", "keys/**"),
        ("keys", "keys/**"),
        ("state/pending_update/meta.json", "state/**"),
    ],
)
def test_protected_defaults(path: str, pattern: str) -> None:
    assert protected_match(path, DEFAULT_PROTECTED) == pattern


@pytest.mark.parametrize(
    "path",
    [
        "portal/main.py",
        "license/other.py",
        "plugins/license.dat",
        "keyser.py",
        "states/x",
        "config.txt.bak",
    ],
)
def test_not_protected(path: str) -> None:
    assert protected_match(path, DEFAULT_PROTECTED) is None


def test_custom_globs() -> None:
    patterns = ["*.ini", "data/**/secret?.txt", "**/local.cfg"]
    assert protected_match("site.INI", patterns) == "*.ini"
    assert protected_match("sub/site.ini", patterns) is None
    assert protected_match("data/a/b/secret1.txt", patterns) == "data/**/secret?.txt"
    assert protected_match("data/secret2.txt", patterns) == "data/**/secret?.txt"
    assert protected_match("deep/down/local.cfg", patterns) == "**/local.cfg"
    assert protected_match("local.cfg", patterns) == "**/local.cfg"


def test_duplicates_compare_normalised_and_case_folded() -> None:
    assert find_duplicate(["a.py", "b.py"]) is None
    assert find_duplicate(["Portal/Main.py", "x", "portal/main.py"]) == (
        "Portal/Main.py",
        "portal/main.py",
    )
    assert find_duplicate(["a/b.py", "a//./b.py"]) == ("a/b.py", "a//./b.py")


@pytest.mark.parametrize(
    "lower, higher",
    [
        ("1.0.0", "1.0.1"),
        ("1.9.0", "1.10.0"),
        ("1.2.0-rc.1", "1.2.0"),
        ("1.2.0-alpha", "1.2.0-alpha.1"),
        ("1.2.0-alpha.1", "1.2.0-alpha.beta"),
        ("1.2.0-beta.2", "1.2.0-beta.11"),
        ("0.9.9", "1.0.0"),
    ],
)
def test_semantic_version_precedence(lower: str, higher: str) -> None:
    assert parse_version(lower) < parse_version(higher)
    assert parse_version(higher) > parse_version(lower)


def test_build_metadata_does_not_count() -> None:
    assert parse_version("1.2.0+build.1") == parse_version("1.2.0+build.2")


@pytest.mark.parametrize(
    "text",
    [
        "1.2",
        "1",
        "v1.2.0",
        "01.2.0",
        "1.02.0",
        "1.2.0-",
        "1.2.0-01",
        "1.2.0.0",
        "",
        " ",
        "1.2.x",
        "1.2.0+",
    ],
)
def test_not_semantic_versions(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        parse_version(text)


def entry(name: str, size: int, compressed: int, method: int = zipfile.ZIP_DEFLATED) -> Entry:
    return Entry(name=name, raw_name=name, size=size, compressed_size=compressed, method=method)


def test_limits_refuse_bombs_before_reading() -> None:
    limits = Limits(max_entries=3, max_total_bytes=1000, max_ratio=10, ratio_floor_bytes=100)
    check_limits("p.zip", [entry("a", 500, 100), entry("b", 50, 1)], limits)  # small: ratio ignored
    with pytest.raises(PackageError, match="4 entries, more than the limit of 3"):
        check_limits("p.zip", [entry(str(i), 1, 1) for i in range(4)], limits)
    with pytest.raises(PackageError, match="expands to"):
        check_limits("p.zip", [entry("a", 600, 600), entry("b", 600, 600)], limits)
    with pytest.raises(PackageError, match="expands 20x"):
        check_limits("p.zip", [entry("a", 200, 10)], limits)
    with pytest.raises(PackageError, match="compression method 14"):
        check_limits("p.zip", [entry("a", 1, 1, method=zipfile.ZIP_LZMA)], limits)


def pending(version: str, sha: str = "a" * 64) -> PendingUpdate:
    return PendingUpdate(version, "", "2026-11-29T10:00:00Z", sha, Path("x.zip"))


def test_pending_decisions() -> None:
    assert decide(None, "1.2.0", "b" * 64) is True
    assert decide(pending("1.2.0"), "1.3.0", "b" * 64) is True
    assert decide(pending("1.2.0"), "1.2.0", "a" * 64) is False
    with pytest.raises(NotNewerError, match="already pending with other content"):
        decide(pending("1.2.0"), "1.2.0", "b" * 64)
    with pytest.raises(
        NotNewerError, match=re.escape("1.3.0 is already pending, newer than 1.2.0")
    ):
        decide(pending("1.3.0"), "1.2.0", "b" * 64)


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--files", "a", "b", "--notes", "n"], ["--files", "a", "--files", "b", "--notes", "n"]),
        (["--files", "a", "--files", "b"], ["--files", "a", "--files", "b"]),
        (
            ["--files=a", "b", "--migrations", "m1", "m2"],
            ["--files=a", "--files", "b", "--migrations", "m1", "--migrations", "m2"],
        ),
        (["--notes", "--files", "--files", "a"], ["--notes", "--files", "--files", "a"]),
        (["--files", "a", "--", "b"], ["--files", "a", "--", "b"]),
        (
            ["--version", "1.2.0", "--files", "a", "b", "--key", "k.pem"],
            ["--version", "1.2.0", "--files", "a", "--files", "b", "--key", "k.pem"],
        ),
    ],
)
def test_list_options_spread(args: list[str], expected: list[str]) -> None:
    assert (
        spread(args, LIST_OPTIONS, {"--notes", "--version", "--key", "--files", "--migrations"})
        == expected
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        (["ping", "--param", "a=1", "b=2"], ["ping", "--param", "a=1", "--param", "b=2"]),
        (["--param", "a=1", "b=2", "ping"], ["--param", "a=1", "--param", "b=2", "ping"]),
        (["ping", "--param", "novalue", "b=2"], ["ping", "--param", "novalue", "--param", "b=2"]),
    ],
)
def test_only_key_value_pairs_spread_after_param(args: list[str], expected: list[str]) -> None:
    """A bare word after `--param a=1` is the job's kind, not another parameter."""
    assert spread(args, {"--param": lambda t: "=" in t}, {"--param"}) == expected


def test_expiry_is_compared_with_the_clock() -> None:
    manifest = Manifest(
        version="1.2.0",
        created="2026-01-01T00:00:00Z",
        expires="2026-03-01T23:59:59Z",
        product="autotel",
    )
    check_not_expired("p.zip", manifest, datetime(2026, 3, 1, 23, 0, tzinfo=UTC))
    with pytest.raises(PackageError, match="expired at 2026-03-01T23:59:59Z"):
        check_not_expired("p.zip", manifest, datetime(2026, 3, 2, tzinfo=UTC))
