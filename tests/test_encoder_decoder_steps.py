"""An encoder-decoder (T5) generates as Hugging Face runs it: the encoder and the cross-attention
K/V projections over the prompt once, in the prefill; the decoder from one start token; decode steps
run the decoder alone, reusing the cross-attention cache. The rows each linear of the cost model
processes per pass are checked against the rows the installed transformers' T5 feeds each module."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from hwmodels import load_device  # noqa: E402
from planner.arch import load_arch  # noqa: E402
from planner.costmodel import Choice, Layout, Serving, _decode_phase, _prefill_phase, estimate_inference, stage_phase  # noqa: E402
from planner.hfconfig import arch_from_config  # noqa: E402
from planner.workload import LINEAR, build_workload, op_load  # noqa: E402

PROMPT = 7
HF_NAME = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}


def _hf_rows() -> tuple[dict[str, int], dict[str, int]]:
    """Rows each decoder attention linear of a tiny T5 processes in the prefill and in one decode step."""
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
                   decoder_start_token_id=0)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(cfg).eval()
    seen: dict[str, int] = {}

    def hook(name):
        def record(_mod, inp, _out):
            seen[name] = seen.get(name, 0) + inp[0].shape[:-1].numel()
        return record

    for name, mod in model.named_modules():
        if name.startswith("decoder.block.0.") and name.rsplit(".", 1)[-1] in ("q", "k", "v", "o"):
            mod.register_forward_hook(hook(name.removeprefix("decoder.block.0.")))
    ids = torch.randint(0, 64, (1, PROMPT))
    with torch.no_grad():
        out = model(input_ids=ids, decoder_input_ids=torch.zeros(1, 1, dtype=torch.long), use_cache=True)
        prefill = dict(seen)
        seen.clear()
        model(encoder_outputs=(out.encoder_last_hidden_state,), decoder_input_ids=torch.ones(1, 1, dtype=torch.long),
              past_key_values=out.past_key_values, use_cache=True)
        decode = dict(seen)
    return prefill, decode


def _tierwise_rows(arch) -> tuple[dict[str, int], dict[str, int]]:
    serving = Serving(batch=1, prompt=PROMPT, gen=16)
    work = build_workload(arch)
    block = next(b for b in work.blocks if b.stage == "decoder")
    out = []
    for ph in (_prefill_phase(arch, serving), _decode_phase(arch, serving, 1)):
        rows = {}
        for op in block.ops:
            if op.kind != LINEAR or "Attention" not in op.name:
                continue
            p = stage_phase(ph, block.stage, op)
            if p is not None:
                prefix, leaf = op.name.rsplit(".", 1)
                rows[f"{prefix}.{HF_NAME[leaf]}"] = int(op_load(op, p).gemm_m)
        out.append(rows)
    return out[0], out[1]


def test_decoder_linears_process_the_rows_transformers_feeds_them():
    hf_prefill, hf_decode = _hf_rows()
    assert hf_prefill["layer.1.EncDecAttention.k"] == PROMPT and "layer.1.EncDecAttention.k" not in hf_decode
    for model in ("t5-3b", None):
        arch = load_arch(model) if model else arch_from_config(
            {"model_type": "t5", "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_decoder_layers": 2,
             "num_heads": 4, "vocab_size": 64}, model_id="tiny-t5", origin="test")
        prefill, decode = _tierwise_rows(arch)
        assert prefill == hf_prefill
        assert decode == hf_decode


def test_decode_steps_do_not_rerun_the_encoder_or_the_cross_attention_projections():
    arch, dev = load_arch("t5-3b"), load_device("a100-80gb-sxm")
    short = estimate_inference(arch, dev, Layout(), Serving(batch=8, prompt=64, gen=128), Choice())
    long = estimate_inference(arch, dev, Layout(), Serving(batch=8, prompt=2048, gen=128), Choice())
    # A decode step runs neither the encoder nor the cross-attention K/V projections; it reads their
    # cache (linear in the prompt), so only the cross-attention core grows with the prompt.
    for est in (short, long):
        names = [o.name for o in est.decode.ops]
        assert not [n for n in names if n.startswith("encoder.") or "EncDecAttention.k_proj" in n
                    or "EncDecAttention.v_proj" in n], names
        assert any("EncDecAttention.k_proj" in o.name for o in est.prefill.ops)
    grown = {o.name: (o.time_s, lo.time_s) for o, lo in zip(short.decode.ops, long.decode.ops, strict=True)
             if lo.time_s > o.time_s * 1.001}
    assert set(grown) == {"decoder.block.{i}.layer.1.EncDecAttention.core"}, grown
    # the decoder's self-attention cache holds the start token and the generated tokens, not the prompt
    dec = _decode_phase(arch, Serving(batch=1, prompt=2048, gen=129), 1)
    assert dec.context == pytest.approx(1 + 128 / 2) and dec.encoder_tokens == 2048
    # the prefill runs the decoder on its one start token
    pre = _prefill_phase(arch, Serving(batch=1, prompt=2048, gen=1))
    block = next(b for b in build_workload(arch).blocks if b.stage == "decoder")
    assert stage_phase(pre, "decoder", block.ops[0]).tokens == 1


def test_unfused_elementwise_passes_follow_each_stage():
    # Under an engine that runs residual adds and activations as their own kernels, the prefill pays them
    # for every encoder layer (over the prompt) and every decoder layer (over the start token); a decode
    # step for the decoder layers only.
    from planner.serving import RuntimeSettings

    arch, dev = load_arch("t5-3b"), load_device("a100-80gb-sxm")
    opts = RuntimeSettings(fused_elementwise=False)
    est = estimate_inference(arch, dev, Layout(), Serving(batch=2, prompt=512, gen=16), Choice(), options=opts)
    (pre,) = [o for o in est.prefill.ops if o.kind == "elementwise"]
    (dec,) = [o for o in est.decode.ops if o.kind == "elementwise"]
    assert pre.count == arch.num_layers + arch.num_decoder_layers and dec.count == arch.num_decoder_layers
    # the encoder's passes over 512 tokens dominate the mean: about (512 + 1) / 2 tokens per layer
    assert pre.activation_bytes / dec.activation_bytes == pytest.approx((512 + 1) / 2, rel=1e-9)
