"""Exported module names against each architecture's real module tree: the transformers
model skeleton built on the meta device (no weights, no network), for every catalog model
whose ``model_type`` transformers knows."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import pytest

from planner.arch import arch_from_config
from planner.export import ExportContext, export_plan, group_modules
from planner.export.names import architectures_of

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")

MODELS_DIR = Path(__file__).resolve().parents[1] / "profiles" / "models"
_LAYER_KEYS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "num_decoder_layers")
# Catalog "architectures" entries that are remote code or pre-transformers-4 names: the
# transformers class with the same module tree.
_CLASS_ALIASES = {"MPTForCausalLM": "MptForCausalLM", "T5WithLMHeadModel": "T5ForConditionalGeneration"}


def _raw(model_id: str) -> dict:
    return json.loads((MODELS_DIR / f"{model_id}.json").read_text())


def _known(model_id: str) -> bool:
    """A catalog model whose module tree transformers builds. Not llm-foundry's own MPT configs
    with learned position embeddings: transformers' MPT port is ALiBi-only (its MptModel has no
    position table), so their real tree is llm-foundry's MPTForCausalLM (``transformer.wpe``)."""
    from transformers import CONFIG_MAPPING

    raw = _raw(model_id)
    if raw.get("model_type") == "mpt" and raw.get("learned_pos_emb", True) and \
            not (raw.get("attn_config") or {}).get("alibi", False):
        return False
    return raw.get("model_type") in CONFIG_MAPPING


CATALOG = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
KNOWN = [m for m in CATALOG if _known(m)]


def _small(raw: dict) -> dict:
    """The config with at most 2 layers per stack: module naming is unchanged."""
    out = dict(raw)
    for k in _LAYER_KEYS:
        if isinstance(out.get(k), int) and out[k] > 2:
            out[k] = 2
    return out


