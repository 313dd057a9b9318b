"""Translation of ``published.csv`` free text to catalog ids, shared by the inference and
training halves of the published-number benchmark."""

from __future__ import annotations

import re

# Model and hardware names as the rows spell them → catalog ids (first match wins, so the
# more specific patterns come first).
MODELS = [
    # llm-foundry's benchmark models (scripts/train/yamls/pretrain/mpt-*.yaml), not the released MPT checkpoints
    *((rf"llm-foundry mpt-{size}\.yaml", f"llm-foundry-mpt-{size}") for size in ("125m", "350m", "760m", "1b", "3b", "7b", "13b", "30b", "70b")),
    (r"megatron gpt-1\.7b", "megatron-gpt-1.7b"),
    (r"megatron gpt-7\.5b", "megatron-gpt-7.5b"),
    (r"megatron gpt-145\.6b", "megatron-gpt-145.6b"),
    (r"megatron gpt-529\.6b", "megatron-gpt-529.6b"),
    (r"megatron gpt-1t", "megatron-gpt-1t"),
    (r"megatron gpt-22b", "megatron-gpt-22b"),
    (r"gpt-3 175b", "gpt3-175b"),
    (r"palm 540b", "palm-540b"),
    (r"resnet-50", "resnet-50"),
    (r"mobilenet-v2 1\.0", "mobilenet-v2"),
    (r"llama-3\.3-70b", "llama-3.3-70b"),
    (r"llama-3\.1-405b", "llama-3.1-405b"),
    (r"llama-3\.1-70b", "llama-3.1-70b"),
    (r"llama-3\.1-8b", "llama-3.1-8b"),
    (r"llama-3-8b", "llama-3-8b"),
    (r"llama-3\.2-1b", "llama-3.2-1b"),
    (r"llama-3\.2-3b", "llama-3.2-3b"),
    (r"^mpt-30b", "mpt-30b"),
    (r"^mpt-7b", "mpt-7b"),
    (r"codellama-34b", "codellama-34b"),
    (r"llama-2-70b", "llama-2-70b"),
    (r"llama-2-13b", "llama-2-13b"),
    (r"llama-2-7b", "llama-2-7b"),
    (r"gpt-j 6b", "gpt-j-6b"),
    (r"falcon-180b", "falcon-180b"),
    (r"falcon-40b", "falcon-40b"),
    (r"bloom-176b", "bloom-176b"),
    (r"opt-175b", "opt-175b"),
    (r"opt-30b", "opt-30b"),
    (r"opt-6\.7b", "opt-6.7b"),
]

HARDWARE = [
    (r"a100-sxm4-40gb", "a100-40gb-sxm"),
    (r"a100 pcie", "a100-80gb-pcie"),  # before the generic "a100"; the rows' 70B fp16 on 2 GPUs implies 80 GB
    (r"a10g", "a10g"),
    (r"b200", "b200"),
    (r"h200", "h200"),
    (r"a100", "a100-80gb-sxm"),
    (r"h100 sxm", "h100-sxm"),
    (r"l40s", "l40s"),
    (r"rtx 4090", "rtx-4090"),
    (r"rtx 3090 ti", "rtx-3090-ti"),
    (r"7900 xtx", "rx-7900-xtx"),
    (r"mi250x", "mi250x-gcd"),
    (r"m1 max", "m1-max"),
    (r"m1 ultra", "m1-ultra"),
    (r"m2 max", "m2-max"),
    (r"t4", "t4"),
    (r"v100", "v100-16gb"),
    (r"zcu102", "zcu102"),
    (r"tpu v4", "tpu-v4"),
    (r"tpu v5e", "tpu-v5e"),
    (r"alveo u50", "alveo-u50"),
    (r"snapdragon 8 gen 3", "snapdragon-8-gen-3"),
    (r"sn40l", "sn40l"),
    (r"ryzen 9 7950x", "ryzen-9-7950x"),
    (r"threadripper pro 5975wx", "threadripper-pro-5975wx"),
]


def match(table, text: str) -> str | None:
    t = text.lower()
    for pat, val in table:
        if re.search(pat, t):
            return val
    return None


def first_int(text: str, default: int | None = None) -> int | None:
    m = re.search(r"\d+", text or "")
    return int(m.group(0)) if m else default
