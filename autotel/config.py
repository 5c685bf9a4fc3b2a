"""The site's configuration: `autotel.yaml`, validated once into typed models.

Sources, earliest wins: environment variables `AUTOTEL_<SECTION>__<KEY>`, then the
YAML file. Relative paths in the file are relative to the file's own folder, so a
site can be moved or started from anywhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from autotel.errors import ConfigError
from autotel.state import StatePaths

CONFIG_ENV = "AUTOTEL_CONFIG"
DEFAULT_CONFIG = Path("autotel.yaml")
DEFAULT_PROTECTED = [
    "license/_core.pyd",
    "license/__init__.py",
    "license.dat",
    "config.txt",
    "credentials.env",
    "autotel.yaml",
    "keys/**",
    "state/**",
]
SEMVER_PATTERN = r"^\d+\.\d+\.\d+$"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AgentConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(9876, ge=0, le=65535)  # 0: any free port (tests)
    session_ttl_s: int = Field(300, ge=10)
    auth_per_minute: int = Field(3, ge=1)
    challenge_per_minute: int = Field(10, ge=1)
    max_update_mb: int = Field(512, ge=1)
    threads: int = Field(16, ge=2, le=256)
    socket_timeout_s: int = Field(60, ge=1)  # whole seconds: cheroot takes no fraction
    export_timeout_s: float = Field(3600.0, gt=0)


class PortalConfig(_Section):
    host: str = "0.0.0.0"
    port: int = Field(8000, ge=0, le=65535)
    pin: SecretStr = SecretStr("")
    tls: bool = False
    lang: str = Field("uk", pattern="^(uk|en)$")
    threads: int = Field(24, ge=2, le=256)
    max_sse_clients: int = Field(8, ge=1)
    socket_timeout_s: int = Field(30, ge=1)  # whole seconds: cheroot takes no fraction
    session_ttl_s: int = Field(8 * 3600, ge=60)


class DatabaseConfig(_Section):
    dsn: SecretStr = SecretStr("")


class CollectorConfig(_Section):
    command: str = ""


class RunnerConfig(_Section):
    rescan_ms: int = Field(1000, ge=50)
    default_step_timeout_s: float = Field(600.0, gt=0)
    # A queued file that is not a valid job yet may still be being written by a
    # producer that does not rename it in; it is failed only once unchanged this long.
    settle_s: float = Field(2.0, ge=0)


class WatchdogConfig(_Section):
    min_backoff_s: float = Field(0.5, gt=0)
    max_backoff_s: float = Field(30.0, gt=0)
    stable_after_s: float = Field(10.0, gt=0)
    max_restarts: int = Field(5, ge=1)
    stop_timeout_s: float = Field(10.0, gt=0)


class RetentionConfig(_Section):
    """Limits on what a site writes for ever, so a PC nobody looks at for months stays tidy.

    Each log is rotated to `<name>.1` (one previous generation kept) once over its limit.
    """

    events_max_mb: float = Field(10.0, gt=0)
    sessions_max_mb: float = Field(5.0, gt=0)
    console_log_max_mb: float = Field(5.0, gt=0)
    # The embedded PostgreSQL's own log (pgdata/log): rotated when the server (re)starts.
    database_log_max_mb: float = Field(5.0, gt=0)
    # Newest job files kept in each of jobs/done/ and jobs/failed/ (the newest apply job too).
    keep_finished_jobs: int = Field(500, ge=1)


class Config(BaseSettings):
    """Everything a site reads from `autotel.yaml`; every key has a working default."""

    model_config = SettingsConfigDict(
        env_prefix="AUTOTEL_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    client_id: str = Field("site", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    install_dir: Path = Path(".")
    state_dir: Path = Path("state")
    product: str = Field("autotel", min_length=1)
    trusted_keys: list[Path] = []
    protected: list[str] = list(DEFAULT_PROTECTED)
    keep_backups: int = Field(5, ge=1)
    agent: AgentConfig = AgentConfig()
    portal: PortalConfig = PortalConfig()
    database: DatabaseConfig = DatabaseConfig()
    collector: CollectorConfig = CollectorConfig()
    runner: RunnerConfig = RunnerConfig()
    watchdog: WatchdogConfig = WatchdogConfig()
    retention: RetentionConfig = RetentionConfig()

    config_path: Path = Field(DEFAULT_CONFIG, exclude=True)

    @field_validator("protected")
    @classmethod
    def _no_empty_patterns(cls, value: list[str]) -> list[str]:
        if any(not p.strip() for p in value):
            raise ValueError("patterns must not be empty")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    @property
    def base_dir(self) -> Path:
        """The folder of the config file: relative paths start here."""
        return self.config_path.resolve().parent

    def resolve(self, path: Path) -> Path:
        return path if path.is_absolute() else (self.base_dir / path).resolve()

    @property
    def install_path(self) -> Path:
        return self.resolve(self.install_dir)

    @property
    def state(self) -> StatePaths:
        return StatePaths(self.resolve(self.state_dir))

    @property
    def trusted_key_paths(self) -> list[Path]:
        return [self.resolve(p) for p in self.trusted_keys]


def config_path_from(cli_value: Path | None) -> Path:
    if cli_value is not None:
        return cli_value
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


def load_config(path: Path) -> Config:
    """Read and validate `path`.

    Raises:
        ConfigError: the file is missing, is not YAML, or has invalid keys; the message
            lists every problem with its key, so one edit fixes them all.
    """
    path = Path(path)
    return config_from_values(_read_yaml(path), path)


def config_from_values(values: dict[str, Any], path: Path, origin: str | None = None) -> Config:
    """Validate `values` as if they were the content of the file at `path`.

    `autotel init` checks what it is about to write this way (`origin` names its
    flags in the message), so a bad flag leaves nothing behind.

    Raises:
        ConfigError: one line per invalid key.
    """
    try:
        return Config(**values, config_path=path)
    except ValidationError as e:
        raise ConfigError(format_validation_errors(e, path, origin)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise ConfigError(
            f"{path.absolute()}: a folder, not a configuration file; pass the site's file: "
            f"--config {path / DEFAULT_CONFIG}"
        )
    if not path.is_file():
        raise ConfigError(
            f"{path.absolute()}: configuration file not found; create a site with "
            f"`autotel init DIR` or pass --config PATH (or set {CONFIG_ENV})"
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, found {type(data).__name__}")
    if "config_path" in data:
        raise ConfigError(f"{path}: config_path: not a configuration key")
    return data


def _yaml_problem(error: yaml.YAMLError) -> str:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


SECRET_KEYS = {"portal.pin", "database.dsn"}


def format_validation_errors(error: ValidationError, path: Path, origin: str | None = None) -> str:
    """Each problem: the key, what was expected, what was found and where it came from (the
    file or an AUTOTEL_ variable). One problem is one line, as every CLI error (DESIGN.md);
    several get a header line and a line each."""
    problems = [_problem(item, origin or path.name) for item in error.errors(include_url=False)]
    if len(problems) == 1:
        return f"{path}: {problems[0]}"
    lines = [f"{path}: {error.error_count()} configuration error(s):"]
    lines += [f"  - {problem}" for problem in problems]
    return "\n".join(lines)


def _problem(item: ErrorDetails, file_origin: str) -> str:
    loc = [str(part) for part in item["loc"]]
    key = ".".join(loc)
    expected = item["msg"]
    if item["type"] == "extra_forbidden":
        expected = f"unknown key; expected one of: {', '.join(_known_keys(loc[:-1]))}"
    found = "a secret value" if key in SECRET_KEYS else repr(item.get("input"))
    return f"{key}: {expected} (got {found}, {_origin(loc, file_origin)})"


def _origin(loc: list[str], file_origin: str) -> str:
    """Which source gave the bad value: the most specific AUTOTEL_ variable set, else the file."""
    names = [p for p in loc if not p.isdigit()]
    for depth in range(len(names), 0, -1):
        variable = "AUTOTEL_" + "__".join(names[:depth]).upper()
        if variable in os.environ:
            return f"from {variable}"
    return f"from {file_origin}"


def _known_keys(section: list[str]) -> list[str]:
    model: Any = Config
    for part in section:
        field_info = getattr(model, "model_fields", {}).get(part)
        if field_info is None:
            return []
        model = field_info.annotation
    fields = getattr(model, "model_fields", {})
    return sorted(name for name in fields if name != "config_path")


def render_yaml(values: dict[str, Any]) -> str:
    """The YAML text `autotel init` writes: only the keys given, the rest stay default."""
    return yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
