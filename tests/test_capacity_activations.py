"""`--activations` of `tierwise capacity serve|frontier` (and ``activations`` of the Python API):
every weight format searched computes in the given format where the engine runs that pair on
the hardware; the others are listed with the reason; a request no pair runs is an error naming
the field."""

from __future__ import annotations

import json

import pytest

import planner
from frontdoors import run
from hwmodels import load_device
from planner.errors import TierwiseError
from planner.request.capacity import serve_pairs

SERVE = ["capacity", "serve", "--model", "llama-3.1-8b", "--qps", "5", "--ttft-slo", "1", "--tpot-slo", "0.05",
         "--executor", "serial"]
FRONTIER = ["capacity", "frontier", "--model", "llama-3.2-1b", "--max-devices", "2", "--executor", "serial"]


def _serve(capsys, *args) -> dict:
    code, out, err = run(capsys, *SERVE, *args, "--json")
    assert code == 0, err
    return json.loads(out)


def _best(d: dict, engine: str, hw: str) -> dict:
    return next(h["best"] for h in d["hardware"] if (h["engine"], h["hardware"]) == (engine, hw))


@pytest.mark.parametrize("engine, w4a16", [("vllm", "nvfp4"), ("trtllm", "int4-g128")])
def test_w4a4_nvfp4_on_b200_is_faster_than_w4a16_on_the_same_fleet(capsys, engine, w4a16):
    """vLLM runs NVFP4 weights with 16-bit activations (its default) or NVFP4 ones on Blackwell;
    TensorRT-LLM's W4A16 is int4-g128. W4A4 prefills and decodes faster on the same one-B200 fleet."""
    a16 = _best(_serve(capsys, "--hardware", "b200", "--engine", engine, "--formats", w4a16), engine, "b200")
    a4 = _best(_serve(capsys, "--hardware", "b200", "--engine", engine, "--formats", "nvfp4", "--activations", "nvfp4"),
               engine, "b200")
    assert (a16["activations"], a4["weights"], a4["activations"]) == ("bf16", "nvfp4", "nvfp4")
    assert (a4["tp"], a4["pp"], a4["replicas"]) == (a16["tp"], a16["pp"], a16["replicas"]) == (1, 1, 1)
    assert a4["prefill_s"] < 0.6 * a16["prefill_s"]
    assert a4["tpot_p50_s"] < a16["tpot_p50_s"] and a4["ttft_p50_s"] < a16["ttft_p50_s"]


def test_fp8_activations_on_h100_price_every_row_in_fp8_and_list_the_formats_skipped(capsys):
    d = _serve(capsys, "--hardware", "h100-sxm", "--engine", "vllm,trtllm", "--activations", "fp8-e4m3")
    assert {(h["engine"], h["best"]["weights"], h["best"]["activations"]) for h in d["hardware"]} == {
        ("vllm", "fp8", "fp8-e4m3"), ("trtllm", "int4-g128", "fp8-e4m3")}  # TensorRT-LLM's W4A8 is cheapest
    skipped = {(u["engine"], u["weights"]): u["reason"] for u in d["unsupported"]}
    # vLLM runs int4-g128 with 16-bit activations only; neither engine runs bf16 weights with fp8
    assert skipped.keys() == {("vllm", "bf16"), ("vllm", "int4-g128"), ("trtllm", "bf16")}
    assert all(u["activations"] == "fp8-e4m3" and u["hardware"] == "h100-sxm" for u in d["unsupported"])
    assert skipped[("vllm", "int4-g128")] == ("vllm on h100-sxm does not compute int4-g128 weights in --activations "
                                               "fp8-e4m3; it runs them with bf16, fp16")
    # the table says it too, in the command line's syntax
    code, out, _ = run(capsys, *SERVE, "--hardware", "h100-sxm", "--engine", "vllm", "--activations", "fp8")
    assert code == 0 and "fp8 / fp8-e4m3 / bf16" in out and "int4-g128 / fp8-e4m3 / -" in out
    assert "--activations" in out and "not supported" in out


