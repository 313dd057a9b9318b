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
import re
import sys

import typer
import typer.core
import typer.main
from rich.markup import escape

from hwmodels.errors import TierwiseError, echo_value, per_front_end
from planner.cli.common import EXIT_BAD_INPUT, CliError, emit_json, err_console

#: Command name → the ``planner.cli`` module whose ``register(app)`` adds it. Running a
#: command imports only its module (start-up stays light); ``tierwise --help``, a name not
#: listed here and a mistyped name load every module, so a module missing from this table
#: still works (tests/test_cli_imports.py checks the table is complete).
COMMAND_MODULES: dict[str, str] = {
    "calibrate": "calibrate", "capacity": "capacity", "engines": "engines", "estimate": "estimate",
    "export": "export", "hardware": "catalog", "models": "catalog", "plan": "plan", "roofline": "roofline",
    "sensitivity": "sensitivity", "serve": "serve", "validate": "validate",
}


def command_modules() -> list[str]:
    """Every ``planner.cli`` module that may define ``register(app)``, by name."""
    pkg = importlib.import_module("planner.cli")
    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__)
                  if m.name != "common" and not m.name.startswith("_"))


def module_commands(name: str) -> dict[str, "click.Command"]:  # noqa: F821 - typer's click
    """The click commands ``planner.cli.<name>`` registers, by command name."""
    module = importlib.import_module(f"planner.cli.{name}")
    reg = getattr(module, "register", None)
    if not callable(reg):
        return {}
    scratch = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    scratch.callback()(lambda: None)  # a group even when the module registers one command
    reg(scratch)
    return dict(typer.main.get_command(scratch).commands)


def _takes_one_value(param) -> bool:  # noqa: ANN001 - typer's click parameter
    return (getattr(param, "param_type_name", None) == "option" and not getattr(param, "multiple", False)
            and not getattr(param, "count", False) and not getattr(param, "is_flag", False))


def _values_of(args: list[str], opts: list[str]) -> list[str]:
    """Every value given to one of ``opts`` in ``args`` (``--qps 5`` and ``--qps=5``)."""
    out = []
    for i, tok in enumerate(args):
        for opt in opts:
            if tok == opt and i + 1 < len(args):
                out.append(args[i + 1])
            elif tok.startswith(opt + "=") and opt.startswith("--"):
                out.append(tok[len(opt) + 1:])
    return out


def _refuse_repeats(cmd, ctx, args: list[str]) -> None:  # noqa: ANN001 - click's objects
    """An option that takes one value, given twice, is an error: the parser would keep the last
    silently (``--qps 5 --qps 10`` would size for 10 QPS alone), as a repeated item of a list is
    refused (``--qps 5,5``)."""
    if ctx.resilient_parsing:
        return
    _, _, order = cmd.make_parser(ctx).parse_args(args=list(args))
    seen: set[str] = set()
    for param in order:
        if not _takes_one_value(param):
            continue
        if param.name in seen:
            flag = next((o for o in param.opts if o.startswith("--")), param.opts[0])
            given = _values_of(list(args), list(param.opts))
            # the values as typed: token-like text in them ('{@kv_budget}') is not read as a field name
            shown = f" ({', '.join(map(echo_value, given))})" if given else ""
            joined = ",".join(given)
            several = (f", with several values comma separated: {flag} {per_front_end(joined, joined)}"
                       if "comma separated" in (param.help or "") and given else "")
            raise CliError(f"{flag} is given more than once{shown}; give it once{several}", EXIT_BAD_INPUT,
                           field=param.name)
        seen.add(param.name)


_ONCE_CLASSES: dict[type, type] = {}


def _once_class(cls: type) -> type:
    def parse_args(self, ctx, args):  # noqa: ANN001, ANN202 - click's signature
        _refuse_repeats(self, ctx, args)
        return cls.parse_args(self, ctx, args)

    # typer's commands have (empty) slots: a subclass that adds none can be swapped in on an instance
    return type(cls.__name__, (cls,), {"__slots__": (), "parse_args": parse_args, "__module__": cls.__module__})


def once_each(cmd):  # noqa: ANN001, ANN201 - typer's click command
    """``cmd`` (and a group's subcommands) refusing a repeated one-value option (:func:`_refuse_repeats`)."""
    cls = type(cmd)
    if cls not in _ONCE_CLASSES.values():
        cmd.__class__ = _ONCE_CLASSES.setdefault(cls, _once_class(cls))
    for sub in (getattr(cmd, "commands", None) or {}).values():
        once_each(sub)
    return cmd


