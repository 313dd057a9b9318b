"""`tierwise capacity serve|train` and `tierwise estimate --mode training` as a user runs them."""

import csv
import json

import pytest


SERVE = ["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4,h100-sxm", "--qps", "20", "--prompt", "512", "--gen", "64", "--ttft-slo", "1", "--tpot-slo", "0.05"]


def test_serve_json_ranked_cheapest_first(cli):
    code, out, _ = cli(*SERVE, "--json", "--executor", "serial")
    assert code == 0
    d = json.loads(out)
    assert d["feasible"] and [h["hardware"] for h in d["hardware"]]
    costs = [h["best"]["usd_per_hour"] for h in d["hardware"] if h["best"]]
    assert costs == sorted(costs)
    best = d["hardware"][0]["best"]
    for key in ("devices", "tp", "pp", "replicas", "weights", "max_batch", "ttft_p50_s", "ttft_p95_s", "tpot_p50_s", "tpot_p95_s", "usd_per_hour", "usd_per_million_tokens"):
        assert key in best, key
    assert best["ttft_p95_s"] <= 1 and best["tpot_p95_s"] <= 0.05


def test_process_pool_gives_the_same_answer(cli):
    _, serial, _ = cli(*SERVE, "--json", "--executor", "serial")
    code, pooled, _ = cli(*SERVE, "--json", "--executor", "process", "--workers", "2")
    assert code == 0 and json.loads(pooled) == json.loads(serial)