def test_a_pair_that_does_not_run_the_activations_is_unsupported_with_the_reason(capsys):
    """Ampere has no FP8 units: neither engine computes in fp8 on an A100, so the A100 pairs are
    listed as not supported while the H100 pairs are priced."""
    d = _serve(capsys, "--hardware", "h100-sxm,a100-80gb-sxm", "--engine", "vllm,trtllm", "--activations", "fp8-e4m3")
    assert {h["hardware"] for h in d["hardware"]} == {"h100-sxm"}
    whole = {u["engine"]: u["reason"] for u in d["unsupported"] if u["hardware"] == "a100-80gb-sxm"}
    assert whole.keys() == {"vllm", "trtllm"}
    assert all("weights" not in u for u in d["unsupported"] if u["hardware"] == "a100-80gb-sxm")
    assert whole["vllm"].startswith("vllm on a100-80gb-sxm does not compute in --activations 'fp8-e4m3' with the "
                                    "weight formats searched: it runs bf16 weights with bf16, fp16; fp8 weights with "
                                    "bf16, fp16")


def test_no_pair_runs_the_activations_names_the_flag_and_what_runs_instead(capsys):
    code, _, err = run(capsys, *SERVE, "--hardware", "h100-sxm,b200", "--engine", "vllm", "--activations", "nvfp4")
    assert code == 2
    assert "--activations 'nvfp4'" in err and "nvfp4 weights compute in it (add them to --formats)" in err
    assert "vllm on h100-sxm: bf16 weights with bf16, fp16" in err
    code, _, err = run(capsys, *SERVE, "--hardware", "h100-sxm", "--activations", "int4-g128")
    assert code == 2 and "--activations 'int4-g128'" in err and "runs no weight format with int4-g128" in err


@pytest.mark.parametrize("value, text", [
    ("fp8-e4", "--activations: unknown format 'fp8-e4' (did you mean fp8-e4m3"),
    ("nvfp", "(did you mean nvfp4"),
    ("int4-g64", "--activations must be a format usable for activations (compute)"),  # a weight-only format
    ("8", "--activations: unknown format '8'"),
])
@pytest.mark.parametrize("command", [SERVE + ["--hardware", "h100-sxm"], FRONTIER + ["--hardware", "h100-sxm"]])
def test_bad_activations_name_the_flag(capsys, command, value, text):
    code, _, err = run(capsys, *command, "--activations", value)
    assert code == 2 and text in err


def test_frontier_w4a4_points_outrun_w4a16_at_the_same_batch(capsys):
    def points(*extra) -> dict:
        code, out, err = run(capsys, *FRONTIER, "--hardware", "b200", "--engine", "vllm", "--formats", "nvfp4",
                             *extra, "--json")
        assert code == 0, err
        (s,) = json.loads(out)["series"]
        return {(p["tp"], p["batch"]): p for p in s["points"]}

    a16, a4 = points(), points("--activations", "nvfp4")
    assert {p["activations"] for p in a16.values()} == {"bf16"} and {p["activations"] for p in a4.values()} == {"nvfp4"}
    same = a16.keys() & a4.keys()
    assert same and all(a4[k]["prefill_s"] < a16[k]["prefill_s"] and a4[k]["step_s"] <= a16[k]["step_s"] for k in same)
    assert max(p["tokens_per_s_per_device"] for p in a4.values()) > max(p["tokens_per_s_per_device"] for p in a16.values())


def test_python_api_takes_activations_and_refuses_a_pair_no_engine_runs():
    ans = planner.capacity_frontier("llama-3.2-1b", ["h100-sxm"], engine="trtllm", formats=["int4-g128"],
                                    activations="fp8-e4m3", max_devices=1)
    assert {(p.weights, p.activations) for s in ans.series for p in s.points} == {("int4-g128", "fp8-e4m3")}
    with pytest.raises(TierwiseError) as e:
        planner.capacity_serve("llama-3.1-8b", ["h100-sxm"], qps=5, ttft_slo_s=1, tpot_slo_s=0.05, activations="nvfp4")
    assert e.value.field == "activations"


