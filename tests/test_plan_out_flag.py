"""`tierwise plan --out` is checked before the search and named as typed (there is no --path)."""

from __future__ import annotations

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
