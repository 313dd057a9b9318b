"""The validation scripts refuse a bad table or bad flags with one line and exit 2, and never
overwrite the shipped baseline or interval table with a partial or foreign run."""

from __future__ import annotations

import csv
import shutil

import pytest
from benchscripts import load_benchmark

pub = load_benchmark("published")
intervals = load_benchmark("intervals")
training = load_benchmark("published_training")


def _table(tmp_path, edit=None, drop: str | None = None, name: str = "t.csv"):
    rows = list(csv.DictReader(pub.DEFAULT_CSV.open(newline="")))[:4]
    fields = [f for f in rows[0] if f != drop]
    if edit:
        edit(rows)
    path = tmp_path / name
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _bad_value(rows):
    rows[1]["value"] = "abc"


def _twice(rows):
    rows.append(dict(rows[0]))


@pytest.mark.parametrize("edit, drop, says", [(None, "unit", "missing column(s) unit"),
                                              (_bad_value, None, "value must be a positive number; got 'abc'"),
                                              (_twice, None, "the id appears twice")])
def test_a_bad_table_is_refused_naming_the_row_or_column(tmp_path, capsys, edit, drop, says):
    path = _table(tmp_path, edit, drop)
    for main in (pub.main, intervals.main, training.main):
        assert main(["--csv", str(path)]) == 2
        err = capsys.readouterr().err
        assert says in err and "Traceback" not in err and err.count("\n") == 1, err


def test_a_directory_or_an_empty_file_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for path, says in ((tmp_path, "not a file"), (empty, "missing column(s) id")):
        assert pub.main(["--csv", str(path)]) == 2
        assert says in capsys.readouterr().err


def test_unknown_rows_and_out_of_range_constants_are_refused(capsys):
    assert pub.main(["--rows", "I01,XYZ"]) == 2
    assert "--rows: no row XYZ" in capsys.readouterr().err
    for value in ("nan", "0", "-1", "1.5"):
        assert pub.main(["--set", f"KV_GATHER_EFFICIENCY={value}"]) == 2
        assert "value must be a finite number above 0 and at most 1" in capsys.readouterr().err


def test_the_shipped_baseline_is_not_replaced_by_a_partial_run(tmp_path, capsys):
    before = pub.DEFAULT_BASELINE.read_bytes()
    relative = pub.DEFAULT_BASELINE.relative_to(pub.DEFAULT_BASELINE.parents[2])
    for argv in (["--rows", "I14"], ["--set", "KV_GATHER_EFFICIENCY=0.5"], ["--csv", str(_table(tmp_path))]):
        for target in (str(pub.DEFAULT_BASELINE), str(pub.DEFAULT_BASELINE.parent / ".." / "data" / relative.name)):
            assert pub.main([*argv, "--write-baseline", target]) == 2
            assert "would replace the shipped baseline" in capsys.readouterr().err
    assert pub.DEFAULT_BASELINE.read_bytes() == before


def test_the_shipped_interval_table_is_built_from_the_shipped_rows_only(tmp_path, capsys):
    copy = tmp_path / "copy.csv"
    shutil.copy(pub.DEFAULT_CSV, copy)
    assert intervals.main(["--csv", str(copy), "--write"]) == 2
    assert "built from published.csv only" in capsys.readouterr().err


def test_a_fold_with_no_rows_to_fit_keeps_the_current_constants(capsys):
    # two rows of one source: the fold without it has no rows, so nothing can be fitted (it crashed with
    # --set, and without it took every constant's first grid value)
    assert pub.main(["--rows", "I14,I15", "--cv", "loso", "--set", "KV_GATHER_EFFICIENCY=0.75"]) == 0
    out = capsys.readouterr().out
    assert "KV_GATHER_EFFICIENCY=0.75" in out and "GGML_CPU_BLOCK_OPS=5" in out
