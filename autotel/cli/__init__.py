"""The `autotel` command: the only place an AutotelError becomes a message and an exit code.

Each module of this package adds its commands through `register(app)`; they are
loaded in alphabetical order of module name.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from autotel.errors import AutotelError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="autotel: telemetry sync and operator-confirmed updates for industrial sites.",
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Site configuration file [env AUTOTEL_CONFIG; default ./autotel.yaml]"),
    ] = None,
) -> None:
    ctx.obj = {"config": config}


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(app)


_register_commands()


def main() -> None:
    try:
        app(standalone_mode=False)
    except AutotelError as e:
        print(f"autotel: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("autotel: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer._click.exceptions.ClickException as e:  # usage errors: exit 2 with click's text
        e.show()
        sys.exit(e.exit_code)
    except typer._click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except typer._click.exceptions.Abort:
        print("Aborted!", file=sys.stderr)
        sys.exit(1)
