"""Training and fine-tuning rows of ``published.csv`` → Tierwise training estimates.

    python benchmarks/published_training.py [--csv PATH]

``training_row_prediction(row)`` translates one row's text (model, hardware, layout,
batch, sequence, engine and notes) into a :class:`planner.training.TrainingConfig` and
returns ``(predicted value, unit)`` in the row's own unit, or ``None`` when the row cannot
be expressed. ``benchmarks/published.py`` calls it for the ``training`` category and for the
LoRA/QLoRA ``memory`` rows.

The translation uses only what the row states and what its engine is documented to do;
there are no per-row constants:

* Megatron-LM rows (Narayanan et al. 2021; Korthikanti et al. 2022): fp16 mixed precision,
  unfused attention with dropout (Megatron's GPT configs; fused attention kernels arrived
  later), the micro-batch the row states (the 2022 table's Table 3: 4 for the 22B model, 1 for the
  others; 1 where none is stated), full recomputation for the 2021 table and sequence parallelism +
  selective recomputation for the 2022 table, as the rows say. "N model chunks per stage": the
  interleaved schedule with N chunks (the 2022 175B and 530B runs: 3); "interleaved pipeline where
  PP>1" (2021): the smallest number of model chunks > 1 that divides the layers of a stage.
  The per-GPU "paper FLOP count" is recomputed with the paper's own formula
  ``96·B·s·l·h²·(1 + s/6h + V/16lh)`` over the predicted step time.
  TP communication is not overlapped (``--tp-comm-overlap`` came to Megatron-LM in 2023).
* llm-foundry MPT rows: the benchmark's own models (``llm-foundry-mpt-*``: the pretrain yamls with
  MPTConfig's defaults, i.e. learned position embeddings sized to the run's sequence length, no
  ALiBi, biases; not the released MPT checkpoints); PyTorch FSDP ``FULL_SHARD`` (ZeRO-3; ``SHARD_GRAD_OP``
  as ZeRO-2) through Composer, which reduce-scatters
  every micro-batch (FSDP is not a DDP module, so Composer's ``ddp_sync_context`` applies no
  ``no_sync``); bf16 parameters all-gathered (Composer 0.15 ``DEFAULT`` and ``PURE`` both set
  ``param_dtype`` to the precision); the attention kernel the launcher states (``attn_impl: triton``,
  FlashAttention in Triton); eager PyTorch modules (the launcher compiles nothing by default) whose
  millisecond kernels hide the host's asynchronous launches, so no per-operator dispatch is charged.
  The rows name the ``llm-foundry`` engine, whose time per micro-batch beyond the kernels is fitted
  on the table's declared fit split (the A100-40GB section; ``benchmarks/fitted.py``).
* PaLM (Chowdhery et al. 2022): 12-way tensor parallel × fully sharded data parallel
  (ZeRO-3), rematerialisation (full recompute), no dropout; MFU and HFU as reported.
* ResNet-50 (NVIDIA DeepLearningExamples): AMP fp16, batch 256 per GPU (the launch
  configs' default), data parallel; images/s for all GPUs.
* LitGPT LoRA/QLoRA memory (M04–M06): eager PyTorch, bf16-true, micro-batch 1 at the longest Alpaca
  example (1,304 tokens, the row notes), LoRA rank 8 on the query and value projections
  with dropout 0.05 on the adapter input (LitGPT's defaults at that commit; 4,194,304
  trainable parameters for Llama-2-7B as the row states), fused (SDPA) attention, AdamW.
"""

from __future__ import annotations

import statistics
import dataclasses
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from hwmodels import load_device  # noqa: E402

from planner.arch import load_arch  # noqa: E402
from planner.costmodel import EstimateError  # noqa: E402
from planner.training import TrainingConfig, estimate_training, megatron_flops_per_iteration  # noqa: E402
from rowmap import HARDWARE as _HARDWARE  # noqa: E402
from rowmap import MODELS as _MODELS  # noqa: E402
from rowmap import first_int as _int  # noqa: E402
from rowmap import match as _match  # noqa: E402

DEFAULT_CSV = HERE / "data" / "published.csv"

