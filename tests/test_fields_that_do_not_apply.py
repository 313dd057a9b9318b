"""A sequence length or an attention kernel given for a model it means nothing to (a CNN has neither;
a ViT's sequence is fixed by its image and patch size) is refused naming the field in the caller's
syntax, instead of being silently ignored. Left out, the defaults still suit the model."""

from __future__ import annotations

import json
import re

import pytest

from tests.frontdoors import app_client

TRAIN = ("estimate", "--mode", "training", "--hardware", "h100-sxm")


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


def test_seq_for_a_cnn_training_estimate_is_refused(cli):
    # Was: rc 0, the same figures as without --seq.
    r = cli(*TRAIN, "--model", "resnet-50", "--seq", "4096")
    assert r.code == 2 and not r.out
    assert "--seq 4096 does not apply to resnet-50, a CNN: it has no sequence length" in r.err, r.err


def test_attention_for_a_cnn_training_estimate_is_refused(cli):
    r = cli(*TRAIN, "--model", "resnet-50", "--attention", "unfused")
    assert r.code == 2 and "--attention unfused does not apply to resnet-50, a CNN: it has no attention layers" in r.err


def test_seq_for_a_vit_says_what_fixes_its_sequence(cli):
    r = cli(*TRAIN, "--model", "vit-h", "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to vit-h, a ViT" in r.err
    assert "257 positions" in r.err and "patch size 14" in r.err
    # a ViT has attention layers: the kernel is taken
    assert cli(*TRAIN, "--model", "vit-h", "--attention", "unfused").code == 0


def test_seq_for_a_cnn_capacity_train_is_refused(cli):
    args = ("capacity", "train", "--model", "resnet-50", "--hardware", "h100-sxm", "--tokens", "1e9", "--days", "1")
    r = cli(*args, "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to resnet-50, a CNN" in r.err, r.err
    assert cli(*args).code == 0


def test_defaults_still_run_and_language_models_take_seq(cli):
    assert cli(*TRAIN, "--model", "resnet-50").code == 0
    r = cli(*TRAIN, "--model", "llama-3.2-1b", "--seq", "1024", "--attention", "unfused")
    assert r.code == 0, r.err


def test_rest_refuses_with_its_own_field_name(client):
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training",
                                          "seq": 4096})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "seq" and err["code"] == "not_applicable"
    assert "'seq' 4096 does not apply to resnet-50, a CNN" in err["message"] and "--seq" not in err["message"]
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training",
                                          "attention": "unfused"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "attention"
    ok = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "mode": "training"})
    assert ok.status_code == 200, ok.text


def test_an_inference_estimate_of_a_cnn_does_not_send_seq_to_training(cli, client):
    # Was: "--seq applies to training estimates only ...; set --mode training", which then ignored it.
    r = cli("estimate", "--model", "resnet-50", "--hardware", "h100-sxm", "--seq", "4096")
    assert r.code == 2 and "--seq 4096 does not apply to resnet-50, a CNN" in r.err and "--mode" not in r.err, r.err
    r = client.post("/v1/estimate", json={"model": "resnet-50", "hardware": "h100-sxm", "seq": 4096})
    assert r.status_code == 422 and r.json()["error"]["field"] == "seq"
    # a language model keeps the advice: its --seq means something in training
    r = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--seq", "4096")
    assert r.code == 2 and "set --mode training" in r.err


def test_python_refuses_alike():
    import planner
    from planner.errors import TierwiseError

    with pytest.raises(TierwiseError, match="'seq' 4096 does not apply to resnet-50, a CNN"):
        planner.estimate_training("resnet-50", "h100-sxm", seq=4096)


@pytest.mark.parametrize("model, positions", [("vit-h", 257), ("resnet-50", 1)])
def test_an_image_model_reports_the_positions_it_trains_on(capsys, model, positions):
    # Was: "seq 2048" (estimate) and "seq 4096" (capacity train) for a ViT-H/14 at 224 px, whose
    # sample is 16·16 patches + the class token, and for a CNN, whose sample is one image.
    from tests.frontdoors import run

    code, out, err = run(capsys, "estimate", "-m", model, "-H", "h100-sxm", "--mode", "training", "--json")
    assert code == 0, err
    est = json.loads(out)
    assert est["seq"] == positions and est["tokens_per_s"] == pytest.approx(est["samples_per_s"] * positions)
    code, out, err = run(capsys, "capacity", "train", "-m", model, "-H", "h100-sxm", "--tokens", "1e12",
                         "--days", "30", "--json")
    assert code in (0, 3), err
    assert json.loads(out)["seq"] == positions


# --------------------------------------------------------------------------- KV cache fields
# An encoder, a ViT and a CNN keep no KV cache. A KV format given for one was echoed in the
# answer ("kv fp8") and moved an encoder's TTFT by 2 %, priced as a cache write no encoder makes;
# a plan recorded it as the KV format to export.

