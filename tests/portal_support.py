"""Helpers for the portal tests: a portal on 127.0.0.1:0, a real pending package,
an SSE reader, and a runner in a thread for the end-to-end apply."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from autotel.config import Config
from autotel.crypto.signing import load_private_key
from autotel.package.build import PackageSpec, Source, build_package
from autotel.runner.loop import Runner
from autotel.timeutil import utcnow
from autotel.web.portal import build_portal
from autotel.web.server import ServerHandle
from tests.apply_support import receive as make_pending

PIN = "4321"  # the PIN of conftest's sites
NOTES = "Додано журнал тривог.\nВиправлено відображення температури котла №2."


def local(config: Config, **portal: Any) -> Config:
    """The same site with its portal on 127.0.0.1 (and any other portal settings)."""
    return config.model_copy(update={"portal": config.portal.model_copy(
        update={"host": "127.0.0.1", **portal})})


@contextmanager
def running_portal(config: Config, **portal: Any) -> Iterator[ServerHandle]:
    handle = build_portal(local(config, **portal), port=0).start_background()
    try:
        yield handle
    finally:
        handle.stop()


def client(handle: ServerHandle, **kwargs: Any) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{handle.port}", timeout=10, **kwargs)


def publish(folder: Path, private_key: Path, version: str, files: dict[str, bytes],
            migrations: dict[str, str] | None = None, notes: str = NOTES) -> Path:
    """A signed package built with the package helper's build API, as `autotel publish` does."""
    source = folder / f"src-{version}"
    for rel, content in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(content)
    sql = []
    for name, text in (migrations or {}).items():
        (source / name).write_text(text, encoding="utf-8")
        sql.append(Source(name, source / name))
    now = utcnow()
    spec = PackageSpec(version=version, notes=notes, product="autotel", created=now,
                       expires=now + timedelta(days=30),
                       files=[Source(rel, source / rel) for rel in files], migrations=sql)
    return build_package(spec, load_private_key(private_key), folder / "out")


def pending_package(config: Config, private_key: Path, folder: Path, version: str = "1.1.0") -> str:
    return make_pending(config, publish(folder, private_key, version, {"app/main.py": b"v\n"}))


def append_event(config: Config, **event: Any) -> None:
    with open(config.state.events, "a", encoding="utf-8") as f:
        f.write(json.dumps(event, ensure_ascii=False) + "\n")


class SseReader:
    """Reads `data:` events from an open streaming response, skipping comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()

    def next_event(self) -> dict[str, Any]:
        for line in self.lines:
            if line.startswith("data: "):
                return dict(json.loads(line[len("data: "):]))
        raise AssertionError("the stream ended")


@contextmanager
def runner_thread(config: Config) -> Iterator[Runner]:
    """The site's real runner (with its step worker process) in a thread of this test."""
    stop = threading.Event()
    runner = Runner(config, stop)
    thread = threading.Thread(target=runner.run_forever, daemon=True, name="test-runner")
    thread.start()
    try:
        yield runner
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive(), "the runner did not stop"
