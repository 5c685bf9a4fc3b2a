"""Helpers for the watchdog, licence, status and demo tests: the real CLI as a subprocess."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any, Self

import yaml

from autotel.config import Config, load_config
from autotel.licensing.files import issue_license, license_path, today_utc
from autotel.watchdog.statusfile import pid_alive, read_services
from tests.foundation_support import wait_for


def run_cli(*args: str, config: Config | None = None, timeout: float = 60,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m autotel [--config X] ARGS`, captured, like an operator would run it."""
    prefix = ["--config", str(config.config_path)] if config is not None else []
    return subprocess.run([sys.executable, "-m", "autotel", *prefix, *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=child_env(), check=False)


def child_env() -> dict[str, str]:
    """The test's environment without AUTOTEL_* overrides that could leak into a child."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AUTOTEL_")}


def license_site(config: Config, private_key: Path, days: int = 30) -> Path:
    """Give `config`'s site a valid licence signed by `private_key`."""
    target = license_path(config)
    issue_license(private_key, config.client_id, today_utc() + timedelta(days=days), config.product, target)
    return target


def configure_site(config: Config, **sections: dict[str, object]) -> Config:
    """Merge `sections` (e.g. watchdog={...}, collector={...}) into the site's autotel.yaml."""
    path = config.config_path
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    for key, values in sections.items():
        data.setdefault(key, {}).update(values)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return load_config(path)


def python_command(code: str) -> str:
    """A collector command line running `code` with this interpreter (POSIX quoting)."""
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def services(config: Config) -> dict[str, dict[str, Any]]:
    data = read_services(config.state) or {"services": []}
    return {entry["name"]: entry for entry in data["services"]}


def service_in(config: Config, name: str, *states: str) -> dict[str, Any] | None:
    """The service's published entry while it is in one of `states`, else None (a
    `wait_for` check)."""
    entry = services(config).get(name)
    return entry if entry and entry["state"] in states else None


class WatchdogProcess:
    """`autotel watchdog` as a real subprocess; stopped (SIGTERM, then kill) on exit."""

    def __init__(self, config: Config, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "autotel", "--config", str(self.config.config_path), "watchdog"],
                stdout=log, stderr=subprocess.STDOUT, env=child_env())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for entry in services(self.config).values():  # never leave a child behind
            if entry.get("pid") and pid_alive(entry["pid"]):
                os.kill(entry["pid"], signal.SIGKILL)

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_state(self, name: str, *wanted: str, timeout: float = 20) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"watchdog exited with {self.proc.returncode}:\n{self.output()}")
            return service_in(self.config, name, *wanted)
        return wait_for(probe, timeout, f"{name} in {wanted}; services: {services(self.config)}")
