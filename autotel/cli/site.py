"""`autotel init`, `autotel cert`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._common import say, site_config
from autotel.cli._lists import any_value, spreading
from autotel.cli._panels import SITE
from autotel.crypto.tls import agent_common_name, write_certificate
from autotel.site.create import SiteOptions, create_site


def register(app: typer.Typer) -> None:
    app.command("init", rich_help_panel=SITE)(init)
    app.command("cert", cls=spreading({"--ip": any_value, "--dns": any_value}),
                rich_help_panel=SITE)(cert)


def init(
    directory: Annotated[Path, typer.Argument(
        metavar="DIR", help="Install directory of the new site")] = Path("."),
    client_id: Annotated[str | None, typer.Option(
        help="This site's name at the admin: the --client-id of push and licence (default: the host name)")] = None,
    public_key: Annotated[list[Path] | None, typer.Option(
        help="Admin public key (PEM) to trust, copied to keys/; repeatable")] = None,
    agent_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="HTTPS port the admin's push connects to (default: 9876)")] = None,
    portal_port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="HTTP port of the operator page (default: 8000)")] = None,
    pin: Annotated[str | None, typer.Option(
        help="Operator's portal PIN (default: a random 6-digit one, printed; kept in autotel.yaml)")] = None,
    dsn: Annotated[str | None, typer.Option(help="PostgreSQL DSN (default: embedded database)")] = None,
    collector: Annotated[str | None, typer.Option(
        help="Command line of the site's collector, run by the watchdog (default: none)")] = None,
    version: Annotated[str | None, typer.Option(
        help="Installed version X.Y.Z (default: 1.0.0; with --force, the version the site runs)")] = None,
    product: Annotated[str | None, typer.Option(
        help="Product name updates must match (default: autotel)")] = None,
    force: Annotated[bool, typer.Option(help=(
        "Re-create an existing site: rewrites autotel.yaml and the agent certificate (and "
        "version.txt if --version is given); jobs, backups and the database stay"))] = False,
) -> None:
    """Create a site in DIR: autotel.yaml, state/, TLS certificate, version.txt.

    Then put the admin's license.dat in DIR and start `autotel watchdog`.
    """
    options = SiteOptions(client_id, list(public_key or []), agent_port, portal_port, pin, dsn,
                          collector, version, product)
    site = create_site(directory, options, force=force)
    say(f"site {site.client_id!r} created: {site.config_path}")
    say(f"agent certificate SHA-256: {site.fingerprint}")
    if not pin:
        say(f"portal PIN: {site.pin}")
    if not public_key:
        say("no admin key trusted yet: add one to trusted_keys in autotel.yaml before the first push")


def cert(
    ctx: typer.Context,
    ip: Annotated[list[str] | None, typer.Option(
        help="IP addresses to add (this PC's own are always in it)")] = None,
    dns: Annotated[list[str] | None, typer.Option(
        help="DNS names to add (this PC's own are always in it)")] = None,
) -> None:
    """Make a new TLS certificate for the agent; its old one is no longer valid.

    Admins trust the agent by its certificate's fingerprint, pinned on their first push,
    not by the names in it. After a new one, restart the site's services, then each
    admin accepts the new fingerprint once (`autotel push ... --accept-cert SHA256`).
    """
    config = site_config(ctx)
    fingerprint = write_certificate(config.state.tls, agent_common_name(config.client_id), dns or [], ip or [])
    say(f"new agent certificate SHA-256: {fingerprint}")
    say("a running agent keeps serving the old one until it restarts: restart the watchdog")
    say("admins who pushed to this site before: run `autotel push ... --accept-cert "
        + fingerprint + "` once")
