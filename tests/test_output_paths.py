"""Where a command writes (``--out``, ``--csv``, ``--plot``): one rule for every command, checked before any work.

Missing folders on the way are created; a file where a folder must be, a folder where the file must be, or a
place where no file can be made is an exit-2 error naming the flag. Before, ``plan --out afile/x.yaml`` solved for
16 s and then said "File exists", ``capacity --csv afile/x.csv`` blamed a "non-existent directory" that existed,
and ``capacity --csv nodir/x.csv`` refused a folder that ``plan --out nodir/x.yaml`` created.
"""

from __future__ import annotations

import os

import pytest

import planner.search as search
import planner.frontier as frontier

PLAN = ["plan", "--model", "llama-3.2-1b", "--hardware", "l4"]
FRONTIER = ["capacity", "frontier", "--model", "llama-3.2-1b", "--hardware", "l4", "--prompt", "512", "--gen", "128",
            "--max-devices", "2", "--executor", "serial"]
TRAIN = ["capacity", "train", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tokens", "1e11", "--days", "30",
         "--executor", "serial"]


@pytest.fixture()
def blocker(tmp_path):
    f = tmp_path / "afile"
    f.write_text("not a folder\n")
    return f


@pytest.fixture()
def no_search(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("searched before checking where the result goes")

    monkeypatch.setattr(search.Planner, "solve", boom)
    monkeypatch.setattr(frontier, "run_frontier_task", boom)


@pytest.mark.parametrize("args, flag", [
    ([*PLAN, "--out", "{b}/x.yaml"], "--out"),
    ([*PLAN, "--pareto", "2", "--csv", "{b}/x.csv"], "--csv"),
    ([*PLAN, "--pareto", "2", "--plot", "{b}/x.png"], "--plot"),
    ([*FRONTIER, "--csv", "{b}/x.csv"], "--csv"),
    ([*FRONTIER, "--plot", "{b}/deeper/x.png"], "--plot"),
])
def test_a_file_where_a_folder_goes_is_refused_before_the_search(cli, blocker, no_search, args, flag):
    r = cli(*[a.replace("{b}", str(blocker)) if isinstance(a, str) else a for a in args])
    assert r.code == 2, r.err
    assert r.err.startswith(f"error: {flag}: cannot write {blocker}/") and f"{blocker} is a file, not a folder" in r.err
    assert "non-existent" not in r.err and "File exists" not in r.err and "Traceback" not in r.err


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs a /proc file system")
def test_a_place_no_file_can_be_made_is_refused_before_the_search(cli, no_search):
    r = cli(*PLAN, "--out", "/proc/x.yaml")
    assert r.code == 2 and r.err.startswith("error: --out: cannot write /proc/x.yaml: no new file can be made in /proc")


def test_missing_folders_are_created_by_every_command(cli, tmp_path):
    r = cli(*TRAIN, "--csv", tmp_path / "a" / "b" / "train.csv")
    assert r.code == 0, r.err
    assert (tmp_path / "a" / "b" / "train.csv").read_text().startswith("hardware") or \
        (tmp_path / "a" / "b" / "train.csv").stat().st_size > 0
    r = cli(*PLAN, "--out", tmp_path / "c" / "plan.yaml")
    assert r.code == 0 and (tmp_path / "c" / "plan.yaml").is_file()
    r = cli("export", tmp_path / "c" / "plan.yaml", "--format", "vllm", "--out", tmp_path / "d" / "deploy")
    assert r.code == 0 and any((tmp_path / "d" / "deploy").iterdir())
    # nothing but the outputs: the probe file each check makes is gone
    assert not [p for p in tmp_path.rglob(".tierwise-*")]


def test_a_folder_given_as_the_file_and_a_file_given_as_the_folder(cli, tmp_path, blocker):
    r = cli(*PLAN, "--out", tmp_path)
    assert r.code == 2 and "--out" in r.err
    r = cli(*PLAN, "--out", tmp_path / "p.yaml")
    assert r.code == 0
    r = cli("export", tmp_path / "p.yaml", "--format", "vllm", "--out", blocker)
    assert r.code == 2 and f"--out: {blocker} is a file; expected a folder" in r.err
    r = cli(*TRAIN, "--csv", tmp_path)
    assert r.code == 2 and f"--csv: {tmp_path} is a folder; expected the name of a file" in r.err


def test_a_plot_path_ending_in_a_slash_is_a_folder_even_before_it_exists(cli, tmp_path):
    """`--plot out/` wrote ./out.png beside the folder --csv created in the same command."""
    out = tmp_path / "out"
    r = cli(*TRAIN, "--csv", out / "ct.csv", "--plot", f"{out}/")
    assert r.code == 0, r.err
    assert (out / "capacity-train.png").is_file() and not (tmp_path / "out.png").exists()