def _checkpoint_names(model, model_type: str) -> set[str]:
    """Weighted module names as the checkpoint names them: the skeleton's modules with a
    2-D+ weight, and fused expert tensors expanded back to per-expert checkpoint modules
    with transformers' own checkpoint conversion mapping (Mixtral: block_sparse_moe.experts.E.w1)."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    conv = get_checkpoint_conversion_mapping(model_type) or []
    names: set[str] = set()
    for name, mod in model.named_modules():
        for pname, p in mod.named_parameters(recurse=False):
            full = f"{name}.{pname}" if name else pname
            if pname == "weight" and p.dim() >= 2:
                names.add(name)
                continue
            for c in conv:
                if type(c).__name__ != "WeightConverter":
                    continue
                for tgt in c.target_patterns:
                    if full.endswith(tgt):
                        for src in c.source_patterns:
                            pat = full[: -len(tgt)] + src
                            names.update(pat.replace("*", str(e)).removesuffix(".weight") for e in range(p.shape[0]))
    for c in conv:  # renamings apply to every name, checkpoint side = source
        if type(c).__name__ == "WeightRenaming":
            for s, t in zip(c.source_patterns, c.target_patterns):
                names = {n.replace(t, s) for n in names}
    return names


@lru_cache(maxsize=None)
def skeleton(model_id: str) -> tuple[frozenset[str], dict[str, tuple[str, ...]]]:
    raw = {k: v for k, v in _small(_raw(model_id)).items() if not k.startswith("_")}
    cfg = transformers.AutoConfig.for_model(**raw)
    cls_name = (raw.get("architectures") or [""])[0]
    cls = getattr(transformers, _CLASS_ALIASES.get(cls_name, cls_name), None)
    with torch.device("meta"):
        model = cls(cfg) if cls is not None else transformers.AutoModel.from_config(cfg)
    arch = arch_from_config(_small(_raw(model_id)), model_id=model_id, origin="test")
    modules = group_modules(arch, architectures_of(arch))
    return frozenset(_checkpoint_names(model, raw["model_type"])), modules


def _plan(model_id: str, modules: dict, pick) -> dict:
    return {"model": model_id, "hardware": "h100-sxm", "layout": {"tp": 1, "pp": 1, "dp": 1, "ep": 1},
            "workload": {"batch": 1, "prompt": 128, "gen": 16}, "kv": "bf16",
            "choices": {g: dict(zip(("weights", "activations"), pick(g))) for g in modules}}


def _ct_targets(cfg: dict) -> list[str]:
    return [t for s in cfg["config_groups"].values() for t in s["targets"]] + list(cfg["ignore"])


def _matches(target: str, name: str) -> bool:
    from compressed_tensors.utils.match import match_name

    return match_name(name, target)


def test_every_catalog_architecture_transformers_knows_is_covered():
    # the architectures the issue names are all in the matrix
    types = {_raw(m)["model_type"] for m in KNOWN}
    assert {"llama", "mixtral", "falcon", "phi3", "gptj", "gpt_neox", "opt", "bloom", "mpt", "gemma2", "qwen2",
            "mistral", "t5", "bert"} <= types
    assert "palm" not in types  # not a transformers architecture: no skeleton to check


@pytest.mark.parametrize("model_id", KNOWN)
def test_planned_modules_exist_in_the_real_module_tree(model_id):
    real, modules = skeleton(model_id)
    planned = [m for ms in modules.values() for m in ms]
    missing = [m for m in planned if m not in real]
    assert not missing, f"{model_id}: {len(missing)}/{len(planned)} planned modules not in the transformers tree: {missing[:5]}"
    # no module belongs to two decision groups
    assert len(planned) == len(set(planned))


_EMBED_LIKE = re.compile(r"(embed|wte|wpe|word_embeddings|embed_in|shared|lm_head|classifier|embeddings|\.gate$)")


def coverage(model_id: str, target: str) -> tuple[int, int]:
    """(planned modules the target's exported names match, planned modules) on the real tree."""
    real, modules = skeleton(model_id)
    planned = [m for ms in modules.values() for m in ms]
    plan = _plan(model_id, modules, lambda g: ("bf16", "bf16") if _EMBED_LIKE.search(g) else ("int4-g128", "bf16"))
    out = export_plan(plan, target, ExportContext(modules=modules))
    if target == "modelopt-mixed":
        q = json.loads(out.file("hf_quant_config.json").content)["quantization"]
        names = set(q["quantized_layers"]) | set(q["exclude_modules"])
        return sum(1 for m in planned if m in names and m in real), len(planned)
    cfg = json.loads(out.file("quantization_config.json").content)
    targets = [t for t in _ct_targets(cfg) if any(_matches(t, n) for n in real)]
    return sum(1 for m in planned if m in real and any(_matches(t, m) for t in targets)), len(planned)


def matrix() -> str:
    """The architecture x exporter table of docs/export.md (``python -m tests.test_export_names``)."""
    targets = ("compressed-tensors", "hf", "modelopt-mixed")
    rows = ["| model | model_type | " + " | ".join(targets) + " |", "|---|---|" + "---|" * len(targets)]
    def cell(m: str, t: str) -> str:
        if t == "hf" and _raw(m)["model_type"] in ("resnet", "mobilenet_v2"):
            return "refused (convolutions)"  # see test_export_targets_match_the_real_module_tree
        return "{}/{}".format(*coverage(m, t))

    for m in KNOWN:
        cells = [cell(m, t) for t in targets]
        rows.append(f"| {m} | {_raw(m)['model_type']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


@pytest.mark.parametrize("model_id", KNOWN)
@pytest.mark.parametrize("target", ["compressed-tensors", "hf", "modelopt-mixed"])
def test_export_targets_match_the_real_module_tree(model_id, target):
    if target == "hf" and _raw(model_id)["model_type"] in ("resnet", "mobilenet_v2"):
        # transformers' quantizers swap nn.Linear only: a CNN plan with 4-bit convolutions has no hf export
        # (hf-transformers plans keep them 16-bit: profiles/engines/hf-transformers.yaml `conv`)
        from planner.export import ExportError

        with pytest.raises(ExportError, match="swap nn.Linear layers only"):
            coverage(model_id, target)
        return
    matched, total = coverage(model_id, target)
    assert matched >= 0.99 * total, f"{model_id}/{target}: {matched}/{total}"
    real, modules = skeleton(model_id)
    planned = [m for ms in modules.values() for m in ms]
    embed_like = re.compile(r"(embed|wte|wpe|word_embeddings|embed_in|shared|lm_head|classifier|embeddings|\.gate$)")
    # int4 weight-only on every linear, 16-bit embeddings / heads / routers (a common real plan)
    plan = _plan(model_id, modules, lambda g: ("bf16", "bf16") if embed_like.search(g) else ("int4-g128", "bf16"))
    out = export_plan(plan, target, ExportContext(modules=modules))
    if target == "modelopt-mixed":
        q = json.loads(out.file("hf_quant_config.json").content)["quantization"]
        names = list(q["quantized_layers"]) + list(q["exclude_modules"])
        covered = [m for m in planned if m in names]
        dangling = [n for n in names if n not in real]
    else:
        from compressed_tensors.quantization import QuantizationConfig

        cfg = json.loads(out.file("quantization_config.json").content)
        QuantizationConfig.model_validate(cfg)  # the library's own config model accepts it
        targets = _ct_targets(cfg)
        covered = [m for m in planned if any(_matches(t, m) for t in targets)]
        dangling = [t for t in targets if not any(_matches(t, n) for n in real)]
    assert len(covered) >= 0.99 * len(planned), f"{model_id}/{target}: {len(covered)}/{len(planned)} planned modules matched"
    assert not dangling, f"{model_id}/{target}: targets that match no module: {dangling[:5]}"
    # a quantized module's target never matches a module planned to stay 16-bit
    if target != "modelopt-mixed":
        kept = {m for g, ms in modules.items() if embed_like.search(g) for m in ms}
        for t in (t for s in cfg["config_groups"].values() for t in s["targets"]):
            assert not any(_matches(t, m) for m in kept), (t, model_id)


def test_fused_and_expert_names_are_those_of_the_checkpoints():
    from planner.arch import load_arch

    mx = group_modules(load_arch("mixtral-8x7b"))
    assert mx["model.layers.0.mlp.experts"][:3] == tuple(f"model.layers.0.block_sparse_moe.experts.{e}.w1" for e in range(3))
    assert len(mx["model.layers.0.mlp.experts"]) == 8 * 3
    assert mx["model.layers.0.mlp.router"] == ("model.layers.0.block_sparse_moe.gate",)
    assert group_modules(load_arch("falcon-7b"))["model.layers.0.self_attn.qkv"] == ("transformer.h.0.self_attention.query_key_value",)
    phi = group_modules(load_arch("phi-3-mini"))
    assert phi["model.layers.0.self_attn.qkv"] == ("model.layers.0.self_attn.qkv_proj",)
    assert phi["model.layers.0.mlp.gate_up"] == ("model.layers.0.mlp.gate_up_proj",)


if __name__ == "__main__":
    print(matrix())