# ResNet-50 launch configs of NVIDIA DeepLearningExamples use 256 images per GPU.
RESNET_BATCH_PER_GPU = 256
# LitGPT finetune/lora.py defaults at the rows' commit: rank 8, query + value, dropout 0.05.
LITGPT_LORA_RANK = 8


def _interleave(layers: int, pp: int, stated: bool) -> int:
    """Smallest number of model chunks > 1 dividing each stage's layers (1 if none)."""
    if not stated or pp <= 1:
        return 1
    per_stage = layers // pp
    for v in range(2, per_stage + 1):
        if per_stage % v == 0:
            return v
    return 1


def _stated_int(text: str, pattern: str, default: int) -> int:
    m = re.search(pattern, text or "")
    return int(m.group(1)) if m else default


def _precision(row: dict) -> str:
    t = (row.get("act_dtype") or "").lower()
    return "fp16" if t.startswith("fp16") else "bf16"


def training_config(row: dict) -> tuple[str, str, TrainingConfig] | None:
    """(model id, hardware id, config) for a row, or None when it is not expressible."""
    model = _match(_MODELS, row["model"])
    hw = _match(_HARDWARE, row["hardware"])
    if model is None or hw is None:
        return None
    engine = row["engine"].lower()
    n = _int(row["num_devices"], 1)
    tp = _int(row["tp"], 1)
    pp = _int(row["pp"], 1)
    dp = max(1, n // (tp * pp))
    seq = _int(row["prompt_len"], 2048)
    act = _precision(row)
    if model == "resnet-50":
        b = RESNET_BATCH_PER_GPU
        return model, hw, TrainingConfig(global_batch=b * dp, micro_batch=b, seq=1, dp=dp, weights=act, activations=act)
    if row["category"] == "memory":
        if "lora" not in engine:
            return None
        quant = "nf4" in (row["weight_dtype"] or "").lower() or "qlora" in engine
        ft = f"{'qlora' if quant else 'lora'}:{LITGPT_LORA_RANK}"
        notes = row.get("notes") or ""
        m = re.search(r"longest \S+ example (\d[\d,]*) tokens", notes)
        seq = int(m.group(1).replace(",", "")) if m else seq
        mb = _stated_int(row["batch"], r"micro-batch (\d+)", 1)
        # --quantize bnb.nf4-dq: NF4 with double quantization (QLoRA's absmax of the absmax)
        dq = quant and ("double" in (row["weight_dtype"] or "").lower() or "nf4-dq" in engine)
        return model, hw, TrainingConfig(
            global_batch=mb,
            micro_batch=mb,
            seq=seq,
            finetune=ft,
            weights="nf4-dq" if dq else "bf16",
            activations="bf16",
            lora_dropout=True,
            runtime="eager",
            # Fabric's _Linear4bit quantizes from fp16, so a bf16 run casts each dequantized copy
            # (benchmarks/published.py engine_options, the same LitGPT mapping).
            dequant_copy_dtype="fp16" if quant else None,
        )
    batch = _int(row["batch"], 1)
    if "megatron" in engine:
        arch = load_arch(model)
        selective = "selective" in engine
        chunks = _stated_int(engine, r"(\d+) model chunks", 0)
        return model, hw, TrainingConfig(
            global_batch=batch,
            micro_batch=_stated_int(row["batch"], r"micro-batch (\d+)", 1),
            seq=seq,
            tp=tp,
            pp=pp,
            dp=dp,
            recompute="selective" if selective else "full",
            sequence_parallel="sequence parallel" in engine,
            interleave=chunks or _interleave(arch.num_layers, pp, "interleaved" in engine),
            weights="fp16",
            activations="fp16",
            attention="unfused",
            dropout=True,
            engine=row["engine_id"] or None,
            # TP communication overlap (userbuffers, --tp-comm-overlap) arrived in Megatron-LM in 2023;
            # the 2021/2022 runs computed and communicated in turn.
            tp_comm_overlap=False,
        )
    if "fsdp" in engine and ("full_shard" in engine or "shard_grad_op" in engine):
        # PyTorch FSDP data parallel with FlashAttention, as the row states: FULL_SHARD shards
        # parameters, gradients and optimizer state (ZeRO-3), SHARD_GRAD_OP gradients and optimizer
        # state (ZeRO-2); activation checkpointing = full recomputation of each block.
        mb = _stated_int(row["batch"], r"micro-batch (\d+)", 1)
        return model, hw, TrainingConfig(
            global_batch=batch,
            micro_batch=mb,
            seq=seq,
            dp=n,
            zero=3 if "full_shard" in engine else 2,
            recompute="none" if "no activation checkpointing" in engine else "full",
            weights="bf16",
            activations="bf16",
            attention="flash-triton" if "triton" in engine else "fused",
            # Eager PyTorch modules, but each kernel here runs for milliseconds: the host launches
            # asynchronously ahead of the GPU, so the per-operator dispatch of the eager runtime
            # (priced serially for inference's small kernels) is not on the critical path.
            runtime="graph",
            engine=row["engine_id"] or None,
        )
    if "pathways" in engine or "t5x" in engine:
        # 12-way model parallel × fully sharded data parallel (PaLM §4)
        dp = max(1, n // tp)
        return model, hw, TrainingConfig(
            global_batch=batch,
            micro_batch=max(1, batch // dp),
            seq=seq,
            tp=tp,
            dp=dp,
            zero=3,
            recompute="full",
            weights="bf16",
            activations="bf16",
            attention="unfused",
        )
    return None


def training_row_prediction(row: dict) -> tuple[float, str] | None:
    """Predicted value of a training / fine-tuning-memory row in the row's unit."""
    built = training_config(row)
    if built is None:
        return None
    model, hw, cfg = built
    arch = load_arch(model)
    if model.startswith("llm-foundry-") and arch.learned_pos_emb:
        # llm-foundry's launcher sets the model's max_seq_len to the run's sequence length, which
        # sizes the learned position table (the rows' NumParams grow with SeqLen accordingly).
        arch = dataclasses.replace(arch, max_position_embeddings=cfg.seq)
    dev = load_device(hw)
    try:
        est = estimate_training(arch, dev, cfg)
    except EstimateError:
        return None
    unit = row["unit"]
    metric = row["metric"].lower()
    if row["category"] == "memory":
        return est.memory.per_device_bytes / 1e9, unit
    if "paper flop count" in metric:
        flops = megatron_flops_per_iteration(
            global_batch=cfg.global_batch, seq=cfg.seq, layers=arch.num_layers, hidden=arch.hidden_size, vocab=arch.vocab_size
        )
        return flops / est.step_time_s / cfg.devices / 1e12, unit
    if metric == "mfu":
        return 100.0 * est.mfu, unit
    if metric == "hfu":
        return 100.0 * est.hfu, unit
    if "images/s" in unit.lower():
        return est.samples_per_s, unit
    if unit.lower() == "tokens/s/gpu":
        return est.tokens_per_s_per_device, unit
    return None


def main(argv: list[str] | None = None) -> int:
    """Training and fine-tuning memory rows alone, in sample (the reported figures, leave one source
    out, come from ``benchmarks/published.py --cv loso``)."""
    import argparse

    from published import load_rows
    from published_report import is_fit_row

    ap = argparse.ArgumentParser(description="Predict the training and fine-tuning memory rows of the "
                                 "published-measurements table (in sample).")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    args = ap.parse_args(argv)
    try:
        rows = [r for r in load_rows(args.csv) if r["category"] in ("training", "memory")]
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    errs: dict[str, list[float]] = {}
    for r in rows:
        out = training_row_prediction(r)
        measured = float(r["value"])
        if out is None:
            if r["category"] == "training":
                print(f"{r['id']:5} {r['model'][:24]:24} not expressible")
            continue
        pred, unit = out
        err = (pred - measured) / measured
        fit = is_fit_row(r)
        cat = "training" if r["category"] == "training" else "finetune-memory"
        errs.setdefault(f"{cat} (fit split)" if fit else cat, []).append(abs(err))
        print(f"{r['id']:5} {r['model'][:24]:24} measured {measured:10.4g} predicted {pred:10.4g} {100 * err:+6.1f}%  "
              f"{unit}{'  [fit split]' if fit else ''}")
    for cat, e in errs.items():
        print(f"median |error| {cat}: {100 * statistics.median(e):.1f}% over {len(e)} rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
