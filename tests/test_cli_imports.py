"""A command imports only what it uses: the light commands load neither torch, an ILP
solver, pandas nor matplotlib, and a plan loads no torch (its sensitivity prior ships as a
table) and no scipy."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "pulp", "highspy", "pandas", "matplotlib", "scipy")


def _modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, io, json, sys\n"
        "from planner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        "print(json.dumps([code, sorted(m.split('.')[0] for m in sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    rc, mods = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0, out.stderr
    return set(mods)


@pytest.mark.parametrize("argv", [
    ["estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--json"],
    ["hardware", "list"],
    ["models", "show", "llama-3.1-70b"],
])
def test_light_commands_import_nothing_heavy(argv):
    loaded = _modules_after(argv)
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_plan_imports_no_torch_and_no_scipy():
    loaded = _modules_after(["plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--kv", "bf16", "--json"])
    assert "highspy" in loaded  # the solver ran
    assert not loaded & {"torch", "scipy", "pandas", "matplotlib", "pulp"}


def _full_modules_after(argv: list[str]) -> set[str]:
    code = (
        "import contextlib, io, json, sys\n"
        "from planner.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = main({argv!r})\n"
        "print(json.dumps([code, sorted(sys.modules)]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600)
    rc, mods = json.loads(out.stdout.strip().splitlines()[-1])
    assert rc == 0, out.stderr
    return set(mods)


@pytest.mark.parametrize(("argv", "own"), [
    (["estimate", "--model", "qwen2.5-7b", "--hardware", "l4", "--json"], "planner.cli.estimate"),
    (["hardware", "show", "h100-sxm"], "planner.cli.catalog"),
])
def test_a_command_imports_only_its_own_command_module(argv, own):
    modules = _full_modules_after(argv)
    commands = {m for m in modules if m.startswith("planner.cli.") and m != "planner.cli.common"}
    assert commands == {own}
    assert not modules & {"scipy.optimize", "torch", "pulp", "highspy", "pandas", "matplotlib"}


def test_every_registered_command_is_in_the_lazy_table():
    # A command missing from COMMAND_MODULES would still run (every module is then loaded), but
    # slowly; the table must name each command's module exactly.
    from planner.cli import COMMAND_MODULES, command_modules, module_commands

    found = {cmd: mod for mod in command_modules() for cmd in module_commands(mod)}
    assert found == COMMAND_MODULES


def test_help_lists_every_command_and_a_typo_gets_a_suggestion(capsys):
    from planner.cli import COMMAND_MODULES, main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMAND_MODULES:
        assert f" {name} " in out, name
    assert main(["capacty", "serve"]) == 2
    assert "capacity" in capsys.readouterr().err
