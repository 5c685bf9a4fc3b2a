"""`autotel publish`: build a signed update package on the admin host.

`--files` and `--migrations` take several values after one flag (`--files a.py
b.py`, the seed's form) as well as repeated flags (`autotel.cli._lists`).
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._common import say
from autotel.cli._lists import any_value, spreading
from autotel.cli._panels import ADMIN
from autotel.crypto.signing import load_private_key
from autotel.errors import ConfigError
from autotel.package.build import PackageSpec, build_package
from autotel.package.semver import parse_version
from autotel.package.sources import file_sources, migration_sources
from autotel.package.zipread import file_sha256

LIST_OPTIONS = {"--files": any_value, "--migrations": any_value}
DEFAULT_VALID_DAYS = 90


def register(app: typer.Typer) -> None:
    app.command("publish", cls=spreading(LIST_OPTIONS), rich_help_panel=ADMIN)(publish)


def publish(
    version: Annotated[str, typer.Option(help="Semantic version X.Y.Z of the package")],
    notes: Annotated[str, typer.Option(help="Release notes the operator sees")],
    files: Annotated[
        list[Path] | None,
        typer.Option(help="Files or folders to ship (found from here, else from --base-dir)"),
    ] = None,
    base_dir: Annotated[
        Path, typer.Option(help="Folder the manifest paths are relative to")
    ] = Path("."),
    migrations: Annotated[list[Path] | None, typer.Option(help="SQL migration files")] = None,
    product: Annotated[str, typer.Option(help="Product the sites must run")] = "autotel",
    expires: Annotated[
        str | None, typer.Option(help="Last valid day, YYYY-MM-DD (default: 90 days)")
    ] = None,
    key: Annotated[Path, typer.Option(help="Admin private key (PEM)")] = Path("private.pem"),
    out: Annotated[Path, typer.Option(help="Folder for update_vX.Y.Z.zip")] = Path("."),
) -> None:
    """Write a signed update_vX.Y.Z.zip: manifest.json, manifest.sig, files/, migrations/."""
    try:
        parse_version(version)
    except ValueError as e:
        raise ConfigError(f"--version: {e}") from None
    created = publish_time()
    spec = PackageSpec(
        version=version,
        notes=notes,
        product=product,
        created=created,
        expires=expiry(expires, created),
        files=file_sources(files or [], base_dir),
        migrations=migration_sources(migrations or []),
    )
    if not spec.files and not spec.migrations:
        raise ConfigError("nothing to publish: give --files and/or --migrations")
    path = build_package(spec, load_private_key(key), out)
    say(
        f"{path}: {len(spec.files)} file(s), {len(spec.migrations)} migration(s), "
        f"expires {spec.expires.date().isoformat()}"
    )
    say(f"sha256 {file_sha256(path)}")


def publish_time() -> datetime:
    """`SOURCE_DATE_EPOCH` if set (reproducible builds), else the start of today (UTC).

    A whole day, not the second, so publishing the same inputs twice gives the same zip.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if epoch:
        try:
            return datetime.fromtimestamp(int(epoch), UTC)
        except (ValueError, OverflowError):
            raise ConfigError(f"SOURCE_DATE_EPOCH={epoch!r}: expected seconds since 1970") from None
    return datetime.combine(datetime.now(UTC).date(), time(), UTC)


def expiry(text: str | None, created: datetime) -> datetime:
    """The end (23:59:59 UTC) of the given day, or of the day 90 days after `created`.

    Raises:
        ConfigError: not a YYYY-MM-DD date, or a day already over.
    """
    if text is None:
        day = created.date() + timedelta(days=DEFAULT_VALID_DAYS)
    else:
        try:
            day = date.fromisoformat(text.strip())
        except ValueError:
            raise ConfigError(f"--expires {text!r}: expected a date YYYY-MM-DD") from None
    end = datetime.combine(day, time(23, 59, 59), UTC)
    if end <= datetime.now(UTC):
        raise ConfigError(
            f"--expires {day.isoformat()}: that day is over; sites would refuse the package"
        )
    return end
