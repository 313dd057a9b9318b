"""The ``tierwise`` command line.

Every ``planner/cli/<name>.py`` module that defines ``register(app)`` adds its commands;
adding a command touches one file. Errors never surface as tracebacks: known errors print
one message on stderr and exit 2 (bad input) or 3 (nothing feasible).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys

import typer
from rich.markup import escape

from planner.cli.common import EXIT_BAD_INPUT, CliError, emit_json, err_console, exit_for

app = typer.Typer(
    name="tierwise",
    help="Hardware-aware cost model and compression planner: how to compress, split and place a network on real hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Tierwise: estimate, plan, validate and export compressed, parallel deployments."""


def _load_commands() -> None:
    pkg = importlib.import_module("planner.cli")
    for mod in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if mod.name in ("common",) or mod.name.startswith("_"):
            continue
        module = importlib.import_module(f"planner.cli.{mod.name}")
        reg = getattr(module, "register", None)
        if callable(reg):
            reg(app)


_load_commands()


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = app(args=argv, prog_name="tierwise", standalone_mode=False)
        # With standalone_mode=False click returns the code of a `typer.Exit(n)` raised inside
        # a command instead of raising it.
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except typer.Exit as e:  # raised by commands for non-zero exits
        return int(e.exit_code or 0)
    except SystemExit as e:
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
        import click

        if isinstance(exc, click.exceptions.Abort):
            err_console.print("aborted")
            return 130
        if isinstance(exc, click.ClickException):
            exc.show()
            return exc.exit_code if exc.exit_code else EXIT_BAD_INPUT
        mapped = exit_for(exc)
        if mapped is None:
            if os.environ.get("TIERWISE_DEBUG"):
                raise
            err_console.print(
                f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')} (set TIERWISE_DEBUG=1 for the traceback; please report it)",
                highlight=False,
                soft_wrap=True,
            )
            return 1
        code, message = mapped
        payload = getattr(exc, "payload", None)
        if _wants_json(argv):
            body = {"error": {"code": code, "message": message, "field": getattr(exc, "field", None)}}
            if payload:
                body["error"]["details"] = payload
            emit_json(body)
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        return code
    return 0


def run() -> None:  # console-script entry point
    sys.exit(main())


__all__ = ["app", "main", "run", "CliError", "EXIT_BAD_INPUT", "json"]
