"""The command block at the top of docs/validation.md runs as written.

The commands are read from the document (continuation lines joined, comments dropped) and run
as subprocesses of the ``tierwise`` CLI in a temporary directory, so the document cannot show a
command the test does not run."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "validation.md"


def doc_commands() -> list[list[str]]:
    """The first ```bash block of docs/validation.md as argument lists."""
    text = DOC.read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "docs/validation.md has no ```bash block"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    out = []
    for line in joined.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(shlex.split(line))
    return out


def _cli() -> list[str]:
    exe = shutil.which("tierwise")
    return [exe] if exe else [sys.executable, "-m", "planner"]


def _run(argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([*_cli(), *argv[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_block_is_the_documented_workflow():
    cmds = doc_commands()
    assert [c[:2] for c in cmds] == [["tierwise", "calibrate"], ["tierwise", "sensitivity"], ["tierwise", "plan"],
                                    ["tierwise", "validate"]]
    plan = cmds[2]
    assert plan[plan.index("--engine") + 1] == "torch"
    assert plan[plan.index("--hardware") + 1] == "my-machine.yaml"


@pytest.mark.slow
def test_documented_commands_run_as_written(tmp_path):
    cmds = doc_commands()
    for argv in cmds:
        proc = _run(argv, tmp_path, timeout=900)
        assert proc.returncode == 0, f"{shlex.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}"
    plan = yaml.safe_load((tmp_path / "plan.yaml").read_text())
    assert plan["engine"] == "torch"
    assert plan["predicted"]["avg_weight_bits"] <= 5.0 + 1e-6  # the --avg-bits 5 budget holds
    machine = yaml.safe_load((tmp_path / "my-machine.yaml").read_text())
    assert machine["class"] == "cpu"
    # the same plan without --engine is made for the CPU class's default (llama.cpp), which runs
    # none of these formats: exit 2 naming --formats and pointing at --engine
    plan_cmd = cmds[2]
    i = plan_cmd.index("--engine")
    proc = _run(plan_cmd[:i] + plan_cmd[i + 2:], tmp_path, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "--formats" in proc.stderr and "--engine" in proc.stderr and "Traceback" not in proc.stderr
