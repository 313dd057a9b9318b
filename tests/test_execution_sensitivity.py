"""Data-driven sensitivity: measured tables, the planner's file loader, `tierwise sensitivity`."""

from __future__ import annotations

import pytest

from planner.cli import main
from planner.execution.sensitivity_data import measure_sensitivity, write_sensitivity
from planner.sensitivity import load_sensitivity_file

FORMATS = ["int8", "int4-g32", "int2-g32"]


@pytest.mark.parametrize("method", ["kl", "fisher"])
def test_scores_grow_as_bits_shrink(method):
    table = measure_sensitivity("digits-cnn", FORMATS, method=method, samples=64)
    assert set(table.scores) == {"model.conv1", "model.conv2", "model.conv3", "model.classifier"}
    for group, row in table.scores.items():
        assert row["int8"] < row["int4-g32"] < row["int2-g32"], (group, row)


def test_file_is_read_by_the_planner(tmp_path):
    table = measure_sensitivity("digits-cnn", ["int8", "int4-g32"], sparsity=["dense", "2:4"], samples=32)
    path = write_sensitivity(table, tmp_path / "sens.yaml")
    sens = load_sensitivity_file(path)
    assert sens.source == "file:sens.yaml"
    entries = dict(sens.entries)
    assert entries["model.conv3"]["int8"] == pytest.approx(table.scores["model.conv3"]["int8"], rel=1e-5)
    # conv1 has 9 inputs per output channel: 2:4 needs a multiple of 4, so it has no 2:4 entry
    assert "int8+2:4" not in entries["model.conv1"] and "int8+2:4" in entries["model.conv2"]


def test_cli_sensitivity(tmp_path, capsys):
    out = tmp_path / "s.yaml"
    assert main(["sensitivity", "--torch-model", "digits-cnn", "--formats", "int8,int4-g32", "--samples", "16",
                 "--out", str(out)]) == 0
    assert load_sensitivity_file(out).entries
    assert main(["sensitivity", "--torch-model", "digits-cnn", "--formats", "int5", "--out", str(out)]) == 2
    assert "unknown format 'int5'" in capsys.readouterr().err
