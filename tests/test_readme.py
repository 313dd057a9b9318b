"""Every command of README.md's "Use" section runs, as written, and succeeds.

The commands run in order in one temporary folder (later lines use files earlier ones write:
plan.yaml, minilm-plan.yaml), through a ``tierwise`` on PATH that runs this checkout, with a
private data folder. ``tierwise serve`` runs until stopped, so that one line is launched on a
free port (``--port`` appended), probed on /healthz and terminated. Slow (a few minutes: two
plans, a capacity search, a calibration) but part of CI: the README must never show a command
that fails.
"""

from __future__ import annotations

import re
import shlex
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVE = re.compile(r"^tierwise serve(\s|$)")


def use_commands() -> list[str]:
    """The command lines of the first ```bash block under "## Use" (continuations joined,
    comments and blank lines dropped)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = re.search(r"^## Use\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert section, "README.md has no '## Use' section"
    block = re.search(r"```bash\n(.*?)```", section.group(1), flags=re.S)
    assert block, "the Use section has no ```bash block"
    joined = re.sub(r"\\\n\s*", " ", block.group(1))
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            commands.append(shlex.join(words))
    return commands


def test_use_section_lists_the_commands():
    cmds = use_commands()
    assert len(cmds) >= 10 and all(c.startswith("tierwise ") for c in cmds), cmds
    assert sum(bool(SERVE.match(c)) for c in cmds) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(command: str, cwd: Path, env: dict) -> None:
    port = _free_port()
    proc = subprocess.Popen(["bash", "-c", f"exec {command} --port {port}"], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"`{command}` exited with {proc.returncode}: {proc.stdout.read()}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, f"`{command}` did not answer /healthz within 60 s"
                time.sleep(0.5)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_every_use_command_succeeds(tmp_path, user_env):
    failures = []
    for command in use_commands():
        if SERVE.match(command):
            _serve(command, tmp_path, user_env)
            continue
        r = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=user_env, capture_output=True, text=True,
                           timeout=900)
        if r.returncode != 0:
            failures.append(f"$ {command}\nexit {r.returncode}\n{(r.stdout + r.stderr)[-2000:]}")
    assert not failures, "\n\n".join(failures)


def _commands_without_json() -> set[str]:
    import click
    import typer.main

    from planner.cli import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    out: set[str] = set()

    def walk(cmd, path: list[str]) -> None:
        if hasattr(cmd, "list_commands"):
            for name in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, name), [*path, name])
        elif "--json" not in {o for p in cmd.params for o in getattr(p, "opts", [])}:
            out.add(" ".join(path))

    walk(root, [])
    return out


def test_the_readmes_json_claim_matches_the_commands():
    # "every command takes --json" was false for `tierwise serve`: the README names each exception
    text = " ".join((ROOT / "README.md").read_text(encoding="utf-8").split())
    claim = re.search(r"Every command[^.]*takes `--json`[^.]*\.", text)
    assert claim, "README.md no longer says which commands take --json"
    missing = _commands_without_json()
    assert missing, "every command takes --json now: say so in README.md"
    for name in missing:
        assert f"`tierwise {name}`" in claim.group(0), (name, claim.group(0))
