"""`autotel keygen`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._common import say
from autotel.cli._panels import ADMIN
from autotel.crypto.keys import generate_keypair


def register(app: typer.Typer) -> None:
    app.command("keygen", rich_help_panel=ADMIN)(keygen)


def keygen(
    out: Annotated[Path, typer.Option(help="Folder for private.pem and public.pem")] = Path("."),
    force: Annotated[bool, typer.Option(
        help="Replace an existing key pair; sites trust the old one until given the new public key")] = False,
) -> None:
    """Create the admin's RSA key pair: private.pem (mode 0600) and public.pem."""
    private, public = generate_keypair(out, overwrite=force)
    say(f"private key: {private} (keep it secret; it signs sessions, updates and licences)")
    say(f"public key:  {public} (give it to sites: autotel init --public-key {public})")
