"""The cost model against published measurements (benchmarks/data/published.csv, one public source per row).

Two kinds of checks, both runnable in a plain clone:

* per category, the leave-one-source-out cross-validated (LOSO) median |error|, p90 |error| and
  |signed median| over the reported rows (the declared fit split, ``split`` = ``fit``, is never
  reported) stay at or below the measured levels (the thresholds are those figures plus a few
  points, so a regression fails while an improvement passes; the measured figures are in the
  comments and in docs/costmodel.md);
* no row regresses by more than 5 points of |error| against benchmarks/data/baseline.json
  (written by ``python benchmarks/published.py --write-baseline``; rewrite it when a change
  improves rows, and say so in the commit).
"""

import csv
import json
from pathlib import Path

import pytest
from benchscripts import load_benchmark as _load

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
CSV = BENCH / "data" / "published.csv"
BASELINE = BENCH / "data" / "baseline.json"


@pytest.fixture(scope="module")
def pub():
    return _load("published")


@pytest.fixture(scope="module")
def report():
    return _load("published_report")


@pytest.fixture(scope="module")
def rows():
    return list(csv.DictReader(CSV.open()))


@pytest.fixture(scope="module")
def in_sample(pub, rows):
    return {r["id"]: pub.predict_row(r) for r in rows}


# LOSO figures measured at 203 rows with the kernel-level inference model (median, p90, signed
# median, in %; at 185 rows before it: inference 27.1 / 73.2 / -6.8, memory 42.9 / 67.4 / -42.9;
# at 193 rows, before llama.cpp's CPU matmul was priced: inference 11.5 / 46.8 / +5.4):
#   inference 11.1 / 36.8 / +4.2   training 5.7 / 18.7 / +3.6 (kernel-level training model; 22.8 / 53.9 / +22.8 before)
#   memory 23.2 / 31.8 / -23.2 (ExecuTorch memory facts, MiB; 35.5 / 57.0 / -35.5 before)   finetune-memory 6.0 / 6.5 / -6.0
# At 244 rows (+23 MLC LLM rows, 3 predicted; +18 DeepSpeed-Inference BLOOM-176B rows, all predicted):
#   inference 12.2 / 63.4 / +3.3 while the 12 DeepSpeed int8 rows were -43% to -71% (its kernel-injection int8
#   GEMM dequantizes each weight into an fp16 buffer before a cuBLAS fp16 GEMM); with that pass priced
#   (engine runtime separate_dequant) and the shipped constants at the all-row fit (gather 0.8, eager 35 us):
#   inference 11.4 / 34.0 / -0.5.
# Still 244 rows, 20 more of them predicted (MLC LLM rows on the A10G, A100 80GB PCIe, RTX 3090 Ti, RX 7900 XTX and
# CodeLlama-34B profiles): inference 11.8 / 40.0 / +7.3. Multi-GPU Disco rows over PCIe are over-predicted
# (A100 PCIe TP 8 +50%, A10G TP 8 +23% to +31%: per-token time beyond the modelled all-reduces), and the
# LOSO folds of the other sources now pick the shipped all-row constants (gather 0.8, GGML block ops 4)
# instead of 0.9 / 5, which moves their held-out errors to the in-sample ones.
# At 405 rows (the whole llm-foundry benchmark table: 161 more MPT rows, 125M-70B, and every MPT row mapped
# to the benchmark's own model, llm-foundry-mpt-*, instead of the released checkpoints): training
# 14.7 / 35.3 / +14.7 against 5.7 / 18.7 / +3.6 on the 42 training rows before (30 of them MPT-7B and 30B). The
# model over-predicts small models (125M-1B: +9% to +50%) and runs without activation checkpointing.
# With llm-foundry's time per micro-batch fitted on the declared fit split (the benchmark's A100-40GB section,
# 78 rows, no longer reported) and priced for the engine's rows: training over the 125 reported rows
# 5.2 / 13.9 / +4.3 (the same rows without it: 13.8 / 34.6 / +13.8); these llm-foundry rows share their
# document with the fit split, so for them it is a held-out-hardware figure, not leave-one-source-out.
# The inference limits are the acceptance targets (met); the others guard the measured levels (docs/costmodel.md).
# Eager host time priced per kernel launched (kernels counted per layer, planner.kernels.eager_layer_kernels)
# instead of per modelled operator: inference 10.9 / 34.8 / +3.3 (every fold picks 15 us per kernel); with
# intra-node all-reduces priced as NCCL's chain (its trees connect nodes only): 10.8 / 31.9 / +1.1.
# With the 20 W4A4 NVFP4 rows on B200 predicted (nvfp4 an activation format, FP4 peak at its own measured
# MAMF): 181 rows, 11.1 / 34.1 / +1.6; the B200 rows are -1.5% to +49%, the 405B ones all over-predicted.
# With the six ExecuTorch rows of Llama 3.2 3B (no model change; they repeat the 1B rows' errors): 187 rows,
# 11.97 / 34.6 / +1.1 -- but adding them flipped other folds' constants (LitGPT's eager host time 15 -> 25 us,
# its I53 +7% -> -23%), because every fold chose its constants by one median pooled over all the rows any
# constant moves. Each constant is now judged by the rows it moves (published_report.fit), and the shipped
# values are that fit over every reported row (gather 0.8, GGML block ops 5): 11.99 / 35.9 / +3.6, the p90
# target (35%) not met by 0.9 points. Vitis AI's U50 rows priced at the DPU design's published peak (PG367,
# 7,373 int8 GOPS) instead of a design of the card's whole fabric (10.2 TOPS): +41..+56% -> +7..+19%, and
# 11.9 / 34.6 / +3.6. The three inference limits below are the acceptance targets.
# The embedding / LM head the engines keep in 16 bit priced so (TensorRT-LLM keeps the embedding), the gather
# refitted to 0.9: 11.9 / 34.5 / +4.1. Memory: +10 rows of LitGPT's single-GPU inference table, with LitGPT's bf16
# embedding, separate LM head and bitsandbytes' 16-bit copy of a prompt's weight: 17 rows 5.0 / 24.5 / -5.0 (22.4 /
# 29.3 / -22.4 over the 7 ExecuTorch-era rows); finetune-memory +4 LoRA rows: 6.0 / 6.8 / -6.0.
# Fabric quantizes from fp16, so bitsandbytes' copy is made in fp16 and cast to bf16, both held: memory
# 0.8 / 24.5 / -0.8, finetune-memory 4.7 / 5.3 / -4.7. Both biases are held to the 5% target.
LOSO_LIMITS = {  # category: (median, p90, |signed median|) as fractions
    "inference": (0.12, 0.35, 0.05),  # targets 12 / 35 / 5: 11.9 / 34.5 / +4.1 measured
    "training": (0.08, 0.17, 0.07),
    "memory": (0.04, 0.28, 0.05),
    "finetune-memory": (0.07, 0.08, 0.05),
}