def test_left_out_the_pairs_are_priced_as_before():
    """Without activations each weight format computes in the engine's default for it and nothing is skipped."""
    (pair,) = serve_pairs((None,), [load_device("h100-sxm")], ("bf16", "fp8", "int4-g128"), "bf16",
                          given_formats=False, given_kv=False, runtime=None)
    assert pair.setup.formats == (("bf16", "bf16"), ("fp8", "fp8"), ("int4-g128", "bf16")) and not pair.skipped
    ans = planner.capacity_serve("llama-3.1-8b", ["h100-sxm", "l4"], qps=5, ttft_slo_s=1, tpot_slo_s=0.05)
    assert "unsupported" not in ans.to_dict() and {h.best.activations for h in ans.ranked} == {"fp8"}


def test_capacity_train_suggests_a_mistyped_activations_format(capsys):
    """A typo is a format error with its suggestion, before the engine is asked whether it runs it."""
    train = ["capacity", "train", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--tokens", "1e12", "--days", "30"]
    code, _, err = run(capsys, *train, "--activations", "fp8-e4")
    assert code == 2 and "--activations: unknown format 'fp8-e4' (did you mean fp8-e4m3" in err
    code, _, err = run(capsys, *train, "--activations", "int8")
    assert code == 2 and "megatron-core on h100-sxm does not compute in --activations 'int8'" in err


def test_csv_lists_the_weight_formats_skipped_in_command_line_syntax(capsys, tmp_path):
    """Both CSVs carry the (weights, activations) entries the table shows as not supported, with
    the reason naming --activations (the command line's flag), and the frontier's batch stays whole."""
    import csv

    code, _, err = run(capsys, *SERVE, "--hardware", "b200", "--formats", "fp8,nvfp4", "--activations", "nvfp4",
                       "--csv", str(tmp_path / "s.csv"))
    assert code == 0, err
    code, _, err = run(capsys, *FRONTIER, "--hardware", "b200", "--formats", "fp8,nvfp4", "--activations", "nvfp4",
                       "--csv", str(tmp_path / "f.csv"))
    assert code == 0, err
    for name in ("s.csv", "f.csv"):
        with (tmp_path / name).open() as f:
            rows = list(csv.DictReader(f))
        skipped = [r for r in rows if r["supported"] == "False"]
        assert [(r["weights"], r["activations"]) for r in skipped] == [("fp8", "nvfp4")], rows
        assert "--activations nvfp4" in skipped[0]["failures"] and "'activations'" not in skipped[0]["failures"]
        priced = [r for r in rows if r["supported"] == "True"]
        assert priced and all(r["weights"] == "nvfp4" and r["activations"] == "nvfp4" for r in priced)
        if name == "f.csv":
            assert all(r["batch"].isdigit() for r in priced), rows


def test_a_given_format_the_engine_does_not_run_is_listed_not_dropped(capsys):
    """vLLM runs no int8 weights on MI300X: asked for fp8,int8 it searches fp8 and lists int8 with
    the reason (it used to vanish from the answer), with --activations or without."""
    for extra in ((), ("--activations", "fp8-e4m3")):
        d = _serve(capsys, "--hardware", "mi300x", "--engine", "vllm", "--formats", "fp8,int8", *extra)
        assert _best(d, "vllm", "mi300x")["weights"] == "fp8"
        assert d["unsupported"] == [{"engine": "vllm", "hardware": "mi300x", "weights": "int8",
                                     "reason": "vllm on mi300x does not run --formats int8; it runs: bf16, fp16, fp8-e4m3"}]
    code, out, err = run(capsys, *SERVE, "--hardware", "mi300x", "--engine", "vllm", "--formats", "fp8,int8")
    assert code == 0 and "int8 / - / -" in out and "not supported" in out and "'formats'" not in out, out


def test_train_refusal_offers_only_activations_a_request_can_name(capsys):
    """Megatron-Core's Blackwell profile lists MXFP8, which no --activations value names: the refusal
    lists what the caller can ask for (it offered mxfp8, then refused it as no activation format)."""
    code, _, err = run(capsys, "capacity", "train", "--model", "llama-3.1-8b", "--hardware", "b200", "--tokens", "1e11",
                       "--days", "2", "--activations", "nvfp4")
    text = " ".join(err.split())
    assert code == 2 and "--activations 'nvfp4'; it runs: bf16, fp16, fp8-e4m3" in text and "mxfp8" not in text, text

