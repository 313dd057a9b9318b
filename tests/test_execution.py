"""Execution: models, packed storage, apply_plan handlers, KV cache, bad input.

Reference numbers name their source; tolerances are stated next to them.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from planner.backends import quantize_tensor, sqnr_db
from planner.execution.apply import HANDLERS, LayerOption, apply_plan, compressed_modules, option_type
from planner.execution.decoder import DecoderConfig, LlamaDecoder, init_decoder_weights
from planner.execution.errors import ModelLoadError, PlanApplyError
from planner.execution.models import documentation_paragraphs, load_torch_model, minilm_dir
from planner.execution.modules import LowRankLinear, PackedConv2d, PackedEmbedding, PackedLinear
from planner.execution.storage import pack_weight, predicted_nbytes
from planner.execution.tokenizer import WordPieceTokenizer
from planner.formats import get_format, parse_sparsity


@pytest.fixture(scope="module")
def minilm():
    return load_torch_model("all-minilm-l6-v2")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- models -------------------------------------------------------------------------------------


def test_minilm_embeddings_match_sentence_transformers(minilm):
    # Reference: sentence-transformers 6.2.0 SentenceTransformer(<package model dir>).encode(...) on CPU,
    # first four dimensions of the normalised embeddings; fp32 kernels agree to ~1e-7, tolerance 1e-5.
    ref = [[0.04393358156085014, 0.058934420347213745, 0.04817834869027138, 0.07754811644554138],
           [-0.06609359383583069, -0.032079197466373444, 0.00022555403120350093, -0.05710015073418617]]
    tok = minilm.info["tokenizer"]
    enc = tok.batch(["The quick brown fox jumps over the lazy dog.", "Python lists are mutable sequences."])
    with torch.no_grad():
        e = minilm.module(enc.input_ids, enc.attention_mask)
    assert torch.allclose(e[:, :4], torch.tensor(ref), atol=1e-5)
    assert float(e[0] @ e[1]) == pytest.approx(0.025925930589437485, abs=1e-5)
    assert torch.allclose(e.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_tokenizer_matches_hf_tokenizers_library():
    tokenizers = pytest.importorskip("tokenizers")
    ours = WordPieceTokenizer(minilm_dir() / "vocab.txt")
    ref = tokenizers.Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    ref.no_truncation()
    ref.no_padding()
    texts = documentation_paragraphs(20, seed=3) + ["Crème brûlée costs $5.50 — naïve café 東京!"]
    for text in texts:
        assert ours.encode(text, max_length=10_000) == ref.encode(text).ids


def test_documentation_paragraphs_are_real_prose():
    paras = documentation_paragraphs(40, seed=0)
    assert len(set(paras)) == 40
    assert all(80 <= len(p) <= 600 and p[0].isupper() for p in paras)
    assert documentation_paragraphs(5, seed=1) == documentation_paragraphs(5, seed=1)


def test_digits_cnn_trains_to_high_accuracy():
    tm = load_torch_model("digits-cnn")
    x, = tm.make_inputs(540, 0)
    y = tm.labels(540, 0)
    with torch.no_grad():
        acc = float((tm.module(x).argmax(-1) == y).float().mean())
    # A 3-conv CNN on the 8×8 UCI digits reaches > 95 % test accuracy (scikit-learn's SVC example reports 97 %).
    assert acc > 0.95


def test_decoder_kv_cache_matches_full_forward():
    cfg = DecoderConfig(vocab_size=97, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, head_dim=16,
                        intermediate_size=128)
    model = LlamaDecoder(cfg)
    init_decoder_weights(model, seed=1)
    ids = torch.randint(0, 97, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids)
        cache = model.new_cache()
        steps = [model(ids[:, :8], cache)]
        for t in range(8, 12):
            steps.append(model(ids[:, t:t + 1], cache))
    assert torch.allclose(torch.cat(steps, dim=1), full, atol=1e-5)


def test_decoder_from_catalog_is_shrunk_and_named_like_hf():
    tm = load_torch_model("llama-3.2-1b@layers=1,vocab=512")
    assert tm.arch.num_layers == 1 and tm.arch.vocab_size == 512
    names = dict(tm.module.named_modules())
    for n in ("model.embed_tokens", "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.down_proj", "lm_head"):
        assert n in names
    # llama-3.2-1b: hidden 2048, 32 heads, 8 KV heads of 64 (Meta model card config.json)
    assert tuple(names["model.layers.0.self_attn.k_proj"].weight.shape) == (512, 2048)


@pytest.mark.parametrize("spec, needle", [
    ("nosuch-model", "unknown torch model"),
    ("llama-3.2-1b@layers=0", "layers=N"),
    ("bert-base", "without weights"),
    ("mixtral-8x7b@layers=1,vocab=64", "not a dense Llama-shaped"),
])
def test_bad_torch_model_names_explain(spec, needle):
    with pytest.raises(ModelLoadError, match=needle):
        load_torch_model(spec)


def test_corrupt_weights_file_is_a_clear_error(tmp_path):
    src = minilm_dir()
    for name in ("config.json", "vocab.txt"):
        (tmp_path / name).write_bytes((src / name).read_bytes())
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}" + b"\0" * 64)
    with pytest.raises(ModelLoadError, match="corrupt or not in safetensors format"):
        load_torch_model(str(tmp_path))


# -- storage ------------------------------------------------------------------------------------


def test_int8_per_channel_payload_is_int8_codes_plus_fp16_scales():
    w = torch.randn(48, 96, generator=torch.Generator().manual_seed(0))
    p = pack_weight(w, "int8")
    assert p.payload["q.codes"].dtype == torch.int8 and p.payload["q.scales"].dtype == torch.float16
    # 48·96 codes + 48 fp16 scales (DESIGN: int8 per output channel, fp16 scale per row)
    assert p.nbytes() == 48 * 96 + 48 * 2 == predicted_nbytes("int8", "dense", 48, 96)


def test_int4_two_codes_per_byte():
    w = torch.randn(32, 256, generator=torch.Generator().manual_seed(0))
    p = pack_weight(w, "int4-g128")
    # 4.125 bits per value (4 + 16/128): 32·256·4/8 code bytes + 32·2 fp16 scales · 2 bytes
    assert p.nbytes() == 32 * 256 // 2 + 32 * 2 * 2
    assert p.nbytes() == math.ceil(32 * 256 * 4.125 / 8)


@pytest.mark.parametrize("sparsity", ["2:4", "unstructured:0.5", "unstructured:0.9"])
def test_sparse_storage_keeps_only_kept_codes(sparsity):
    w = torch.randn(64, 128, generator=torch.Generator().manual_seed(2))
    p = pack_weight(w, "int4-g32", sparsity)
    mask = p.mask()
    sp = parse_sparsity(sparsity)
    assert mask is not None and int(mask.sum()) == round(sp.density * w.numel())
    d = p.dequantize()
    assert bool((d[~mask] == 0).all())
    # Kept values are exactly what the format makes of the pruned weight.
    ref = quantize_tensor(w * mask, "int4-g32").dequantize()
    assert torch.equal(d[mask], ref[mask])
    assert p.nbytes() == p.predicted_nbytes() < get_format("int4-g32").nbytes(w.numel(), 64, 128)


# -- apply_plan ---------------------------------------------------------------------------------


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = nn.Embedding(50, 32)
        self.conv = nn.Conv2d(2, 8, 3, padding=1)
        self.fc1 = nn.Linear(32, 64)
        self.fc2 = nn.Linear(64, 32)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)

    def forward(self, ids: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
        x = self.emb(ids).mean(1)
        x = x + self.conv(img).mean((1, 2, 3)).unsqueeze(-1)
        return self.fc2(torch.relu(self.fc1(x)))


def _tiny_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 50, (4, 6), generator=g), torch.randn(4, 2, 5, 5, generator=g)


@pytest.mark.parametrize("kind, opt, cls", [
    ("quantize", LayerOption(weights="int8"), PackedLinear),
    ("prune", LayerOption(weights="bf16", sparsity="2:4"), PackedLinear),
    ("low-rank", LayerOption(weights="int8", low_rank=8), LowRankLinear),
    ("keep", LayerOption(), nn.Linear),
])
def test_every_handler_is_registered_and_builds_its_module(kind, opt, cls):
    assert option_type(opt) == kind and kind in HANDLERS
    model = _Tiny()
    before = _state(model)
    out = apply_plan(model, {"fc1": opt})
    assert isinstance(out.fc1, cls)
    assert _same_state(before, _state(model)), "the original model must not change"
    with torch.no_grad():
        y0, y1 = model(*_tiny_inputs()), out(*_tiny_inputs())
    assert y1.shape == y0.shape and sqnr_db(y0, y1) > 10


def test_conv_and_embedding_are_packed():
    model = _Tiny()
    out = apply_plan(model, {"conv": {"weights": "int4-g32"}, "emb": {"weights": "int8"}})
    assert isinstance(out.conv, PackedConv2d) and isinstance(out.emb, PackedEmbedding)
    mods = compressed_modules(out)
    assert set(mods) == {"conv", "emb"}
    # conv kernel [8, 2, 3, 3] is stored as 8 rows of 18 values
    assert mods["conv"].weight_nbytes() == predicted_nbytes("int4-g32", "dense", 8, 18)
    assert sqnr_db(model.conv.weight, mods["conv"].dense_weight()) > 15


def test_w8a8_uses_integer_gemm_and_matches_dequantized_math():
    lin = nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 64, generator=torch.Generator().manual_seed(3)) * 0.05)
    x = torch.randn(5, 7, 64, generator=torch.Generator().manual_seed(4))
    holder = nn.Sequential(lin)
    q = apply_plan(holder, {"0": {"weights": "int8", "activations": "int8"}})[0]
    assert q._int8_gemm
    xq = quantize_tensor(x.reshape(-1, 64), "int8").dequantize().reshape(x.shape)
    ref = torch.nn.functional.linear(xq, q.dense_weight(), lin.bias)
    with torch.no_grad():
        got = q(x)
    # int32 accumulation is exact; only the fp32 scale products differ (relative 1e-6)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_plan_naming_a_missing_layer_fails_and_leaves_model_untouched(minilm):
    before = _state(minilm.module)
    with pytest.raises(PlanApplyError, match=r"model\.layers\.0\.mlp\.down_proj.*has no such module.*llama-3\.1-8b"):
        apply_plan(minilm.module, {"model": "llama-3.1-8b", "choices": {"model.layers.0.mlp.down_proj":
                                                                         {"weights": "int8"}}}, arch=minilm.arch)
    with pytest.raises(PlanApplyError, match="unknown format 'int5'"):
        apply_plan(minilm.module, {"bert.encoder.layer.0.output.dense": {"weights": "int5"}}, arch=minilm.arch)
    assert _same_state(before, _state(minilm.module))


def test_plan_groups_expand_to_member_modules(minilm):
    out = apply_plan(minilm.module, {"bert.encoder.layer.1.attention.self.qkv": {"weights": "int8"}},
                     arch=minilm.arch)
    packed = compressed_modules(out)
    assert set(packed) == {f"bert.encoder.layer.1.attention.self.{m}" for m in ("query", "key", "value")}


def test_error_during_apply_leaves_original_untouched():
    model = nn.Sequential(nn.Linear(6, 4), nn.Linear(4, 4))  # in_features 6: not a multiple of 4
    before = _state(model)
    with pytest.raises(PlanApplyError, match="2:4 sparsity needs in_features divisible by 4"):
        apply_plan(model, {"1": {"weights": "int8"}, "0": {"weights": "bf16", "sparsity": "2:4"}})
    assert _same_state(before, _state(model))


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    import json

    cfg = {"model_type": "llama", "hidden_size": 128, "intermediate_size": 256, "num_hidden_layers": 2,
           "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
           "tie_word_embeddings": True, "_source": "tests: a Llama-shaped config small enough for CPU tests"}
    path = tmp_path_factory.mktemp("cfg") / "tiny-llama.json"
    path.write_text(json.dumps(cfg))
    return load_torch_model(str(path))


def test_kv_cache_quantisation_stores_real_payloads(tiny_llama):
    tm = tiny_llama
    first = "model.layers.0.mlp.down_proj"
    out = apply_plan(tm.module, {"choices": {first: {"weights": "bf16"}}, "kv": "int8"}, arch=tm.arch)
    ids, = tm.make_inputs(2, 0)
    cache = out.new_cache()
    with torch.no_grad():
        out(ids, cache)
    b, t = ids.shape
    kvh, hd = tm.arch.num_kv_heads, tm.arch.head_dim
    rows = b * t * kvh
    # int8 KV: one fp16 scale per (token, head) row of head_dim codes (planner.formats, int8 'KV per head per token')
    assert cache.nbytes() == 2 * tm.arch.num_layers * get_format("int8").nbytes(rows * hd, rows, hd)
    assert tm.module.kv_format is None, "the original model keeps its fp32 cache"


def test_tied_lm_head_shares_the_packed_embedding(tiny_llama):
    tm = tiny_llama
    assert tm.arch.tie_word_embeddings
    out = apply_plan(tm.module, {"model.embed_tokens": {"weights": "int8"}}, arch=tm.arch)
    assert isinstance(out.lm_head, PackedLinear) and out.lm_head.store is out.model.embed_tokens.store
    ids, = tm.make_inputs(1, 0)
    with torch.no_grad():
        assert sqnr_db(tm.module(ids), out(ids)) > 20


def test_apply_does_not_copy_state_into_a_second_model():
    model = _Tiny()
    out = apply_plan(model, {"fc2": {"weights": "int4-g32"}})
    out2 = copy.deepcopy(out)
    with torch.no_grad():
        assert torch.equal(out(*_tiny_inputs()), out2(*_tiny_inputs()))


def test_an_untied_output_head_is_found_beside_the_model(tmp_path):
    """The planner names a causal LM's own output head ``model.lm_head``; the module sits beside ``model``
    (``lm_head``), and apply_plan / validate find it there (they used to refuse every untied decoder)."""
    import json
    import pathlib

    from planner.execution.apply import apply_plan, compressed_modules
    from planner.execution.models import load_torch_model

    raw = json.loads(pathlib.Path("profiles/models/llama-3.2-1b.json").read_text())
    raw.update(num_hidden_layers=1, hidden_size=128, intermediate_size=256, num_attention_heads=2,
               num_key_value_heads=1, head_dim=64, vocab_size=300, tie_word_embeddings=False, _id="untied-head")
    cfg = tmp_path / "untied-head.json"
    cfg.write_text(json.dumps(raw))
    tm = load_torch_model(str(cfg))
    assert tm.module.lm_head.weight is not tm.module.model.embed_tokens.weight
    packed = compressed_modules(apply_plan(tm.module, {"choices": {"model.lm_head": {"weights": "int8"}}}, arch=tm.arch))
    assert list(packed) == ["lm_head"]
