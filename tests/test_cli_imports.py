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