INFER = ("estimate", "--hardware", "l4")


@pytest.mark.parametrize("model, what", [("bert-base", "an encoder"), ("vit-h", "a ViT"), ("resnet-50", "a CNN")])
@pytest.mark.parametrize("flag, value", [("--kv", "fp8"), ("--kv-budget", "256"), ("--kv-share", "2")])
def test_kv_fields_for_a_model_without_cache_are_refused(cli, model, what, flag, value):
    r = cli(*INFER, "--model", model, flag, value)
    assert r.code == 2 and not r.out, r.err
    assert f"{flag} {value} does not apply to {model}, {what}" in r.err and "keeps no KV cache" in r.err, r.err
    assert f"leave {flag} out" in r.err


def test_plan_refuses_a_kv_format_for_an_encoder(cli):
    r = cli("plan", "--model", "bert-base", "--hardware", "l4", "--kv", "fp8")
    assert r.code == 2 and "--kv fp8 does not apply to bert-base, an encoder" in r.err, r.err
    assert cli("plan", "--model", "bert-base", "--hardware", "l4").code == 0


def test_kv_over_rest_and_python_names_its_own_field(client):
    import planner
    from planner.errors import TierwiseError

    r = client.post("/v1/estimate", json={"model": "bert-base", "hardware": "l4", "kv": "fp8"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "kv" and err["code"] == "not_applicable" and "--kv" not in err["message"]
    r = client.post("/v1/plans", json={"model": "resnet-50", "hardware": "l4", "kv": "int8"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "kv"
    with pytest.raises(TierwiseError, match="'kv_budget' 64 does not apply to vit-h, a ViT"):
        planner.estimate("vit-h", "l4", kv_budget=64)
    # generative models keep the field, and T5's cache (decoder and cross-attention) takes it
    assert planner.estimate("t5-3b", "l4", kv="int4-g64").choice.kv == "int4-g64"


def test_an_encoders_attention_reads_keys_and_values_as_activations():
    # Its K/V are the projections' outputs of the same pass: read at the activation format, never
    # written to a cache. A decoder's prefill writes each new token's K/V to its cache.
    from planner.costmodel import Choice, Layout, Serving, estimate_inference
    from planner.arch import load_arch
    from hwmodels import load_device

    dev = load_device("l4")
    bert = load_arch("bert-base")
    s = Serving(batch=1, prompt=512, gen=0)
    est = estimate_inference(bert, dev, Layout(), s, Choice())
    attn = [o for o in est.prefill.ops if o.kind == "attention"]
    assert attn
    elems = 2 * bert.num_kv_heads * bert.head_dim * 512  # K and V of 512 tokens, one layer
    for o in attn:
        assert o.kv_bytes == pytest.approx(elems * 2.0)  # bf16 activations, read once; no write
    assert estimate_inference(bert, dev, Layout(), s, Choice(kv="fp8")).prefill.time_s == pytest.approx(
        est.prefill.time_s)
    llama = load_arch("llama-3.2-1b")
    dec = estimate_inference(llama, dev, Layout(), s, Choice())
    per_tok = 2 * llama.num_kv_heads * llama.head_dim
    o = next(o for o in dec.prefill.ops if o.kind == "attention")
    assert o.kv_bytes == pytest.approx(per_tok * 512 * 2.0 * 2)  # read and written in bf16


def test_an_encoder_plan_shows_no_kv_cache_and_exports_its_context(cli, tmp_path):
    # Was: "KV cache / compute format bf16 / bf16", and vLLM's --max-model-len 640 (prompt 512 + gen 128) for
    # BERT-base, whose context is 512 positions: vLLM refuses a max_model_len beyond the model's.
    out = tmp_path / "bert.yaml"
    r = cli("plan", "--model", "bert-base", "--hardware", "l4", "--out", out)
    assert r.code == 0, r.err
    assert re.search(r"compute format\s*│\s*bf16", r.out) and "KV cache" not in r.out and "TTFT" not in r.out, r.out
    assert re.search(r"workload\s*│\s*batch 1, 512 tokens each", r.out) and "latency (one forward pass)" in r.out
    r = cli("export", out, "--format", "vllm", "--json")
    assert r.code == 0, r.err
    body = json.loads(r.out)
    args = json.loads(next(f for f in body["files"] if f["path"].endswith(".json"))["content"])
    assert args["max_model_len"] == 512
    llama = tmp_path / "llama.yaml"
    assert cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--out", llama).code == 0
    r = cli("export", llama, "--format", "vllm", "--json")
    args = json.loads(next(f for f in json.loads(r.out)["files"] if f["path"].endswith(".json"))["content"])
    assert args["max_model_len"] == 512 + 128  # a decoder holds the prompt and the generated tokens
