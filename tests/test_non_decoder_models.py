"""Encoders, an encoder-decoder, a ViT and CNNs through every front door, as an adversarial trial
of them found them wanting: each test names what it was before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

MODELS_DIR = Path(__file__).resolve().parents[1] / "profiles" / "models"


def _plan(cli, tmp_path, model, hardware, *extra, name="p.yaml"):
    out = tmp_path / name
    r = cli("plan", "--model", model, "--hardware", hardware, *extra, "--out", out)
    assert r.code == 0, r.err
    return out


def test_a_cnns_average_weight_bits_count_its_fan_in(cli, tmp_path):
    # Was 22.7 bits at int8 (each conv weight priced with a scale of its own), so --avg-bits 8 could not be met.
    # (TVM quantizes convolutions; hf-transformers keeps them 16-bit, below)
    r = cli("plan", "--model", "resnet-50", "--hardware", "l4", "--formats", "int8", "--engine", "tvm", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["predicted"]["avg_weight_bits"] == pytest.approx(8.0, abs=0.1)
    r = cli("plan", "--model", "resnet-50", "--hardware", "l4", "--formats", "fp16,int8,int4-g32", "--avg-bits", "8",
            "--engine", "tvm", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["predicted"]["avg_weight_bits"] <= 8.0 + 1e-6


@pytest.mark.parametrize("model, auto", [("resnet-50", "AutoModelForImageClassification"),
                                         ("vit-h", "AutoModelForImageClassification"),
                                         ("t5-3b", "AutoModelForSeq2SeqLM"), ("bert-base", "AutoModel"),
                                         ("llama-3.2-1b", "AutoModelForCausalLM")])
def test_the_hf_export_loads_each_family_with_a_class_that_takes_its_config(cli, tmp_path, model, auto):
    # Was AutoModelForCausalLM for every model: transformers refuses a ResNet, ViT or T5 config there.
    transformers = pytest.importorskip("transformers")
    plan = _plan(cli, tmp_path, model, "l4", "--engine", "hf-transformers")
    r = cli("export", plan, "--format", "hf", "--json")
    assert r.code == 0, r.err
    load = next(f["content"] for f in json.loads(r.out)["files"] if f["path"] == "load.py")
    assert f"from transformers import {auto}\n" in load and f"model = {auto}.from_pretrained(" in load
    raw = {k: v for k, v in json.loads((MODELS_DIR / f"{model}.json").read_text()).items() if not k.startswith("_")}
    config = transformers.AutoConfig.for_model(**raw)
    assert type(config) in getattr(transformers, auto)._model_mapping, (auto, type(config).__name__)


def test_hf_transformers_plans_keep_a_cnns_convolutions_16bit_and_export_refuses_them_quantized(cli, tmp_path):
    # transformers' quantizers swap nn.Linear only (profiles/engines/hf-transformers.yaml `conv`): the planner
    # offered int8 / 4-bit convolutions that the export then refused
    plan = _plan(cli, tmp_path, "resnet-50", "l4", "--engine", "hf-transformers", "--formats", "int8")
    d = yaml.safe_load(Path(plan).read_text())
    convs = {g: c["weights"] for g, c in d["choices"].items() if g != "model.classifier"}
    assert set(convs.values()) == {"bf16"} and d["choices"]["model.classifier"]["weights"] == "int8"
    r = cli("export", plan, "--format", "hf", "--json")
    assert r.code == 0, r.err
    from planner.export import ExportError, export_plan

    d["choices"]["model.resnet.embedder.embedder.convolution"]["weights"] = "int8"  # a plan edited by hand
    with pytest.raises(ExportError) as e:
        export_plan(d, "hf")
    assert e.value.field == "choices.model.resnet.embedder.embedder.convolution.weights"
    assert "swap nn.Linear layers only: model.resnet.embedder.embedder.convolution would stay 16-bit" in str(e.value)


@pytest.mark.parametrize("fmt", ["vllm", "sglang", "trtllm", "megatron", "llamacpp"])
def test_export_refuses_an_engine_that_does_not_run_the_family(cli, tmp_path, fmt):
    # Was: vllm serve microsoft/resnet-50 ..., quantize.py --model_dir microsoft/resnet-50, pretrain_gpt.py.
    plan = _plan(cli, tmp_path, "resnet-50", "l4")
    r = cli("export", plan, "--format", fmt, "--out", tmp_path / "out")
    assert r.code == 2 and "does not run cnn models such as resnet-50" in r.err, r.err
    runs = "fsdp" if fmt == "megatron" else "hf-transformers"  # the training engines that run CNNs, or the serving ones
    assert "engines that run cnn models on l4: " in r.err and runs in r.err and not (tmp_path / "out").exists()


def test_llamacpp_exports_t5_and_bert(cli, tmp_path):
    # Was: "no GGUF tensor name known for module 'shared'" (T5) and '...cls.predictions.transform.dense' (BERT).
    t5 = _plan(cli, tmp_path, "t5-3b", "cpu-host", "--formats", "int4-g32,int8-g32", "--max-memory-per-device", "4GB",
               name="t5.yaml")
    r = cli("export", t5, "--json")
    assert r.code == 0, r.err
    types = next(f["content"] for f in json.loads(r.out)["files"] if f["path"] == "tensor_types.txt").splitlines()
    assert types and all(t.startswith(("enc\\.blk\\.", "dec\\.blk\\.")) for t in types), types[:3]
    assert any("\\.cross_attn_q\\.weight=" in t for t in types) and any("\\.ffn_down\\.weight=" in t for t in types)
    bert = _plan(cli, tmp_path, "bert-base", "cpu-host", name="bert.yaml")
    r = cli("export", bert, "--json")
    assert r.code == 0, r.err
    body = json.loads(r.out)
    script = next(f["content"] for f in body["files"] if f["path"].endswith(".sh"))
    assert "--embeddings" in script and "-c 512" in script  # an embedding model, its prompt only
    assert any("does not write cls.predictions.transform.dense" in n for n in body["notes"])


def test_batch_max_for_a_model_whose_memory_does_not_grow_is_refused(cli):
    # Was batch 1,048,576 (the search's end) and a latency of hours.
    r = cli("estimate", "--model", "all-minilm-l6-v2", "--hardware", "cpu-host", "--batch", "max")
    assert r.code == 2 and "--batch max: memory does not bound the batch of all-minilm-l6-v2" in r.err, r.err
    r = cli("estimate", "--model", "resnet-50", "--hardware", "l4", "--batch", "max", "--json")
    assert r.code == 0 and 1 < json.loads(r.out)["batch"] < 1 << 20


def test_a_degree_the_model_cannot_take_is_named_before_the_device_count(cli):
    # Was: "--devices (2) must equal tp×pp×dp = 1×1×1 = 1".
    r = cli("estimate", "--model", "bert-base", "--hardware", "h100-sxm", "--ep", "2", "--devices", "2")
    assert r.code == 2 and "--ep 2 needs a mixture-of-experts model" in r.err, r.err


def test_recompute_for_a_cnn_is_refused(cli):
    # Was: the same step time and activations as without it.
    args = ("estimate", "--model", "resnet-50", "--hardware", "h100-sxm", "--mode", "training")
    r = cli(*args, "--recompute", "full")
    assert r.code == 2 and "--recompute full does not apply to resnet-50, a CNN" in r.err, r.err
    assert cli(*args, "--recompute", "none").code == 0


def test_a_plan_says_what_prompt_and_gen_mean_and_refuses_tpot(cli, tmp_path):
    # Was: stored tpot_slo_s 0.001 and workload prompt 1000, gen 7 for a CNN without a word.
    r = cli("plan", "--model", "resnet-50", "--hardware", "h100-sxm", "--tpot-slo", "1ms")
    assert r.code == 2 and "--tpot-slo 1ms does not apply to resnet-50 (cnn)" in r.err, r.err
    plan = _plan(cli, tmp_path, "resnet-50", "h100-sxm", "--prompt", "1000", "--gen", "7")
    notes = yaml.safe_load(plan.read_text())["predicted"]["notes"]
    assert any("prompt length (1000) does not apply" in n for n in notes)
    assert any("gen (7) does not apply" in n for n in notes)


def test_context_parallel_for_a_vit_names_its_positions(cli):
    r = cli("estimate", "--model", "vit-h", "--hardware", "h100-sxm", "--mode", "training", "--cp", "2", "--devices", "2")
    assert r.code == 2 and "must divide the 257 positions of vit-h" in r.err and "--seq" not in r.err, r.err


def test_capacity_train_takes_a_time_limit_on_the_command_line(cli):
    # Was: no such option (REST took time_limit_s).
    args = ("capacity", "train", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--tokens", "1e9", "--days", "1")
    r = cli(*args, "--time-limit", "60", "--json")
    assert r.code == 0 and json.loads(r.out)["feasible"] is True, r.err
    r = cli(*args, "--time-limit", "0")
    assert r.code == 2 and "--time-limit" in r.err


def test_an_engine_that_does_not_run_on_the_hardware_suggests_engines_for_the_model(cli):
    # Was: vllm, trtllm and llamacpp suggested for ResNet-50, none of which runs a CNN.
    r = cli("estimate", "--model", "resnet-50", "--hardware", "l4", "--engine", "vitis-ai")
    assert r.code == 2, r.err
    listed = r.err.split("serving engines for cnn models that do:")[1]
    assert "hf-transformers" in listed and "vllm" not in listed and "trtllm" not in listed, r.err


@pytest.mark.parametrize("model, images", [("bert-base", False), ("resnet-50", True), ("vit-h", True)])
def test_an_answer_for_a_model_that_generates_nothing_says_so(cli, model, images):
    # Was tpot_s 0.0, output tokens/s 0.0, "kv bf16", "gen 128", "TTFT (prefill)" and "prefill tokens/s"
    # for models that generate no token and keep no KV cache.
    r = cli("estimate", "--model", model, "--hardware", "l4", "--batch", "4", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["gen"] is None and d["kv"] is None and d["tpot_s"] is None
    assert d["output_tokens_per_s"] is None and d["decode_tokens_per_s"] is None and d["decode"] is None
    assert (d["prompt"] is None) is images and d["samples_per_s"] > 0 and d["latency_s"] == d["ttft_s"]
    assert not {"tpot_s", "output_tokens_per_s", "decode_tokens_per_s"} & set(d["uncertainty"]["intervals"])
    text = cli("estimate", "--model", model, "--hardware", "l4", "--batch", "4").out
    assert "latency (one forward pass)" in text and "TTFT" not in text and "TPOT" not in text
    assert "KV cache" not in text and "kv " not in text and "prefill tokens/s" not in text
    assert ("images/s" in text) is images and ("4 images" in text) is images
    assert ("tokens/s" in text) is (model == "bert-base") and ("patches/s" in text) is (model == "vit-h")


def test_a_decoder_without_generated_tokens_has_no_tpot():
    from planner.request import build_estimate_request, estimate_result_dict, run_estimate

    req = build_estimate_request({"model": "llama-3.2-1b", "hardware": "l4", "gen": 0})
    d = estimate_result_dict(req, run_estimate(req))
    assert d["tpot_s"] is None and d["gen"] == 0 and d["kv"] == "bf16" and d["output_tokens_per_s"] == 0.0


@pytest.mark.parametrize("model, unit, basis", [("resnet-50", "images", "images"), ("vit-h", "patches", "image_patches"),
                                                ("llama-3.2-1b", "tokens", "tokens")])
def test_a_training_step_counts_what_the_model_reads(cli, model, unit, basis):
    # Was "tokens/s" for a CNN's images
    r = cli("estimate", "--model", model, "--hardware", "a100-80gb-sxm", "--mode", "training", "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["per_token_basis"] == basis
    text = cli("estimate", "--model", model, "--hardware", "a100-80gb-sxm", "--mode", "training").out
    assert f"{unit}/s per device" in text and (unit == "tokens" or "tokens/s" not in text)


def test_batch_max_and_engine_notes_of_an_encoder_speak_of_activations(cli):
    # Was: "the largest whose KV cache fits … would move 0.00 GB", and "static memory plan: KV cache and
    # activations held for … (prompt + gen, the export's --max_seq_length)" for BERT on a phone
    r = cli("estimate", "--model", "bert-base", "--hardware", "snapdragon-8-gen-3", "--batch", "max", "--json")
    assert r.code == 0, r.err
    notes = " ".join(json.loads(r.out)["notes"])
    assert "KV cache" not in notes and "prompt + gen" not in notes and "0.00 GB" not in notes, notes
    assert "largest whose activations fit" in notes and "activations held for the program's input shape" in notes


def test_one_throughput_has_one_band():
    # patches/s (or prompt tokens/s) of a model that generates nothing is its samples/s times a constant
    from planner.request import build_estimate_request, estimate_result_dict, run_estimate

    for model in ("vit-h", "bert-base", "resnet-50"):
        req = build_estimate_request({"model": model, "hardware": "h100-sxm", "batch": 4})
        i = estimate_result_dict(req, run_estimate(req))["uncertainty"]["intervals"]
        a, b = i["prefill_tokens_per_s"], i["samples_per_s"]
        assert a["p10"] / a["value"] == pytest.approx(b["p10"] / b["value"]), model
        assert a["p90"] / a["value"] == pytest.approx(b["p90"] / b["value"]), model


@pytest.mark.parametrize("args", [("--model", "resnet-50"), ("-m", "bert-base"), ("--model=vit-h",)])
def test_capacity_serve_refuses_a_model_that_generates_nothing_before_asking_for_slos(cli, args):
    # Was: "missing --ttft-slo", then "missing --tpot-slo", and only then "resnet-50 (cnn) generates no tokens"
    r = cli("capacity", "serve", *args, "--hardware", "h100-sxm", "--qps", "1000")
    assert r.code == 2 and "generates no tokens" in r.err and "missing" not in r.err, r.err
    r = cli("capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--qps", "10")
    assert r.code == 2 and "missing --ttft-slo" in r.err, r.err


def test_a_plan_says_whether_its_model_generates(cli, tmp_path):
    import yaml

    for model, generative in (("resnet-50", False), ("bert-base", False), ("llama-3.2-1b", True)):
        out = _plan(cli, tmp_path, model, "l4", "--engine", "hf-transformers", name=f"{model}.yaml")
        d = yaml.safe_load(Path(out).read_text())
        assert d["predicted"]["generative"] is generative
        shown = cli("plan", "show", out).out
        assert ("TTFT" in shown) is generative and ("latency (one forward pass)" in shown) is not generative
    # a plan written before plans said still loads, and its table infers it from what it counts
    from planner.plan import load_plan, plan_from_dict, plan_to_dict

    d = plan_to_dict(load_plan(tmp_path / "resnet-50.yaml"))
    d["predicted"].pop("generative")
    d.pop("checksum", None)
    old = plan_from_dict(d)
    assert old.predicted.generative is None and old.predicted.per_token_basis == "images"
    assert "generative" not in plan_to_dict(old)["predicted"]
