"""Helpers shared by the command modules: finding the config, printing."""

from __future__ import annotations

import json
import sys
from typing import Any

import typer

from autotel.config import Config, config_path_from, load_config


def site_config(ctx: typer.Context) -> Config:
    """The site's config from `--config`, `AUTOTEL_CONFIG` or `./autotel.yaml`."""
    root = ctx.find_root()
    given = (root.obj or {}).get("config") if root.obj else None
    return load_config(config_path_from(given))


def say(text: str = "") -> None:
    print(text, flush=True)


def warn(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str), flush=True)


def render_table(header: tuple[str, ...], rows: list[tuple[str, ...]], width: int) -> list[str]:
    """Left-aligned columns two spaces apart; the last column is cut with `…` to fit `width`."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    lines = []
    for row in [header, *rows]:
        head = "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  "
        room = max(10, width - len(head))
        last = row[-1] if len(row[-1]) <= room else row[-1][: room - 1] + "…"
        lines.append((head + last).rstrip())
    return lines
