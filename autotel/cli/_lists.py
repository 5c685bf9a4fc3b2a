"""List options in both forms DESIGN.md allows: `--files a b` and `--files a --files b`.

Click knows only the second, so a command made with `spreading(...)` rewrites the
first into it before parsing: each bare value after a list option's value gets the
option repeated in front of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from typer.core import TyperCommand

Accepts = Callable[[str], bool]


def any_value(token: str) -> bool:
    return True


def spreading(options: Mapping[str, Accepts]) -> type[TyperCommand]:
    """A command class spreading `options`; each one's test says which bare tokens are
    further values of it (`--param a=1 b=2`: only `KEY=VALUE`, so a positional
    argument after them is still one)."""

    class SpreadListsCommand(TyperCommand):
        def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
            takes_value = {opt for p in self.params if not getattr(p, "is_flag", True)
                           for opt in getattr(p, "opts", [])}
            return super().parse_args(ctx, spread(args, options, takes_value))

    return SpreadListsCommand


def spread(args: list[str], list_options: Mapping[str, Accepts], takes_value: set[str]) -> list[str]:
    """Repeat a list option before each further bare value that follows it."""
    out: list[str] = []
    current: str | None = None
    rest = iter(args)
    for token in rest:
        name = token.split("=", 1)[0]
        if token == "--":
            out += [token, *rest]
            break
        if current is not None and not token.startswith("-") and list_options[current](token):
            out += [current, token]
            continue
        current = name if name in list_options else None
        out.append(token)
        if name in takes_value and "=" not in token:
            out.append(next(rest, ""))  # an option's own value, even one that starts with '-'
    return out
