"""The ``tierwise`` command line.

Every ``planner/cli/<name>.py`` module that defines ``register(app)`` adds its commands;
adding a command touches one file. Errors never surface as tracebacks: known errors print
one message on stderr and exit 2 (bad input, a bad command line included) or 3 (nothing
feasible). Every user-facing error is a ``TierwiseError``: ``exit_code`` is the exit status,
``render("cli")`` the text (fields as ``--flag``); ``--json`` also prints
``{"error": {code, message, field, details}}`` on stdout.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys

import typer
from rich.markup import escape

from hwmodels.errors import TierwiseError
from planner.cli.common import EXIT_BAD_INPUT, CliError, emit_json, err_console

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


def _usage_error_types() -> tuple[type[BaseException], ...]:
    """What the parser raises for a bad command line. typer (pinned in pyproject.toml) ships its
    own click whose exceptions derive from ``typer.TyperException``; an external click is
    checked too in case a typer that uses it is installed."""
    found: list[type[BaseException]] = []
    if hasattr(typer, "TyperException"):
        found.append(typer.TyperException)
    try:
        import click
    except ImportError:  # pragma: no cover - click is optional with a vendoring typer
        pass
    else:
        found.append(click.ClickException)
    return tuple(found)


def _given_value(argv: list[str], opts: list[str]) -> str | None:
    """The value given on the command line to one of ``opts`` (``--tp two`` or ``--tp=two``)."""
    for i, tok in enumerate(argv):
        for opt in opts:
            if tok == opt and i + 1 < len(argv):
                return argv[i + 1]
            if tok.startswith(opt + "=") and opt.startswith("--"):
                return tok[len(opt) + 1:]
    return None


def _describe_usage_error(exc: BaseException, argv: list[str]) -> tuple[str, str | None, dict | None]:
    """(message, field, details) of a parser error, naming the flag and, where one is close,
    what was probably meant."""
    param = getattr(exc, "param", None)
    field = getattr(param, "name", None)
    details: dict | None = None
    option = getattr(exc, "option_name", None)
    if option is not None and hasattr(exc, "possibilities"):  # an unknown option
        close = list(getattr(exc, "possibilities", None) or [])[:3]  # best first
        message = f"no such option {option}" + (f"; did you mean {' or '.join(close)}?" if close else "")
        details = {"option": option, "suggestions": close}
        return message, None, details
    if type(exc).__name__ == "MissingParameter" and param is not None:
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")] or list(getattr(param, "opts", []))
        shown = opts[0] if opts else (field or "argument").upper()
        return f"missing {shown}: it is required (see --help)", field, None
    text = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    text = text.replace("Value error, ", "")
    if param is not None:
        given = _given_value(argv, list(getattr(param, "opts", [])))
        if given is not None and repr(given) not in text:
            text = f"{text.rstrip('.')}; got {given!r}"
    return text, field, details


def _usage_error(exc: BaseException, argv: list[str]) -> int:
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # `tierwise` or `tierwise plan` alone: show the help
        text = exc.format_message().strip()  # empty when typer has printed the help with rich
        if text:
            err_console.print(text, markup=False, highlight=False, soft_wrap=True)
        return EXIT_BAD_INPUT
    message, field, details = _describe_usage_error(exc, argv)
    if _wants_json(argv):
        emit_json({"error": {"code": "usage", "message": message, "field": field, "details": details,
                             "exit_code": EXIT_BAD_INPUT}})
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if ctx is not None:
        err_console.print(f"Try '{ctx.command_path} --help' for help.", markup=False, highlight=False)
    return EXIT_BAD_INPUT


def _user_error(exc: TierwiseError, argv: list[str]) -> int:
    message = exc.render("cli")
    if _wants_json(argv):
        emit_json({"error": {"code": exc.code, "message": message, "field": exc.field, "details": exc.details,
                             "exit_code": exc.exit_code}})
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run one command line; return its exit code (0 ok, 2 bad input, 3 nothing feasible,
    1 an unexpected internal error)."""
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
    except (KeyboardInterrupt, typer.Abort):
        err_console.print("aborted")
        return 130
    except TierwiseError as exc:
        return _user_error(exc, argv)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
        if isinstance(exc, _usage_error_types()):
            return _usage_error(exc, argv)
        if os.environ.get("TIERWISE_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')} (set TIERWISE_DEBUG=1 for the traceback; please report it)",
            highlight=False,
            soft_wrap=True,
        )
        return 1
    return 0


def run() -> None:  # console-script entry point
    sys.exit(main())


__all__ = ["app", "main", "run", "CliError", "EXIT_BAD_INPUT", "json"]