class LazyCommands(typer.core.TyperGroup):
    """The root group: a command's module is imported when that command is looked up."""

    _loaded: set[str]

    def _load(self, modules: list[str]) -> None:
        loaded = self.__dict__.setdefault("_loaded", set())
        for name in modules:
            if name not in loaded:
                loaded.add(name)
                for cmd_name, cmd in module_commands(name).items():
                    self.commands.setdefault(cmd_name, cmd)

    def _load_all(self) -> None:
        order = sorted(self.commands)  # commands registered on ``app`` directly come first
        self._load(command_modules())
        known = set(order)
        self.commands = {**{n: self.commands[n] for n in order},
                         **dict(sorted((n, c) for n, c in self.commands.items() if n not in known))}

    def get_command(self, ctx, cmd_name: str):  # noqa: ANN001, ANN201 - click's signature
        if cmd_name not in self.commands:
            module = COMMAND_MODULES.get(cmd_name)
            if module is not None:
                self._load([module])
            if cmd_name not in self.commands:
                self._load_all()
        cmd = self.commands.get(cmd_name)
        return None if cmd is None else once_each(cmd)

    def list_commands(self, ctx) -> list[str]:  # noqa: ANN001 - click's signature
        self._load_all()
        return list(self.commands)

    def resolve_command(self, ctx, args):  # noqa: ANN001, ANN201 - click's signature
        if args and args[0] not in self.commands and args[0] not in COMMAND_MODULES:
            self._load_all()  # so that a mistyped name gets its suggestions
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="tierwise",
    help="Hardware-aware cost model and compression planner: how to compress, split and place a network on real hardware.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=LazyCommands,
)


@app.callback()
def _root() -> None:
    """Tierwise: estimate, plan, validate and export compressed, parallel deployments."""


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


_BOUNDS = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
           "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}


def _plain_value_error(exc: BaseException, param) -> str | None:  # noqa: ANN001 - typer's click parameter
    """A typed option's value that does not parse or is out of its range, in plain words naming the
    flag and the value given (``--tokens expects a number such as 2e12; got 'abc'``). typer checks
    the value with pydantic, whose wording ('Input should be a valid number, unable to parse string
    as a number') is not the user's; ``None`` for any other error."""
    errors = getattr(exc.__cause__, "errors", None)
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    if not callable(errors) or not opts:
        return None
    try:
        err = errors()[0]
    except (IndexError, TypeError):
        return None
    kind, got, ctx = err.get("type", ""), err.get("input"), err.get("ctx") or {}
    example = re.search(r"e\.g\. ([^\s,;()]+)", getattr(param, "help", None) or "")
    shown = f"got {got!r}"
    from planner.request.fields import EXPECTED_BY_ERROR

    expected = EXPECTED_BY_ERROR.get(kind)
    if expected in ("a number", "a whole number"):
        default = "8, 0.5 or 2e12" if expected == "a number" else "8"
        return f"{opts[0]} expects {expected} such as {example.group(1) if example else default}; {shown}"
    if expected == "true or false":
        return f"{opts[0]} expects true or false; {shown}"
    if kind in _BOUNDS and _BOUNDS[kind][1] in ctx:
        word, key = _BOUNDS[kind]
        return f"{opts[0]} must be {word} {ctx[key]}; {shown}"
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
        opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
        # a positional argument by its metavar (PLAN_B), as --help shows it, not its Python name (b)
        shown = opts[0] if opts else (getattr(param, "metavar", None) or (field or "argument").upper())
        return f"missing {shown}: it is required (see --help)", field, None
    plain = _plain_value_error(exc, param)
    if plain is not None:
        return plain, field, None
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
    refused = _capacity_of_a_model_that_generates_nothing(exc, argv)
    if refused is not None:  # say that before asking for the SLOs such a model has no use for
        return _user_error(refused, argv)
    message, field, details = _describe_usage_error(exc, argv)
    if _wants_json(argv):
        emit_json({"error": {"code": "usage", "message": message, "field": field, "details": details,
                             "exit_code": EXIT_BAD_INPUT}})
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if ctx is not None:
        err_console.print(f"Try '{ctx.command_path} --help' for help.", markup=False, highlight=False)
    return EXIT_BAD_INPUT


