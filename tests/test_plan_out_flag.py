"""`tierwise plan --out` is checked before the search and named as typed (there is no --path)."""

from __future__ import annotations

import json

import pytest


@pytest.mark.parametrize("extra, out, expect", [
    (("--pareto", "3"), "par/", "with --pareto 3, --out is a plan file name ending in .yaml, .yml or .json"),
    ((), "p.txt", "--out: plan files end in .yaml, .yml or .json; got 'p.txt'"),
])
def test_a_bad_out_names_out(cli, tmp_path, monkeypatch, extra, out, expect):
    monkeypatch.chdir(tmp_path)
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", *extra, "--out", out)
    assert r.code == 2 and expect in r.err, r.err
    assert "--path" not in r.err and r.err.startswith("error: --out:")
    assert list(tmp_path.iterdir()) == []


def test_pareto_out_numbers_the_files(cli, tmp_path):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--pareto", "2", "--out", tmp_path / "plans.yaml")
    assert r.code == 0, r.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plans-1.yaml", "plans-2.yaml"]


def test_pareto_says_what_it_wrote_one_line_per_file(cli, tmp_path):
    # Was: the frontier table and nothing else, while a single plan's --out prints "wrote plan.yaml".
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--pareto", "3",
            "--out", tmp_path / "plans.yaml", "--csv", tmp_path / "points.csv")
    assert r.code == 0, r.err
    written = sorted(tmp_path.iterdir())
    assert len(written) >= 3 and tmp_path / "points.csv" in written
    wrote = [line for line in r.out.splitlines() if line.startswith("wrote ")]
    assert sorted(wrote) == sorted(f"wrote {p}" for p in written)
    single = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--out", tmp_path / "one.yaml")
    assert single.code == 0 and f"wrote {tmp_path / 'one.yaml'}" in single.out.splitlines()


def test_pareto_json_stays_json(cli, tmp_path):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--pareto", "2",
            "--out", tmp_path / "plans.yaml", "--json")
    assert r.code == 0, r.err
    assert len(json.loads(r.out)["plans"]) == len(list(tmp_path.iterdir()))
