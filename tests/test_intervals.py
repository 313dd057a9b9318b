"""Error bars on every estimate (planner/uncertainty.py, benchmarks/intervals.py).

* the shipped table (planner/data/intervals.json) equals the one the current cost model gives:
  a change to the model or the published rows that is not followed by
  ``python benchmarks/intervals.py --write`` fails here, saying so;
* out of sample (each row against a table built without its source) the p10-p90 intervals
  contain 75-85% of the measured times and throughputs;
* the pure mapping: back-off, time vs rate, the validated region and its notes;
* every front end's estimate result carries the intervals.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

from planner import uncertainty as U

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def _load(name: str):
    sys.path.insert(0, str(BENCH))
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def live(published_evaluation):
    # intervals.live_table(): the table of the published rows' leave-one-source-out evaluation
    # (shared with test_published, which checks the same evaluation's errors)
    rows, ev = published_evaluation
    return _load("intervals").table_of(rows, ev)


@pytest.mark.slow  # the leave-one-source-out predictions of every published row (~10-60 s)
def test_shipped_table_equals_the_live_computation(live):
    bench = _load("intervals")
    shipped = U.TABLE_PATH.read_text()
    assert shipped == bench.dumps(live), (
        f"{U.TABLE_PATH.relative_to(ROOT)} is stale: the cost model or benchmarks/data/published.csv changed "
        f"since it was written. Regenerate it with `{U.REGENERATE}` and commit it.")


@pytest.mark.slow
def test_out_of_sample_coverage_is_calibrated(live):
    c = live["coverage"]
    assert c["rows"] >= 100, c
    # Target 75-85%, measured 82.2% over 286 rows (the llm-foundry rows outside the fit split priced with its
    # fitted time per micro-batch; 71.4% without it, when the +15% bias of those rows put 60% of them outside).
    assert 0.75 <= c["fraction"] <= 0.85, (
        f"p10-p90 intervals contain {100 * c['fraction']:.1f}% of the measured values out of sample (target 75-85%)")


@pytest.mark.slow
def test_check_flag_reports_a_stale_table(tmp_path, monkeypatch, capsys, live):
    bench = _load("intervals")
    stale = tmp_path / "intervals.json"
    stale.write_text(bench.dumps({**live, "rows": live["rows"] + 1}))
    monkeypatch.setattr(U, "TABLE_PATH", stale)
    monkeypatch.setattr(bench, "live_table", lambda *_: live)
    assert bench.main(["--check"]) == 1
    assert U.REGENERATE in capsys.readouterr().err
    stale.write_text(bench.dumps(live))
    assert bench.main(["--check"]) == 0


# ---------------------------------------------------------------------------
# the pure mapping, on a small hand-made table
# ---------------------------------------------------------------------------


def _samples() -> list[U.Sample]:
    out = []
    for k, src in enumerate(("a", "b", "c", "d")):  # 4 sources × 3 GPU serving throughput rows, factors ~1.0-1.3
        for j in range(3):
            out.append(U.Sample(f"T{k}{j}", src, "throughput", "gpu", "serving", "33+", 1.0 + 0.1 * k + 0.01 * j))
    out += [U.Sample("P1", "a", "prefill", "gpu", "serving", "1", 0.5),  # prefill: one source, then a second
            U.Sample("P2", "e", "prefill", "phone", "on-device", "1", 0.1),
            U.Sample("M1", "a", "memory", "gpu", "eager", "1", 1.05),  # memory: two sources, no '*' level
            U.Sample("M2", "e", "memory", "phone", "on-device", "1", 2.5)]
    return out


def test_rows_of_one_kind_give_a_band_around_their_factors():
    table = U.build_table(_samples())
    b = table["buckets"]["throughput/gpu/serving"]
    assert b["rows"] == 12 and b["sources"] == 4
    assert b["p10"] < 1.0 and b["p90"] > 1.3 and b["p10"] < b["p50"] < b["p90"]
    key, used = U.lookup(table, "throughput", "gpu", "serving")
    assert key == "throughput/gpu/serving" and used is b


def test_a_one_source_bucket_backs_off_and_is_marked():
    table = U.build_table(_samples())
    assert table["buckets"]["prefill/gpu/serving"]["p10"] is None  # one source: no band
    assert table["buckets"]["prefill"]["sources"] == 2  # a band, but fewer than MIN_SOURCES
    assert U.lookup(table, "prefill", "gpu", "serving")[0] == "*"  # every time and throughput row
    assert U.lookup(table, "decode", "gpu", "serving")[0] == "*"  # no decode rows at all
    # memory never pools with times: below MIN_SOURCES it keeps the coarsest band of its own rows
    assert U.lookup(table, "memory", "gpu", "eager")[0] == "memory"
    assert U.lookup(U.build_table(_samples()[:-1]), "memory", "gpu", "eager") is None  # one source: none


def test_time_band_is_the_reciprocal_of_the_rate_band():
    table = U.build_table(_samples())
    u = U.uncertainty_for({"output_tokens_per_s": 1000.0, "latency_s": 2.0}, U.INFERENCE_QUANTITIES,
                          hardware_class="gpu", eng_class="serving", regime="33+", table=table)
    rate, time = u.get("output_tokens_per_s"), u.get("latency_s")
    b = table["buckets"]["throughput/gpu/serving"]
    assert rate.p10 == pytest.approx(1000 * b["p10"]) and rate.p90 == pytest.approx(1000 * b["p90"])
    assert time.p10 == pytest.approx(2.0 / b["p90"]) and time.p90 == pytest.approx(2.0 / b["p10"])
    assert u.validated and not u.notes


@pytest.mark.parametrize("hw, eng, regime, says", [
    ("tpu", "serving", "33+", "no published throughput rows the cost model predicts on tpu hardware"),
    ("gpu", "eager", "33+", "for eager engines on gpu"),
    ("gpu", "serving", "1", "at batch 1 for serving engines on gpu (rows at batch 33+)"),
])
def test_outside_the_validated_region_says_which_part_has_no_rows(hw, eng, regime, says):
    table = U.build_table(_samples())
    u = U.uncertainty_for({"output_tokens_per_s": 10.0}, U.INFERENCE_QUANTITIES, hardware_class=hw, eng_class=eng,
                          regime=regime, table=table)
    assert not u.validated and not u.get("output_tokens_per_s").validated
    assert any(says in n for n in u.notes), u.notes
    # no rows of that hardware or engine class: a coarser bucket; a batch regime is not a bucket level
    exact = f"throughput/{hw}/{eng}"
    assert (u.get("output_tokens_per_s").bucket == exact) == (exact == "throughput/gpu/serving")


@pytest.mark.parametrize("value", [None, 0.0, -1.0, math.inf, math.nan])
def test_missing_or_degenerate_figures_get_no_interval(value):
    table = U.build_table(_samples())
    u = U.uncertainty_for({"output_tokens_per_s": value}, U.INFERENCE_QUANTITIES, hardware_class="gpu",
                          eng_class="serving", regime="33+", table=table)
    assert u.get("output_tokens_per_s") is None and not u.validated


def test_batch_regimes_and_engine_classes():
    assert [U.batch_regime(b) for b in (1, 2, 32, 33, 4096)] == ["1", "2-32", "2-32", "33+", "33+"]
    assert U.batch_regime(64, "training") == "training"
    assert U.engine_class("trtllm") == "serving" and U.engine_class("executorch") == "on-device"
    assert U.engine_class("megatron-core") == "training" and U.engine_class("trtllm", "eager") == "eager"
    assert U.engine_class("no-such-engine") == "unknown" and U.engine_class(None) == "unknown"


def test_shipped_table_is_well_formed():
    table = U.load_table()
    assert table["regenerate"] == U.REGENERATE
    for key, b in table["buckets"].items():
        assert key.split("/")[0] in (*U.CATEGORIES, U.ALL), key
        assert b["rows"] == len(b["ids"]) >= 1
        if b["p10"] is not None:
            assert 0 < b["p10"] <= b["p50"] <= b["p90"], key


# ---------------------------------------------------------------------------
# every front end's result carries them
# ---------------------------------------------------------------------------


def test_python_api_estimates_carry_intervals_for_every_architecture():
    import planner

    for model in ("llama-3.1-8b", "mixtral-8x7b", "t5-3b", "resnet-50", "all-minilm-l6-v2"):
        est = planner.estimate(model, "h100-sxm", batch=4, prompt=64, gen=16, **({"weights": "fp8"} if "mixtral" in model else {}))
        u = est.uncertainty
        # Transformers (the default for T5, ResNet and encoders, which vLLM does not serve) runs eager PyTorch
        want = "eager" if est.engine == "hf-transformers" else "serving"
        assert u is not None and u.hardware_class == "gpu" and u.engine_class == want and u.regime == "2-32", (model, est.engine)
        ttft = u.get("ttft_s")
        assert ttft.value == est.ttft_s and ttft.p10 < ttft.p90, model
        assert (u.get("tpot_s") is None) == (est.decode is None), model
        d = est.to_dict(ops=False)["uncertainty"]
        assert json.loads(json.dumps(d)) == d
        assert set(d["intervals"]) <= set(U.INFERENCE_QUANTITIES)


def test_training_estimate_and_an_unvalidated_device():
    import planner

    t = planner.estimate_training("llama-3.1-8b", "h100-sxm", devices=8, dp=8, zero=3)
    band = t.uncertainty.get("step_time_s")
    assert band.category == "training" and band.p10 < t.step_time_s * 2 and band.validated
    assert t.to_dict()["uncertainty"]["intervals"]["tokens_per_s"]["value"] == pytest.approx(t.tokens_per_s)
    cpu = planner.estimate("llama-3.2-1b", "cpu-host", batch=1, prompt=32, gen=8)
    assert not cpu.uncertainty.validated
    assert any("on cpu hardware" in n for n in cpu.uncertainty.notes)


def test_cli_estimate_prints_the_range_and_json_carries_it():
    from typer.testing import CliRunner

    from planner.cli import app

    run = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--batch", "1"])
    assert run.exit_code == 0, run.output
    assert "p10–p90" in run.output and "error bars" in run.output
    run = CliRunner().invoke(app, ["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--json"])
    d = json.loads(run.output)
    assert d["uncertainty"]["intervals"]["tpot_s"]["value"] == pytest.approx(d["tpot_s"])


def test_capacity_train_rows_carry_days_and_step_time_ranges():
    from typer.testing import CliRunner

    from planner.cli import app

    args = ["capacity", "train", "-m", "llama-3.2-1b", "-H", "h100-sxm", "--tokens", "1e10", "--days", "5",
            "--executor", "serial", "--max-devices", "16"]
    run = CliRunner().invoke(app, [*args, "--json"])
    assert run.exit_code == 0, run.output
    d = json.loads(run.output)
    for row in [d["best"], *d["frontier"]]:
        bands = row["uncertainty"]["intervals"]
        assert bands["days"]["value"] == pytest.approx(row["days"])
        ratio = bands["step_time_s"]["p90"] / row["step_time_s"]
        assert bands["days"]["p90"] / row["days"] == pytest.approx(ratio)  # days scale with the step time
        assert bands["tokens_per_s"]["p10"] == pytest.approx(row["tokens_per_s"] / ratio)
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0 and "p10–p90" in run.output


def test_a_source_apart_widens_the_band_and_the_level_is_the_smallest_reaching_80_percent():
    base = _samples()[:12]  # 4 sources, factors 1.0-1.32
    apart = base + [U.Sample(f"X{j}", "far", "throughput", "gpu", "serving", "33+", 2.0 + 0.05 * j) for j in range(3)]
    narrow, wide = (U.build_table(s)["buckets"]["throughput/gpu/serving"] for s in (base, apart))
    assert wide["p90"] > narrow["p90"] * 1.05 and wide["p90"] - wide["p10"] > narrow["p90"] - narrow["p10"], (narrow, wide)
    level = U.calibrate_level(apart)
    assert 50.0 <= level <= 100.0
    # every row against the buckets built without its source: >= 80% inside at the level, < 80% just below it
    def inside(lv):
        hits = []
        for s in apart:
            scored = U._scores(x for x in apart if x.source != s.source)
            _, b = U._pick(scored, U.bucket_chain(s.category, s.hardware_class, s.engine_class))
            hits.append(abs(math.log(s.factor) - b["centre"]) <= U._percentile(b["scores"], lv))
        return sum(hits) / len(hits)
    assert inside(level) >= 0.8 and (level == 50.0 or inside(level - 0.5) < 0.8)


def test_latency_equal_to_ttft_gets_the_ttft_band(cli):
    """An encoder (and any request with nothing generated after the first token) has latency = TTFT:
    the two figures carry the same band."""
    import json

    d = json.loads(cli("estimate", "-m", "all-minilm-l6-v2", "-H", "h100-sxm", "--batch", "8", "--json").out)
    iv = d["uncertainty"]["intervals"]
    assert d["latency_s"] == d["ttft_s"]
    assert (iv["latency_s"]["p10"], iv["latency_s"]["p90"]) == (iv["ttft_s"]["p10"], iv["ttft_s"]["p90"])


def test_a_capacity_row_is_judged_at_the_batch_it_runs_not_the_batch_memory_holds():
    # at 0.05 requests/s a phone runs one sequence at a time; its memory would hold ~120: the row was
    # marked "no published rows at batch 33+" while the same configuration's estimate was validated
    import planner

    ans = planner.capacity_serve("llama-3.2-3b", ["snapdragon-8-gen-3"], qps=0.05, prompt=256, gen=128,
                                 ttft_slo_s=5, tpot_slo_s=0.5).to_dict()
    (row,) = [h for h in ans["hardware"] if h["hardware"] == "snapdragon-8-gen-3"]
    best = row["best"]
    assert best["max_batch"] > 32 and best["concurrency"] < 1
    assert best["uncertainty"]["batch_regime"] == "1" and best["uncertainty"]["validated"]


def test_a_request_s_latency_band_stays_above_its_decode_floor():
    # llama-2-13b on an iPhone streams its weights from flash, at the tier's rated bandwidth (TPOT's band is clipped there);
    # the request's latency band went 175 s below what its tokens take, by the prefill's larger headroom
    import planner

    est = planner.estimate("llama-2-13b", "iphone-15-pro")
    u = est.uncertainty
    tpot, lat, out = u.get("tpot_s"), u.get("latency_s"), u.get("output_tokens_per_s")
    decode_floor = (est.latency_s - est.ttft_s) * tpot.p10 / est.tpot_s
    assert tpot.p10 > 0.99 * est.tpot_s  # TPOT is at its floor
    assert lat.p10 >= decode_floor
    assert out.p90 <= est.serving.gen / decode_floor


@pytest.mark.parametrize("model, hw, batch", [("resnet-50", "l4", 32), ("resnet-50", "zcu102", 1), ("bert-base", "t4", 8),
                                              ("llama-3.1-8b", "l4", 1)])
def test_a_forward_pass_has_one_band_for_its_latency_and_its_rates(model, hw, batch):
    # images/s is the batch over the forward pass's latency: the two had bands from different rows
    # (ResNet-50 on an L4: 14.9-30.8 ms beside 1,071-2,054 images/s, i.e. 15.6-29.9 ms) and validated flags
    import planner

    est = planner.estimate(model, hw, batch=batch, gen=0)
    u = est.uncertainty
    lat, ttft, sps = u.get("latency_s"), u.get("ttft_s"), u.get("samples_per_s")
    assert (lat.p10, lat.p90, lat.validated) == (ttft.p10, ttft.p90, ttft.validated)
    assert sps.validated == lat.validated and sps.bucket == lat.bucket
    assert sps.p10 * lat.p90 == pytest.approx(est.samples_per_s * est.latency_s, rel=1e-9)
    assert sps.p90 * lat.p10 == pytest.approx(est.samples_per_s * est.latency_s, rel=1e-9)
    tok = u.get("prefill_tokens_per_s")
    if tok is not None:
        assert tok.p10 / tok.value == pytest.approx(sps.p10 / sps.value)


def test_a_decoder_s_forward_pass_keeps_the_prefill_rows_band_and_its_note():
    # the GPU throughput rows measure generation: a decoder's prompt pass at batch 64 was marked validated
    # by them while its notes said no prefill rows exist at that batch
    import planner

    u = planner.estimate("llama-3.1-8b", "l4", batch=64, gen=0).uncertainty
    assert {u.get(q).bucket for q in ("ttft_s", "latency_s", "samples_per_s")} == {"prefill"}
    assert not u.validated and any("prefill rows" in n for n in u.notes)
