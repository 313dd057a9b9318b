"""Shared test helpers.

- ``cli``: run the ``tierwise`` command line in-process (``planner.cli.main``) and get its
  exit code, stdout and stderr (``code, out, err = cli("estimate", ...)``);
- ``tierwise_bin``: a folder whose ``tierwise`` runs *this* checkout's command line, to put on
  ``PATH`` for tests that run commands as a user types them;
- ``INTERNAL``: the text every unexpected exception prints (no user-facing error may show it);
- ``published_evaluation``: benchmarks/published.py's leave-one-source-out evaluation of
  benchmarks/data/published.csv, computed once for the tests that check it;
- ``quick_calibration``: one real ``calibrate("cpu", quick=True)`` of this machine and the
  progress steps it reported, shared read-only by the tests that check a real measurement.

Test files import nothing from here: pytest hands the fixtures to the tests that name them
(``tests/api/conftest.py`` adds the REST client fixtures).
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from benchscripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
INTERNAL = "internal error"


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    def __iter__(self):  # ``code, out, err = cli(...)``
        return iter((self.code, self.out, self.err))


@pytest.fixture
def cli(capsys):
    """``cli(*args) -> CliResult``: one in-process run of the command line."""
    from planner.cli import main

    def run(*args) -> CliResult:
        capsys.readouterr()  # earlier output belongs to the caller, not to this run
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def tierwise_bin(tmp_path_factory) -> Path:
    """A folder holding a ``tierwise`` executable that runs this checkout with this Python."""
    folder = tmp_path_factory.mktemp("bin")
    exe = folder / "tierwise"
    exe.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m planner "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return folder


@pytest.fixture
def user_env(tierwise_bin, tmp_path) -> dict[str, str]:
    """Environment of a user's shell: this checkout's ``tierwise`` first on PATH, a private
    data folder (the REST service's database) under ``tmp_path``."""
    env = dict(os.environ)
    env["PATH"] = f"{tierwise_bin}{os.pathsep}{env.get('PATH', '')}"
    env["TIERWISE_DATA_DIR"] = str(tmp_path / "data")
    env.pop("TIERWISE_DEBUG", None)
    return env


@pytest.fixture(scope="session")
def quick_calibration():
    """``(result, steps)`` of one quick calibration of this machine (about half a minute):
    the tests that read a real measurement share it instead of measuring again."""
    from planner.execution.calibrate import calibrate

    steps: list[tuple[int, int]] = []
    result = calibrate("cpu", quick=True, progress=lambda what, i, n: steps.append((i, n)))
    return result, tuple(steps)


@pytest.fixture(scope="session")
def published_evaluation():
    """``(rows, evaluate(rows, cv=True))`` of benchmarks/published.py over benchmarks/data/published.csv:
    the in-sample and leave-one-source-out predictions of every published row (minutes), which
    the cross-validated error limits (test_published) and the interval table (test_intervals)
    both read."""
    pub = load_benchmark("published")
    rows = pub.load_rows(pub.DEFAULT_CSV)
    return rows, pub.evaluate(rows, cv=True)
