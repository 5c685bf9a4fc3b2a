"""`autotel license issue` (admin) and `autotel license check` (site)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._common import say, site_config
from autotel.cli._panels import ADMIN
from autotel.errors import ConfigError, LicenseError
from autotel.licensing.document import parse_date
from autotel.licensing.files import check_site_license, issue_license, today_utc

license_app = typer.Typer(no_args_is_help=True, help="Issue and check site licences.")


def register(app: typer.Typer) -> None:
    app.add_typer(license_app, name="license", rich_help_panel=ADMIN)


@license_app.command("issue")
def issue(
    client_id: Annotated[str, typer.Option(help="The site's client_id (as in its autotel.yaml)")],
    expires: Annotated[str, typer.Option(help="Last valid day, YYYY-MM-DD (UTC)")],
    key: Annotated[Path, typer.Option(help="Admin private key (PEM)")] = Path("private.pem"),
    product: Annotated[
        str | None, typer.Option(help="Product the site runs (default: any product)")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the licence")] = Path("license.dat"),
) -> None:
    """Sign a licence for one site; copy it to the site's install directory as license.dat.

    The watchdog checks it when it starts and refuses to start after the last valid day;
    issue the next one before then (autotel status on the site shows the days left).
    """
    try:
        expiry = parse_date(expires, "--expires")
    except LicenseError as e:
        raise ConfigError(str(e)) from None
    lic = issue_license(key, client_id, expiry, product, out)
    say(f"licence for {lic.client_id!r} ({lic.product or 'any product'}) valid through "
        f"{lic.expires.isoformat()}: {out}")


@license_app.command("check")
def check(ctx: typer.Context) -> None:
    """Check this site's license.dat: trusted signature, this client_id and product, not expired."""
    config = site_config(ctx)
    lic = check_site_license(config)
    product = repr(lic.product) if lic.product else "any"
    say(f"licence valid: site {lic.client_id!r}, product {product}, "
        f"through {lic.expires.isoformat()} ({lic.days_left(today_utc())} days left)")
