"""`autotel init DIR`: a new site's config, state layout, certificate and version."""

from __future__ import annotations

import re
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotel.config import SEMVER_PATTERN, config_from_values, render_yaml
from autotel.crypto.signing import load_public_key
from autotel.crypto.tls import agent_common_name, write_certificate
from autotel.errors import ConfigError
from autotel.fsutil import atomic_write_bytes, atomic_write_text

DEFAULT_VERSION = "1.0.0"


@dataclass
class SiteOptions:
    client_id: str | None = None
    public_keys: list[Path] = field(default_factory=list)
    agent_port: int | None = None
    portal_port: int | None = None
    pin: str | None = None
    dsn: str | None = None
    collector: str | None = None
    version: str | None = None  # None: 1.0.0 for a new site, the installed one for a re-created site
    product: str | None = None


@dataclass
class CreatedSite:
    config_path: Path
    pin: str
    fingerprint: str
    client_id: str


def default_client_id() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()).strip("-") or "site"


def create_site(directory: Path, options: SiteOptions, *, force: bool = False) -> CreatedSite:
    """Raises: ConfigError for an existing site (without `force`), a bad key or version."""
    directory = directory.resolve()
    config_path = directory / "autotel.yaml"
    if config_path.exists() and not force:
        raise ConfigError(f"{config_path} already exists: this is a site already; pass --force to re-create it")
    if options.version is not None and not re.match(SEMVER_PATTERN, options.version):
        raise ConfigError(f"--version {options.version!r}: expected a semantic version X.Y.Z")
    for key in options.public_keys:
        load_public_key(key)
    pin = options.pin or f"{secrets.randbelow(10**6):06d}"
    client_id = options.client_id or default_client_id()
    values = _config_values(options, client_id, pin, len(options.public_keys))
    config = config_from_values(values, config_path, "the init options")  # nothing written yet
    directory.mkdir(parents=True, exist_ok=True)
    for source, relative in zip(options.public_keys, values["trusted_keys"], strict=True):
        (directory / relative).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(directory / relative, Path(source).read_bytes(), mode=0o644)
    atomic_write_text(config_path, "# autotel site configuration (written by `autotel init`)\n" + render_yaml(values))
    config.state.create()
    atomic_write_text(config.state.version_file, _version(options, config.state.version_file) + "\n")
    fingerprint = write_certificate(config.state.tls, agent_common_name(client_id))
    return CreatedSite(config_path, pin, fingerprint, client_id)


def _version(options: SiteOptions, version_file: Path) -> str:
    """The version to record: the one asked for, else the one a re-created site runs.

    Re-creating a site must not set it back to 1.0.0 when it runs an update: it would
    then accept the older packages the update replaced.
    """
    if options.version is not None:
        return options.version
    installed = version_file.read_text(encoding="utf-8").strip() if version_file.is_file() else ""
    return installed if re.match(SEMVER_PATTERN, installed) else DEFAULT_VERSION


def _config_values(options: SiteOptions, client_id: str, pin: str, key_count: int) -> dict[str, Any]:
    values: dict[str, Any] = {"client_id": client_id}
    if options.product:
        values["product"] = options.product
    values["trusted_keys"] = [f"keys/admin{'' if n == 1 else n}.pem" for n in range(1, key_count + 1)]
    values["agent"] = {"port": options.agent_port} if options.agent_port is not None else {}
    values["portal"] = {"pin": pin, **({"port": options.portal_port} if options.portal_port is not None else {})}
    values["database"] = {"dsn": options.dsn or ""}
    if options.collector:
        values["collector"] = {"command": options.collector}
    return {k: v for k, v in values.items() if v != {}}