def _capacity_of_a_model_that_generates_nothing(exc: BaseException, argv: list[str]) -> TierwiseError | None:
    """``tierwise capacity serve|frontier`` missing a required flag (``--ttft-slo``) for an encoder, ViT
    or CNN: the request layer's refusal of the model (it generates no tokens), which the missing
    flag would otherwise hide; None otherwise."""
    if type(exc).__name__ != "MissingParameter" or argv[:1] != ["capacity"]:
        return None
    # the parser's own values: options given on the command line are processed before a missing one
    params = getattr(getattr(exc, "ctx", None), "params", None) or {}
    names = [params["model"]] if params.get("model") else []
    names += str(params.get("models") or "").split(",")
    try:
        from planner.arch import load_arch
        from planner.request.capacity import check_generative

        check_generative([load_arch(n.strip()) for n in names if n.strip()])
    except TierwiseError as refusal:
        return refusal if refusal.field in ("model", "models") else None
    except Exception:  # noqa: BLE001 - an id that does not load: the usage error stands, the request names it later
        return None
    return None


#: Fields that are positional arguments on the command line, not ``--flags``: a plan file
#: (``tierwise export PLAN``, ``plan show``, ``validate``) is named as the argument it is.
POSITIONAL_FIELDS = {"path": "PLAN"}


def _user_error(exc: TierwiseError, argv: list[str]) -> int:
    if exc.field in POSITIONAL_FIELDS and not getattr(exc, "aliases", None):
        exc.aliases = POSITIONAL_FIELDS
    message = exc.render("cli")
    if _wants_json(argv):
        emit_json({"error": {"code": exc.code, "message": message, "field": exc.field, "details": exc.render_details("cli"),
                             "exit_code": exc.exit_code}})
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return exc.exit_code


def main(argv: list[str] | None = None) -> int:
    """Run one command line; return its exit code (0 ok, 2 bad input, 3 nothing feasible,
    1 an unexpected internal error)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    previous = _catch_interrupt()
    try:
        return _main(argv)
    finally:
        _restore_interrupt(previous)


def _catch_interrupt():
    """Ctrl-C (SIGINT) raises KeyboardInterrupt as usual and also marks the process interrupted
    (``planner.deadline.INTERRUPTED``): a solver that swallowed the exception (HiGHS runs Python callbacks)
    sees its deadline cancelled, and no file is committed afterwards. Returns the handler it replaced."""
    import signal
    import threading

    from planner.deadline import INTERRUPTED

    INTERRUPTED.clear()
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_interrupt(signum, frame):  # noqa: ARG001 - the signal module's signature
        INTERRUPTED.set()
        raise KeyboardInterrupt

    try:
        return signal.signal(signal.SIGINT, on_interrupt)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return None


def _restore_interrupt(previous) -> None:
    import signal

    from planner.deadline import INTERRUPTED

    INTERRUPTED.clear()
    if previous is not None:
        try:
            signal.signal(signal.SIGINT, previous)
        except (ValueError, OSError):
            pass


def _aborted() -> int:
    err_console.print("aborted (Ctrl-C): the command stopped and wrote nothing", highlight=False)
    return 130


def _main(argv: list[str]) -> int:
    from planner.deadline import INTERRUPTED

    try:
        rv = app(args=argv, prog_name="tierwise", standalone_mode=False)
        # With standalone_mode=False click returns the code of a `typer.Exit(n)` raised inside
        # a command instead of raising it.
        if INTERRUPTED.is_set():
            return _aborted()
        if isinstance(rv, int) and not isinstance(rv, bool):
            return rv
    except typer.Exit as e:  # raised by commands for non-zero exits (typer turns Ctrl-C into Exit(130))
        if INTERRUPTED.is_set() or e.exit_code == 130:
            return _aborted()
        return int(e.exit_code or 0)
    except SystemExit as e:
        if INTERRUPTED.is_set():
            return _aborted()
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_BAD_INPUT
    except (KeyboardInterrupt, typer.Abort):
        return _aborted()
    except TierwiseError as exc:
        if INTERRUPTED.is_set():  # the deadline's Cancelled, or an error of a half-stopped step
            return _aborted()
        return _user_error(exc, argv)
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into messages
        if INTERRUPTED.is_set():
            return _aborted()
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
