"""What the watchdog runs for a site: its three autotel services and the collector.

Each autotel service is `python -m autotel --config <site>/autotel.yaml <name>`, with
the same interpreter as the watchdog. The collector is the site's own command
(`collector.command`), run in the install directory with `AUTOTEL_CONFIG` set so it
can find the site. Console output goes through the watchdog (`console`) to
`state/logs/<name>.console.log`, rotated to `<name>.console.log.1` whenever it passes
`retention.console_log_max_mb`, also while the service runs on.
"""

from __future__ import annotations

import os
import shlex
import sys

from autotel.config import CONFIG_ENV, Config
from autotel.errors import ConfigError
from autotel.fsutil import MB
from autotel.watchdog.process import ServiceSpec

AUTOTEL_SERVICES = ("runner", "agent", "portal")
COLLECTOR = "collector"


def service_specs(config: Config) -> list[ServiceSpec]:
    """Raises: ConfigError when the collector command cannot be parsed."""
    config_path = str(config.config_path.resolve())
    env = {**os.environ, CONFIG_ENV: config_path}
    log_limit = int(config.retention.console_log_max_mb * MB)
    specs = [
        ServiceSpec(name, [sys.executable, "-m", "autotel", "--config", config_path, name],
                    config.install_path, config.state.logs / f"{name}.console.log", env, log_limit)
        for name in AUTOTEL_SERVICES
    ]
    if config.collector.command.strip():
        argv = split_command(config.collector.command)
        specs.append(ServiceSpec(COLLECTOR, argv, config.install_path,
                                 config.state.logs / f"{COLLECTOR}.console.log", env, log_limit))
    return specs


def split_command(command: str, *, windows: bool = os.name == "nt") -> list[str]:
    """Split a command line the way the site's shell would; Windows keeps backslashes.

    Raises:
        ConfigError: unbalanced quotes.
    """
    try:
        parts = shlex.split(command, posix=not windows)
    except ValueError as e:
        raise ConfigError(f"collector.command {command!r}: {e}") from None
    if windows:  # posix=False keeps the quotes around "C:\Program Files\x.exe"
        parts = [p[1:-1] if len(p) >= 2 and p[0] == p[-1] and p[0] in "\"'" else p for p in parts]
    return parts
