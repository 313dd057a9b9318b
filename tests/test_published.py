"""The cost model against published measurements (benchmarks/data/published.csv, one public source per row).

Targets (median absolute percentage error per category, no per-row constants):
inference ≤ 15%, inference memory ≤ 10%, training ≤ 15%, fine-tuning memory ≤ 10%.
Rows: TensorRT-LLM performance.md, gpt-fast README, llama.cpp #4167, FlexGen, LitGPT
resource tables, Megatron-LM SC21 Table 1, Korthikanti et al. 2022, PaLM, NVIDIA
DeepLearningExamples ResNet-50 — each row cites its source in the CSV.
"""

import csv
import importlib.util
import statistics
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "benchmarks" / "data" / "published.csv"

pytestmark = pytest.mark.skipif(not CSV.exists(), reason=f"published table not found at {CSV}")


def _published():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("published", ROOT / "benchmarks" / "published.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["published"] = mod  # dataclasses look their module up here
    spec.loader.exec_module(mod)
    return mod


TARGETS = {"inference": 0.15, "memory": 0.10, "training": 0.15, "finetune-memory": 0.10}


def test_median_error_per_category_within_target():
    pub = _published()
    rows = list(csv.DictReader(CSV.open()))
    errors: dict[str, list[float]] = {}
    for row in rows:
        r = pub.predict_row(row)
        if r.error is not None:
            errors.setdefault(r.category, []).append(abs(r.error))
    for cat, target in TARGETS.items():
        assert cat in errors, f"no {cat} rows predicted"
        med = statistics.median(errors[cat])
        assert med <= target, f"{cat}: median |error| {med:.1%} > {target:.0%}"


def test_every_inference_row_but_the_contextual_sparsity_one_is_predicted():
    pub = _published()
    missing = [r["id"] for r in csv.DictReader(CSV.open()) if r["category"] in ("inference", "memory") and pub.predict_row(r).predicted is None]
    # I47 relies on predictor-selected FFN neurons (LLM in a flash), which is not modelled.
    assert set(missing) <= {"I47"}, missing


def test_every_row_has_a_public_source_and_a_known_engine():
    from planner.engines import list_engines

    rows = list(csv.DictReader(CSV.open()))
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "row ids must be unique"
    known = set(list_engines())
    for r in rows:
        assert r["source"].strip() and "shared/" not in r["source"], r["id"]
        assert r["engine_id"] == "" or r["engine_id"] in known, (r["id"], r["engine_id"])
        assert r["category"] in ("inference", "memory", "training", "finetune-memory"), r["id"]