@pytest.mark.slow
def test_cross_validated_error_per_category_within_measured_levels(report, rows, published_evaluation):
    evaluated_rows, ev = published_evaluation  # pub.evaluate(rows, cv=True), shared with test_intervals
    assert evaluated_rows == rows
    stats = report.summary((i, r.category, r.error) for i, r in ev["held"].items() if r.error is not None)
    for cat, (med, p90, bias) in LOSO_LIMITS.items():
        assert cat in stats, f"no {cat} rows predicted"
        st = stats[cat]
        assert st.median_abs <= med, f"{cat}: LOSO median |error| {st.median_abs:.1%} > {med:.0%}"
        assert st.p90_abs <= p90, f"{cat}: LOSO p90 |error| {st.p90_abs:.1%} > {p90:.0%}"
        assert abs(st.signed_median) <= bias, f"{cat}: LOSO signed median {st.signed_median:+.1%} beyond ±{bias:.0%}"


def test_no_row_regresses_against_the_baseline(in_sample, report):
    base = json.loads(BASELINE.read_text())["errors"]
    now = {i: r.error for i, r in in_sample.items()}
    bad = report.regressions(base, now)
    assert not bad, "rows worse than benchmarks/data/baseline.json by > 5 points:\n" + "\n".join(bad)


def test_no_row_regresses_out_of_sample_against_the_baseline(published_evaluation, report):
    # a row's held-out error moves when its fold's constants do: adding the Llama 3.2 3B rows flipped the
    # LitGPT fold's eager time and took I53 from +7% to -23% out of sample while its in-sample error held
    _, ev = published_evaluation
    base = json.loads(BASELINE.read_text())["loso_errors"]
    now = {i: r.error for i, r in ev["held"].items()}
    bad = report.regressions(base, now)
    assert not bad, "rows worse out of sample than benchmarks/data/baseline.json by > 5 points:\n" + "\n".join(bad)