def test_serve_table_csv_and_plot(cli, tmp_path):
    out_csv, out_png = tmp_path / "rows.csv", tmp_path / "cost.png"
    code, out, _ = cli(*SERVE, "--executor", "serial", "--csv", str(out_csv), "--plot", str(out_png))
    assert code == 0 and "meets SLO" in out and "l4" in out
    rows = list(csv.DictReader(out_csv.open()))
    # the plot sweeps 0.25×..4× the load, so the CSV has rows for 5 loads × 2 hardware
    assert {float(r["qps"]) for r in rows} == {5.0, 10.0, 20.0, 40.0, 80.0}
    assert {r["hardware"] for r in rows} == {"l4", "h100-sxm"}
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unreachable_slo_exits_3_with_the_reason(cli):
    args = ["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "l4", "--qps", "5", "--prompt", "2000", "--gen", "200", "--ttft-slo", "0.05", "--tpot-slo", "0.001", "--max-devices", "8", "--executor", "serial"]
    code, out, err = cli(*args, "--json")
    assert code == 3
    e = json.loads(out)["error"]
    assert "exceeds" in e["message"] and e["details"]["hardware"] == "l4"
    code, out, err = cli(*args)
    assert code == 3 and "TPOT p95" in err


def test_several_models_on_one_fleet(cli):
    code, out, _ = cli(
        "capacity", "serve", "--models", "llama-3.1-8b,mistral-7b", "--mix", "0.7,0.3", "--hardware", "h100-sxm",
        "--qps", "4", "--prompt", "512", "--gen", "128", "--ttft-slo", "3", "--tpot-slo", "0.08", "--formats", "bf16", "--json", "--executor", "serial",
    )
    assert code == 0
    h = json.loads(out)["hardware"][0]
    assert h["best"]["hot_models"][0] == "llama-3.1-8b" and "separate_devices" in h


@pytest.mark.parametrize(
    "extra, field",
    [
        (["--mix", "0.5,0.5"], "mix"),  # --mix with a single --model
        (["--qps", "-2"], "qps"),
        (["--formats", "fp7"], None),
    ],
)
def test_serve_bad_input_exits_2(cli, extra, field):
    args = list(SERVE)
    if extra[0] == "--qps":
        args[args.index("--qps") + 1] = extra[1]
        extra = []
    code, out, err = cli(*args, *extra, "--json", "--executor", "serial")
    if field == "mix" or field == "qps":
        assert code == 2 and json.loads(out)["error"]["field"] == field
    else:
        # an unknown format cannot be placed on any hardware: nothing feasible, or a format error
        assert code in (2, 3)


def test_ray_executor_without_ray_says_how_to_install(cli):
    try:
        import ray  # noqa: F401
    except ImportError:
        code, out, _ = cli(*SERVE, "--executor", "ray", "--json")
        assert code == 2 and "tierwise[ray]" in json.loads(out)["error"]["message"]
    else:
        code, out, _ = cli(*SERVE, "--executor", "ray", "--json")
        assert code == 0 and json.loads(out)["feasible"]


def test_train_capacity(cli, tmp_path):
    code, out, _ = cli("capacity", "train", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tokens", "2e11", "--days", "30", "--json", "--executor", "serial", "--csv", str(tmp_path / "f.csv"))
    assert code == 0
    d = json.loads(out)
    b = d["best"]
    assert d["feasible"] and b["tokens_per_s"] >= d["required_tokens_per_s"] and b["days"] <= 30
    for key in ("devices", "tp", "pp", "dp", "micro_batch", "recompute", "zero", "mfu", "step_time_s", "memory_per_device_bytes"):
        assert key in b
    assert len(list(csv.DictReader((tmp_path / "f.csv").open()))) == len(d["frontier"])


def test_train_capacity_out_of_reach_exits_3(cli):
    code, out, err = cli("capacity", "train", "--model", "llama-3.1-70b", "--hardware", "l40s", "--tokens", "2e12", "--days", "3", "--max-devices", "64", "--executor", "serial")
    assert code == 3 and "short" in err


# ---------------------------------------------------------------------------
# tierwise estimate --mode training
# ---------------------------------------------------------------------------


def test_estimate_training_json_contract(cli):
    code, out, _ = cli(
        "estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--tp", "2", "--pp", "2", "--dp", "2",
        "--global-batch", "16", "--micro-batch", "1", "--seq", "4096", "--zero", "1", "--recompute", "selective", "--sequence-parallel", "--json",
    )
    assert code == 0
    d = json.loads(out)
    for key in ("step_time_s", "tokens_per_s", "tokens_per_s_per_device", "model_flops_per_s_per_device", "hardware_flops_per_s_per_device", "mfu", "hfu"):
        assert key in d
    for key in ("per_device_bytes", "weights_bytes", "gradients_bytes", "optimizer_bytes", "activations_bytes", "fits"):
        assert key in d["memory"]
    assert d["devices"] == 8


@pytest.mark.parametrize(
    "flags, rule",
    [
        (["--tp", "3"], "attention heads"),
        (["--pp", "64"], "number of layers"),
        (["--tp", "2", "--dp", "2", "--devices", "8"], "--devices (8) must equal tp×pp×dp = 2×1×2 = 4"),
        (["--global-batch", "3", "--dp", "2"], "multiple of --micro-batch"),
        (["--finetune", "lora"], "needs a rank"),
    ],
)
def test_impossible_training_layouts_exit_2_with_the_rule(cli, flags, rule):
    code, _, err = cli("estimate", "--mode", "training", "-m", "llama-3.1-8b", "-H", "h100-sxm", *flags)
    assert code == 2 and rule in err


# ---------------------------------------------------------------------------
# engines side by side, disaggregated serving, the frontier
# ---------------------------------------------------------------------------

ENGINES = ["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm,mi300x", "--engine", "vllm,trtllm,sglang",
           "--qps", "4", "--prompt", "2000", "--gen", "200", "--ttft-slo", "2", "--tpot-slo", "0.05", "--max-devices", "32",
           "--executor", "serial"]


def test_engines_side_by_side(cli, tmp_path):
    code, out, _ = cli(*ENGINES, "--json")
    assert code == 0
    d = json.loads(out)
    rows = {(h["engine"], h["hardware"]) for h in d["hardware"]}
    assert rows == {("vllm", "h100-sxm"), ("trtllm", "h100-sxm"), ("sglang", "h100-sxm"), ("vllm", "mi300x"), ("sglang", "mi300x")}
    assert [(u["engine"], u["hardware"]) for u in d["unsupported"]] == [("trtllm", "mi300x")]
    assert "does not run on mi300x" in d["unsupported"][0]["reason"]
    assert all(h["best"]["engine"] == h["engine"] for h in d["hardware"])
    out_csv = tmp_path / "rows.csv"
    code, out, _ = cli(*ENGINES, "--csv", str(out_csv))
    assert code == 0 and "trtllm" in out and "not supported" in out
    rows = list(csv.DictReader(out_csv.open()))
    assert len(rows) == 6 and {r["supported"] for r in rows} == {"True", "False"}


@pytest.mark.parametrize("engine, words", [
    ("vllm,vlm", ["--engine", "'vlm'", "did you mean vllm", "known engines", "sglang"]),
    ("vllm,vllm", ["--engine", "more than once"]),
    (",", ["--engine", "non-empty list"]),
])
def test_bad_engine_list_exits_2(cli, engine, words):
    args = [a if a != "vllm,trtllm,sglang" else engine for a in ENGINES]
    code, out, err = cli(*args)
    assert code == 2 and "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    code, out, _ = cli(*args, "--json")
    assert code == 2 and json.loads(out)["error"]["field"] == "engine"


def test_disaggregated_table_and_json(cli):
    code, out, _ = cli(*ENGINES, "--disaggregated")
    assert code == 0 and "Disaggregated prefill / decode" in out and "intra-node" in out
    code, out, _ = cli(*ENGINES, "--serving", "disaggregated", "--json")
    d = json.loads(out)
    assert d["serving"] == "disaggregated"
    for h in d["hardware"]:
        dis = h["disaggregated"]
        assert dis["meets_slo"] and dis["best"]["prefill"]["replicas"] >= 1 and dis["best"]["kv_transfer"]["seconds"] > 0
        assert dis["vs_aggregated"]["aggregated_devices"] == h["best"]["devices"]
    code, _, err = cli(*ENGINES, "--disaggregated", "--serving", "aggregated")
    assert code == 2 and "--disaggregated" in err
    code, _, err = cli(*ENGINES, "--serving", "split")
    assert code == 2 and "--serving" in err and "disaggregated" in err


def test_frontier_table_csv_plot_json(cli, tmp_path):
    args = ["capacity", "frontier", "--model", "llama-3.2-1b", "--hardware", "l4,mi300x", "--engine", "vllm,trtllm",
            "--prompt", "512", "--gen", "128", "--max-devices", "4", "--executor", "serial"]
    out_csv, out_png = tmp_path / "front.csv", tmp_path / "front.png"
    code, out, _ = cli(*args, "--csv", str(out_csv), "--plot", str(out_png))
    assert code == 0 and "tok/s/user" in out and "not supported" in out
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(out_csv.open()))
    code, out, _ = cli(*args, "--json")
    d = json.loads(out)
    priced = [r for r in rows if r["batch"]]
    assert len(priced) == sum(len(s["points"]) for s in d["series"]) > 0
    # the pair the table lists as not supported is in the file too, with its reason
    assert [(r["engine"], r["hardware"], r["supported"]) for r in rows if not r["batch"]] == [("trtllm", "mi300x", "False")]
    assert {(s["engine"], s["hardware"]) for s in d["series"]} == {("vllm", "l4"), ("trtllm", "l4"), ("vllm", "mi300x")}
    for s in d["series"]:
        pts = [(p["tokens_per_s_per_user"], p["tokens_per_s_per_device"]) for p in s["points"]]
        assert all(u1 > u2 and d1 < d2 for (u1, d1), (u2, d2) in zip(pts, pts[1:]))  # a strict Pareto staircase
    code, _, err = cli(*["vllm,nosuch" if a == "vllm,trtllm" else a for a in args])  # one --engine: a repeat is refused
    assert code == 2 and "--engine" in err and "known engines" in err
