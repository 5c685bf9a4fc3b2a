"""The `autotel` command: the only place an AutotelError becomes a message and an exit code.

Each module of this package adds its commands through `register(app)`; `_panels`
says in which group and order `autotel --help` lists them.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path
from typing import Annotated

import typer

from autotel.cli._panels import position
from autotel.errors import AutotelError

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="autotel: telemetry sync and operator-confirmed updates for industrial sites.",
    epilog=(
        "Exit codes: 0 done · 1 other error · 2 command line or configuration · 3 signature "
        "or licence · 4 update package refused · 5 job failed · 6 database · 7 state busy or "
        "disk full · 11 site unreachable · 12 site certificate changed · 13 sign-in refused · "
        "14 transfer broken.\n\nSetting up sites and the admin's routine: docs/admin-guide.md"
    ),
)


@app.callback()
def _global_options(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="Site configuration file (env AUTOTEL_CONFIG; default ./autotel.yaml)"),
    ] = None,
) -> None:
    ctx.obj = {"config": config}


def _register_commands() -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.name.startswith("_"):
            continue
        importlib.import_module(f"{__name__}.{module.name}").register(app)
    app.registered_commands.sort(key=lambda command: position(command.name))
    app.registered_groups.sort(key=lambda group: position(group.name))


_register_commands()


def main() -> None:
    try:
        # Without standalone mode click returns a command's `typer.Exit` code instead of exiting.
        code = app(standalone_mode=False)
    except AutotelError as e:
        fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except typer._click.exceptions.NoArgsIsHelpError:  # the help is already printed
        sys.exit(2)
    except typer._click.exceptions.UsageError as e:  # a mistyped command line: exit 2
        fail(_usage_problem(e), e.exit_code)
    except typer._click.exceptions.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except typer.Abort:
        fail("aborted", 1)
    except OSError as e:  # a path the user gave that cannot be read or written
        fail(f"{str(e.filename) + ': ' if e.filename else ''}{e.strerror or e}", 1)
    sys.exit(code if isinstance(code, int) else 0)


def fail(message: str, exit_code: int) -> None:
    """The one way autotel reports an error: `autotel: error: ...` on stderr, then exit."""
    print(f"autotel: error: {message}", file=sys.stderr)
    sys.exit(exit_code)


def _usage_problem(error: typer._click.exceptions.UsageError) -> str:
    command = error.ctx.command_path if error.ctx is not None else "autotel"
    return f"{error.format_message()} (see `{command} --help`)"