def test_regression_check_catches_a_sign_flip(report):
    # +38% → −74% is 36 points worse; +38% → +30% and +38% → −40% are not regressions beyond 5 points
    assert report.regressions({"X": 0.38}, {"X": -0.74})
    assert not report.regressions({"X": 0.38}, {"X": 0.30})
    assert not report.regressions({"X": 0.38}, {"X": -0.40})
    assert report.regressions({"X": 0.38}, {"X": None}), "a row that stops being predicted is a regression"


def test_every_unpredicted_row_says_why(in_sample):
    for i, r in in_sample.items():
        if r.predicted is None:
            assert r.reason, i


def test_table_size_and_coverage(rows):
    from hwmodels import load_device

    rm = _load("rowmap")
    assert len(rows) >= 150
    classes = {load_device(hw).device_class for r in rows if (hw := rm.match(rm.HARDWARE, r["hardware"]))}
    assert {"gpu", "tpu", "rdu", "fpga", "phone", "laptop", "cpu"} <= classes, classes
    modes = {r["category"] for r in rows}
    assert {"inference", "training", "memory"} <= modes


def test_row_kinds_name_category_hardware_class_and_engine(pub, rows):
    kinds = {r["id"]: pub.row_kind(r) for r in rows}
    assert kinds["T12"] == "training/tpu/-"
    assert kinds["M04"] == "finetune-memory/gpu/-"
    assert kinds["I180"] == "inference/phone/executorch"
    assert kinds["T100"] == "training/gpu/llm-foundry"


def test_every_row_has_a_public_source_and_a_known_engine(rows):
    from planner.engines import list_engines

    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "row ids must be unique"
    known = set(list_engines())
    for r in rows:
        assert r["source"].strip() and "shared/" not in r["source"], r["id"]
        assert r["engine_id"] == "" or r["engine_id"] in known, (r["id"], r["engine_id"])
        assert r["category"] in ("inference", "memory", "training", "finetune-memory"), r["id"]
        float(r["value"])


def test_summary_statistics(report):
    st = report.summary([("a", "x", 0.10), ("b", "x", -0.20), ("c", "x", 0.30), ("d", "x", -0.05), ("e", "x", 1.0)])["x"]
    assert st.rows == 5
    assert st.median_abs == pytest.approx(0.20)
    assert st.signed_median == pytest.approx(0.10)
    assert st.max_abs == pytest.approx(1.0)
    assert st.p90_abs == pytest.approx(0.72)  # between 0.30 and 1.0, linear
    assert [i for i, _ in st.worst] == ["e", "c", "b", "a", "d"]


def test_sources_group_by_document_not_by_table(report):
    k = report.source_key
    a = k("github.com/NVIDIA/TensorRT-LLM docs/source/performance.md (v0.6.1 tables)")
    b = k("github.com/NVIDIA/TensorRT-LLM docs/source/performance/perf-overview.md (commit x)")
    assert a != b
    assert k("Narayanan et al. 2021, 'Efficient'") == k("Narayanan et al. 2021 Table 1")


def test_fitted_constants_are_set_for_a_run_and_restored():
    fitted = _load("fitted")
    before = fitted.current()
    with fitted.settings({"KV_GATHER_EFFICIENCY": 0.9}):
        import planner.opcost

        assert planner.opcost.KV_GATHER_EFFICIENCY == 0.9
    assert fitted.current() == before
    with pytest.raises(ValueError, match="NAME one of"):
        fitted.parse_assignment("KV_GATHER=0.5")
    with pytest.raises(ValueError, match="number"):
        fitted.parse_assignment("KV_GATHER_EFFICIENCY=high")


