"""Everything the demo needs on disk, made the way an admin and a plant would make it.

    <root>/admin/   private.pem, public.pem, release/ (the update's sources),
                    update_v1.1.0.zip, data_storage/ (pushed archives)
    <root>/site/    a site (`autotel init`) on the embedded database, licensed, with
                    the simulated collector and its collector.json

The site listens on 127.0.0.1 only, on ports free at the time of creation.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import yaml

from autotel.config import Config, load_config
from autotel.crypto.keys import generate_keypair
from autotel.crypto.signing import load_private_key
from autotel.demo.collector import SETTINGS_FILE
from autotel.fsutil import atomic_write_text
from autotel.licensing.files import issue_license, license_path, today_utc
from autotel.package.build import PackageSpec, build_package
from autotel.package.sources import file_sources, migration_sources
from autotel.site.create import SiteOptions, create_site
from autotel.timeutil import utcnow

CLIENT_ID = "demo-plant"
OLD_VERSION, NEW_VERSION = "1.0.0", "1.1.0"
HOST = "127.0.0.1"
MIGRATION = "1001_alarm_limits.sql"
NEW_SENSOR = "humidity"
NOTES = "Додано датчик вологості та межі тривог. / Adds a humidity sensor and alarm limits."

SENSORS_V1 = [{"name": "temperature", "base": 21.5, "swing": 1.5},
              {"name": "pressure", "base": 101.3, "swing": 0.4}]
SENSORS_V2 = [*SENSORS_V1, {"name": NEW_SENSOR, "base": 45.0, "swing": 5.0}]
MIGRATION_SQL = """\
CREATE TABLE alarm_limits (
    sensor text PRIMARY KEY,
    low    double precision,
    high   double precision
);
INSERT INTO alarm_limits (sensor, low, high) VALUES
    ('temperature', 5, 35), ('pressure', 95, 105), ('humidity', 20, 80);
"""


@dataclass(frozen=True)
class DemoWorld:
    root: Path
    private_key: Path
    config: Config
    pin: str
    package: Path
    storage: Path

    @property
    def portal_url(self) -> str:
        return f"http://{HOST}:{self.config.portal.port}/"


def build_world(root: Path) -> DemoWorld:
    """Create keys, a licensed site and the update package under `root` (an empty folder)."""
    admin = root / "admin"
    private_key, public_key = generate_keypair(admin)
    pin = f"{secrets.randbelow(10**6):06d}"
    created = create_site(root / "site", SiteOptions(
        client_id=CLIENT_ID, public_keys=[public_key], pin=pin, version=OLD_VERSION,
        agent_port=free_port(), portal_port=free_port(), collector=collector_command()))
    config = _listen_locally(load_config(created.config_path))
    _write_settings(config.install_path / SETTINGS_FILE, SENSORS_V1, interval_s=0.25)
    issue_license(private_key, CLIENT_ID, today_utc() + timedelta(days=365), config.product,
                  license_path(config))
    package = _build_update(admin, private_key, config.product)
    return DemoWorld(root, private_key, config, pin, package, admin / "data_storage")


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def collector_command() -> str:
    """`python -m autotel.demo.collector`, quoted for this OS's collector.command parsing."""
    argv = [sys.executable, "-m", "autotel.demo.collector"]
    return subprocess.list2cmdline(argv) if os.name == "nt" else shlex.join(argv)


def _listen_locally(config: Config) -> Config:
    """Bind agent and portal to 127.0.0.1: a demo is nothing to expose on the network."""
    data = yaml.safe_load(config.config_path.read_text(encoding="utf-8"))
    data.setdefault("agent", {})["host"] = HOST
    data.setdefault("portal", {})["host"] = HOST
    atomic_write_text(config.config_path, yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return load_config(config.config_path)


def _write_settings(path: Path, sensors: list[dict[str, object]], interval_s: float) -> None:
    atomic_write_text(path, json.dumps({"interval_s": interval_s, "sensors": sensors}, indent=2) + "\n")


def _build_update(admin: Path, private_key: Path, product: str) -> Path:
    """v1.1.0: a changed collector.json (one more sensor) and one migration (alarm limits)."""
    release = admin / "release"
    release.mkdir(parents=True, exist_ok=True)
    _write_settings(release / SETTINGS_FILE, SENSORS_V2, interval_s=0.25)
    atomic_write_text(release / MIGRATION, MIGRATION_SQL)
    created = utcnow().replace(microsecond=0)
    spec = PackageSpec(version=NEW_VERSION, notes=NOTES, product=product, created=created,
                       expires=created + timedelta(days=30),
                       files=file_sources([release / SETTINGS_FILE], release),
                       migrations=migration_sources([release / MIGRATION]))
    return build_package(spec, load_private_key(private_key), admin)
