"""Job kinds: YAML files naming a kind's steps and policy.

A kind is data: `jobs/apply.yaml` says `steps: [verify, backup, patch, migrate,
restart]` and `on_failure: [rollback]`. A step entry is a name or a mapping with
`name`, `timeout_s`, `retries`, `retry_delay_s`, `params` (fixed by the kind; they
win over the job's own params of the same name), and the progress message shown
when it starts (`msg`, Ukrainian, and `msg_en`); the kind may word its final `done`
event (`done_msg`, `done_msg_en`). The site's own `jobs/` folder in the
install directory may add kinds or override the shipped ones.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from autotel.errors import JobError
from autotel.resources import bundled_dir


class StepPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1)
    timeout_s: float | None = Field(None, gt=0)
    retries: int = Field(0, ge=0, le=100)
    retry_delay_s: float = Field(1.0, ge=0)
    params: dict[str, Any] = {}
    msg: str = ""
    msg_en: str = ""


class JobKind(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    steps: list[StepPolicy] = Field(min_length=1)
    on_failure: list[StepPolicy] = []
    done_msg: str = "Готово"
    done_msg_en: str = "Done"
    source: str = ""

    @field_validator("steps", "on_failure", mode="before")
    @classmethod
    def _names_to_policies(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": v} if isinstance(v, str) else v for v in value]
        return value


def kind_dirs(install_dir: Path | None) -> list[Path]:
    """Folders searched for `<kind>.yaml`, first match wins: the site's, then the shipped."""
    dirs = []
    if install_dir is not None and (install_dir / "jobs").is_dir():
        dirs.append(install_dir / "jobs")
    dirs.append(bundled_dir("jobs"))
    return dirs


def load_kind(kind: str, install_dir: Path | None, known_steps: set[str]) -> JobKind:
    """Raises: JobError naming the file when the kind is unknown, invalid or uses an unknown step."""
    for folder in kind_dirs(install_dir):
        path = folder / f"{kind}.yaml"
        if not path.is_file():
            continue
        stat = path.stat()
        return _parse_kind_cached(kind, path, stat.st_mtime_ns, stat.st_size,
                                  frozenset(known_steps))
    searched = ", ".join(str(d) for d in kind_dirs(install_dir))
    raise JobError(f"unknown job kind {kind!r}: no {kind}.yaml in {searched}")


def available_kinds(install_dir: Path | None) -> list[str]:
    return sorted({p.stem for d in kind_dirs(install_dir) for p in d.glob("*.yaml")})


@functools.lru_cache(maxsize=256)
def _parse_kind_cached(kind: str, path: Path, mtime_ns: int, size: int,
                       known_steps: frozenset[str]) -> JobKind:
    """Parsing a kind costs more than a job's bookkeeping; an edited file has a new key."""
    return _parse_kind(kind, path, known_steps)


def _parse_kind(kind: str, path: Path, known_steps: frozenset[str]) -> JobKind:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise JobError(f"{path}: expected a mapping with 'steps', found {type(data).__name__}")
        parsed = JobKind(**data, name=kind, source=str(path))
    except yaml.YAMLError as e:
        raise JobError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise JobError(f"{path}: cannot read the job kind: {e}") from None
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, x['loc']))}: {x['msg']}" for x in e.errors(include_url=False)
        )
        raise JobError(f"{path}: invalid job kind: {problems}") from None
    unknown = [s.name for s in [*parsed.steps, *parsed.on_failure] if s.name not in known_steps]
    if unknown:
        raise JobError(
            f"{path}: unknown step(s) {', '.join(unknown)}; known steps: {', '.join(sorted(known_steps))}"
        )
    return parsed