def test_cli_rejects_an_unknown_constant(pub, capsys):
    assert pub.main(["--set", "NOPE=1", "--rows", "I01"]) == 2
    assert "NAME one of" in capsys.readouterr().err


def test_loso_fit_picks_the_minimum_without_the_held_out_source(report):
    class R:
        def __init__(self, e):
            self.error, self.predicted = e, 1.0 + e

    fitted = _load("fitted")
    combos = report._combos()
    # row "a" (source A) is best at the first combination, rows "b", "c" (source B) at the last
    grid = {
        "a": {c: R(0.0 if c == combos[0] else 0.5) for c in combos},
        "b": {c: R(0.0 if c == combos[-1] else 0.5) for c in combos},
        "c": {c: R(0.0 if c == combos[-1] else 0.5) for c in combos},
    }
    rows = [{"id": "a", "source": "srcA x"}, {"id": "b", "source": "srcB y"}, {"id": "c", "source": "srcB y"}]
    held, chosen = report.loso(rows, grid)
    assert chosen["srca x"] == combos[-1] and held["a"].error == 0.5  # fitted on B only
    assert chosen["srcb y"] == combos[0] and held["b"].error == 0.5
    assert len(combos) == len(list(__import__("itertools").product(*(f.grid for f in fitted.LOSO_REGISTRY))))


def test_loso_fit_ignores_rows_no_constant_moves(report):
    class R:
        def __init__(self, predicted, error):
            self.predicted, self.error = predicted, error

    combos = report._combos()
    # Row "a" is best at the last combination. Rows x, y, z do not depend on any constant: counted,
    # they would pin the median at 0.2 for every combination and the tie would pick the first.
    grid = {"a": {c: R(2.0 if c == combos[-1] else 1.0, 0.0 if c == combos[-1] else 0.4) for c in combos}}
    for i in "xyz":
        grid[i] = {c: R(5.0, 0.2) for c in combos}
    assert report.fit(grid, ["a", "x", "y", "z"]) == combos[-1]
    # With no row depending on the constants nothing can be fitted: every constant keeps its current value.
    assert report.fit({i: grid[i] for i in "xyz"}, ["x", "y", "z"]) == tuple(f.get() for f in report.REGISTRY)
    assert report.fit({i: grid[i] for i in "xyz"}, []) == tuple(f.get() for f in report.REGISTRY)


def test_each_constant_is_judged_by_the_rows_it_moves(report):
    """A row that only constant 0 moves must not decide constant 1: pooled into one median, rows of one
    constant shifted the median that chose another (adding phone rows flipped LitGPT's eager time)."""
    class R:
        def __init__(self, predicted, error):
            self.predicted, self.error = predicted, error

    combos = report._combos()
    g0, g1 = (f.grid for f in report.REGISTRY[:2])

    def grid_of(best0, best1, extra):
        # rows a*: moved by constant 0 only, best at best0; rows b*: moved by constant 1 only, best at best1
        grid = {f"a{j}": {c: R(c[0], 0.0 if c[0] == best0 else 0.3) for c in combos} for j in range(3)}
        grid |= {f"b{j}": {c: R(c[1], 0.0 if c[1] == best1 else 0.3) for c in combos} for j in range(3)}
        grid |= {f"x{j}": {c: R(c[0], 0.0 if c[0] == g0[0] else 0.05) for c in combos} for j in range(extra)}
        return grid

    for extra in (0, 12):  # more rows of constant 0 (pooled, 12 of them would hide constant 1's rows)
        grid = grid_of(g0[-1], g1[-1], extra)
        best = report.fit(grid, list(grid))
        assert best[1] == g1[-1], "constant 1 follows its own rows whatever constant 0's rows do"
    assert report.moved_by(grid_of(g0[-1], g1[-1], 0)["a0"]) == frozenset({0})


def test_shipped_loso_constants_are_the_fit_over_every_reported_row(published_evaluation):
    _, ev = published_evaluation
    fitted = _load("fitted")
    shipped = {f.name: f.get() for f in fitted.LOSO_REGISTRY}
    assert ev["all_rows"] == shipped, "refit: python benchmarks/published.py --cv loso prints the values"


def test_the_fit_split_is_declared_in_the_table_and_never_reported(rows, published_evaluation):
    """Rows of the declared fit split (``split`` = ``fit``) fit the split constants and appear in no
    reported figure: neither the in-sample results nor the leave-one-source-out ones."""
    _, ev = published_evaluation
    assert {r["split"] for r in rows} <= {"", "fit"}, "split is empty (reported) or 'fit'"
    fit_ids = {r["id"] for r in rows if r["split"] == "fit"}
    assert fit_ids, "the table declares a fit split"
    assert not fit_ids & set(ev["results"]) and not fit_ids & set(ev["held"])
    assert set(ev["fit_split"]["results"]) == fit_ids
    assert len(rows) - len(fit_ids) >= 150, "at least 150 reported rows"


def test_shipped_split_constants_are_the_values_the_fit_split_picks(published_evaluation):
    _, ev = published_evaluation
    fitted = _load("fitted")
    assert fitted.SPLIT_REGISTRY, "a constant fitted on the split"
    shipped = {f.name: f.get() for f in fitted.SPLIT_REGISTRY}
    assert ev["fit_split"]["constants"] == shipped, "rerun the fit: python benchmarks/published.py shows the value"


def test_a_split_constant_is_fitted_on_the_fit_rows_alone(report):
    """A fit-split constant takes the grid value best for the fit rows, whatever the reported rows
    would prefer, and keeps its current value when no fit row is given."""
    fitted = _load("fitted")
    f = fitted.SPLIT_REGISTRY[0]
    lo, hi = f.grid[0], f.grid[-1]

    class R:
        def __init__(self, predicted, measured):
            self.predicted, self.error = predicted, (predicted - measured) / measured

    def predict(row):  # the fit row is right at the grid's top, the reported row at its bottom
        v = f.get()
        return R(1.0 + v, 1.0 + (hi if row["split"] == "fit" else lo))

    rows = [{"id": "f1", "split": "fit"}, {"id": "r1", "split": ""}, {"id": "r2", "split": ""}]
    assert report.fit_split(rows, predict) == {f.name: hi}
    assert report.fit_split([r for r in rows if r["split"] != "fit"], predict) == {f.name: f.get()}
    assert report.fit_split(rows, predict, fixed=[f.name]) == {}
    assert report.is_fit_row({"split": " FIT "}) and not report.is_fit_row({"split": ""}) and not report.is_fit_row({})


def test_a_misspelt_split_is_refused_naming_the_row(pub, tmp_path, capsys):
    """A split other than empty or 'fit' would silently report a fit row (or fit on a reported one): the
    scripts exit 2 and name the row and the value."""
    lines = CSV.read_text().splitlines()
    header, first = lines[0], lines[1]
    assert header.endswith(",split") and first.endswith(",")
    bad = tmp_path / "published.csv"
    bad.write_text(header + "\n" + first + "fitt\n")
    assert pub.main(["--csv", str(bad)]) == 2
    err = capsys.readouterr().err
    row_id = first.split(",", 1)[0]
    assert f"'{row_id}'" in err and "split" in err and "'fitt'" in err, err
    assert _load("intervals").main(["--csv", str(bad)]) == 2
    assert "'fitt'" in capsys.readouterr().err


def test_the_extrapolation_range_in_the_planner_is_the_fit_splits(rows):
    """planner.training states the steps the per-micro-batch time was fitted on (micro-batches per step and
    tokens per micro-batch) without reading this table: the figures must be the fit split's own."""
    import re

    import planner.training as T

    fit = [r for r in rows if r["split"] == "fit"]
    accum = [int(re.search(r"GradAccum (\d+)", r["notes"]).group(1)) for r in fit]
    tokens = [int(re.search(r"MicroBatchSize (\d+)", r["notes"]).group(1)) * int(r["prompt_len"]) for r in fit]
    assert max(accum) == T.MICROBATCH_OVERHEAD_FITTED_MAX and min(accum) == 1
    assert (min(tokens), max(tokens)) == T.MICROBATCH_OVERHEAD_FITTED_TOKENS
