"""Training capacity: how many devices of one hardware train a model on a token budget
within a deadline, at least cost. Pure functions, split into picklable tasks like serving
(:mod:`planner.capacity`): ``train_tasks`` builds them, ``run_train_task`` runs one,
``summarize_train`` combines the results, ``plan_training`` does all three.

The required rate is ``tokens / (days · 86400)`` tokens/s. For each layout family (TP, PP,
micro-batch) and each device count on a grid of whole nodes, the training estimate is
evaluated with the least recomputation that fits memory (none → selective → full), sequence
parallelism with TP, and ZeRO-1 across replicas; the answer is the fewest devices whose best
layout reaches the rate. Device counts that would need more than 100% MFU, or less than 5%,
are not searched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.deadline import Deadline, DeadlineExceeded
from planner.engines import ZERO_STAGES
from planner.errors import EstimateError, TierwiseError
from planner.layout import num_layers
from planner.workload import tokens_per_sample

SECONDS_PER_DAY = 86400.0


def _check(cond: bool, fld: str, message: str) -> None:
    if not cond:
        raise EstimateError(fld, message)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainTarget:
    tokens: float
    days: float
    seq: int = 4096
    global_batch_tokens: float = 4 * 1024 * 1024
    activations: str = "bf16"
    optimizer: str = "adamw"
    max_devices: int = 65536
    engine: str | None = None  # the training engine whose kernels and runtime facts price each step

    def __post_init__(self) -> None:
        _check(self.tokens > 0 and math.isfinite(self.tokens), "tokens", f"--tokens must be a positive number; got {self.tokens!r}")
        _check(self.days > 0 and math.isfinite(self.days), "days", f"--days must be a positive number; got {self.days!r}")
        _check(isinstance(self.seq, int) and self.seq >= 1, "seq", f"--seq must be a positive integer; got {self.seq!r}")
        _check(self.global_batch_tokens >= self.seq, "global_batch_tokens", f"--global-batch-tokens must be at least --seq ({self.seq}); got {self.global_batch_tokens:g}")
        _check(isinstance(self.max_devices, int) and self.max_devices >= 1, "max_devices", f"--max-devices must be a positive integer; got {self.max_devices!r}")

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / (self.days * SECONDS_PER_DAY)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainOption:
    hardware: str
    devices: int
    tp: int
    pp: int
    dp: int
    micro_batch: int
    global_batch: int
    recompute: str
    zero: int
    sequence_parallel: bool
    step_time_s: float
    tokens_per_s: float
    mfu: float
    hfu: float
    memory_per_device_bytes: float
    device_capacity_bytes: float
    usd_per_hour: float | None
    uncertainty: object = None  # p10-p90 error bars (planner.uncertainty), set by planner.request.capacity

    def days_for(self, tokens: float) -> float:
        """Days to train on ``tokens``: whole optimizer steps of ``global_batch`` sequences, so a budget
        below one step still takes one step (1e3 tokens at 4M tokens per 247 s step: 247 s, not 0.06 s)."""
        per_step = self.tokens_per_s * self.step_time_s
        if per_step <= 0 or not math.isfinite(per_step):
            return tokens / self.tokens_per_s / SECONDS_PER_DAY
        steps = max(1, math.ceil(tokens / per_step - 1e-9))
        return steps * self.step_time_s / SECONDS_PER_DAY

    def to_dict(self, tokens: float | None = None) -> dict:
        d = {
            "hardware": self.hardware,
            "devices": self.devices,
            "tp": self.tp,
            "pp": self.pp,
            "dp": self.dp,
            "micro_batch": self.micro_batch,
            "global_batch": self.global_batch,
            "recompute": self.recompute,
            "zero": self.zero,
            "sequence_parallel": self.sequence_parallel,
            "step_time_s": self.step_time_s,
            "tokens_per_s": self.tokens_per_s,
            "mfu": self.mfu,
            "hfu": self.hfu,
            "memory_per_device_bytes": self.memory_per_device_bytes,
            "device_capacity_bytes": self.device_capacity_bytes,
            "usd_per_hour": self.usd_per_hour,
            "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None,
        }
        if tokens is not None:
            days = self.days_for(tokens)
            d["days"] = days
            d["usd_total"] = self.usd_per_hour * days * 24.0 if self.usd_per_hour is not None else None
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainTask:
    arch: ArchSpec
    device: DeviceSpec
    target: TrainTarget
    tp: int
    pp: int
    micro_batch: int
    device_counts: tuple[int, ...]
    zero_stages: tuple[int, ...] = ZERO_STAGES  # the ZeRO stages the target's engine offers


def device_grid(device: DeviceSpec, max_devices: int) -> tuple[int, ...]:
    """Device counts searched: the powers of two below a node (1, 2, 4 on an 8-GPU node; up to 128
    in a 256-chip TPU slice), then whole nodes on a grid that grows by about 25% per point (1, 2, 3,
    4, 5, 6, 8, 10, 12, 16, 20, 24, 32 … nodes)."""
    g = max(device.devices_per_node, 1)
    # Inside a node (a TPU slice's ICI domain can hold hundreds of chips): every power of two.
    out = {1 << k for k in range(g.bit_length()) if (1 << k) < g and (1 << k) <= max_devices}
    nodes = 1
    while nodes * g <= max_devices:
        out.add(nodes * g)
        step = max(1, 2 ** max(0, int(math.log2(nodes)) - 2))
        nodes += step
    return tuple(sorted(out))


# Device counts below the ideal (100% MFU) count cannot reach the rate; at more than this
# multiple of it the rate would need an MFU under 1/MFU_FLOOR_FACTOR (5%): not searched.
MFU_FLOOR_FACTOR = 20
# Mixed-precision Adam keeps 16 bytes per parameter (ZeRO §3.1: 2 + 2 + 12); the search reaches at
# least MEMORY_HEADROOM times the device count that state needs (room for activations, and for
# layouts that do not shard every part of it).
TRAINING_STATE_BYTES_PER_PARAM = 16.0
MEMORY_HEADROOM = 4.0


def training_flops_per_token(arch: ArchSpec) -> float:
    """Training FLOPs (forward and backward) per token, to bound the device counts searched: 6N
    for a transformer (Kaplan et al. 2020: 2N forward, 4N backward); for a CNN, whose token is an
    image and whose weights are reused at every position of its feature maps, 3 × the forward
    FLOPs of one image (2 per multiply-accumulate; backward twice the forward)."""
    from planner.workload import build_workload

    if arch.family == "cnn":
        return 3.0 * 2.0 * arch.macs_per_image()
    return 6.0 * build_workload(arch).weight_params


#: Micro-batches searched per layout family (sequences per device). A CNN's sample is one image: it
#: trains at tens to hundreds of images per GPU (32 in Goyal et al. 2017, "Accurate, Large Minibatch
#: SGD", arXiv:1706.02677; 256 in NVIDIA's DeepLearningExamples ResNet-50 v1.5 recipe with AMP).
MICRO_BATCHES = (1, 2)
CNN_MICRO_BATCHES = (32, 64, 128, 256)


def _useful_counts(arch: ArchSpec, device: DeviceSpec, target: TrainTarget, grid: tuple[int, ...]) -> tuple[int, ...]:
    from planner.formats import get_format
    from planner.workload import build_workload

    try:
        peak = device.peak_flops_per_s(get_format(target.activations).hw_precision)
    except (ValueError, KeyError) as exc:
        raise EstimateError("activations", f"--activations {target.activations!r}: {exc}") from None
    params = build_workload(arch).weight_params
    flops_per_token = training_flops_per_token(arch)
    ideal = target.tokens_per_s * flops_per_token / peak
    # The training state alone (16 bytes per parameter: 16-bit weights and gradients, fp32 master
    # weights and two Adam moments; Rajbhandari et al. 2020, ZeRO §3.1) needs this many devices at
    # the very least; a slow target rate must not keep the search below what fits in memory.
    memory_floor = params * TRAINING_STATE_BYTES_PER_PARAM / device.memory_capacity_bytes
    lo, hi = ideal, max(max(ideal, 1.0) * MFU_FLOOR_FACTOR, MEMORY_HEADROOM * memory_floor)
    below = [n for n in grid if n < lo]
    keep = [n for n in grid if lo <= n <= hi]
    # keep the largest count under the bound too, so the frontier shows where it falls short
    return tuple(([below[-1]] if below else []) + keep) or grid[-1:]


def train_tasks(arch: ArchSpec, device: DeviceSpec, target: TrainTarget) -> list[TrainTask]:
    """One task per (TP, PP, micro-batch) family; each covers every device count."""
    g = max(device.devices_per_node, 1)
    layers = num_layers(arch)
    if arch.family == "cnn":
        tps, pps = [1], [1]
    else:
        tps = [t for t in (1, 2, 4, 8, 16) if t <= g and arch.num_heads % t == 0]
        # powers of two up to 16, and other small divisors of the layer count (balanced stages)
        pps = [p for p in (1, 2, 4, 5, 8, 10, 16, 20, 32) if p <= layers and (layers % p == 0 or p in (1, 2, 4, 8, 16))]
    stages = ZERO_STAGES
    if target.engine is not None:
        # Only layouts and ZeRO stages the engine runs (llm-foundry: data parallel, no ZeRO-1).
        from planner.engines import load_engine

        from planner.engines import tp_allowed

        spec = load_engine(target.engine)
        tps = [t for t in tps if tp_allowed(spec, arch, t)] if "tp" in spec.parallel else [1]
        pps = pps if "pp" in spec.parallel else [1]
        stages = spec.zero
    grid = _useful_counts(arch, device, target, device_grid(device, target.max_devices))
    tasks = []
    for tp in tps:
        for pp in pps:
            counts = tuple(n for n in grid if n % (tp * pp) == 0)
            if not counts:
                continue
            for mb in (CNN_MICRO_BATCHES if arch.family == "cnn" else MICRO_BATCHES):
                tasks.append(TrainTask(arch=arch, device=device, target=target, tp=tp, pp=pp, micro_batch=mb,
                                       device_counts=counts, zero_stages=stages))
    return tasks


def run_train_task(task: TrainTask, deadline: Deadline | None = None) -> dict[int, TrainOption]:
    """Best fitting configuration of one layout family at each device count (``deadline``
    checked before each count). At each count: ZeRO-1 (optimizer states sharded over the data
    ranks) with the least recomputation that fits; when that needs any recomputation, ZeRO-3
    (FSDP ``FULL_SHARD``: parameters and gradients sharded too, at the price of gathering them
    every micro-batch) is tried as well, and the faster of the two is kept."""
    deadline = deadline or Deadline.unbounded()
    t = task.target
    out: dict[int, TrainOption] = {}
    # samples per step: a sequence of seq tokens, an image (one token for a CNN, its patches for a ViT)
    target_seqs = max(1, round(t.global_batch_tokens / max(1, tokens_per_sample(task.arch, t.seq))))
    for n in task.device_counts:
        deadline.check("the capacity search")
        dp = n // (task.tp * task.pp)
        unit = task.micro_batch * dp
        if unit > target_seqs:
            # one micro-batch per data rank would already overshoot the global batch: the step would be a
            # training recipe the user did not ask for (405B on 16,384 GPUs took 32× the batch); more
            # devices than this need TP / PP (other tasks), a CNN a smaller micro-batch
            continue
        gb = max(1, round(target_seqs / unit)) * unit
        stages = task.zero_stages
        # The least sharding that saves memory: ZeRO-1 where the engine offers it, else ZeRO-2 (FSDP's SHARD_GRAD_OP).
        order = (0,) if dp == 1 else (1, 2, 0)
        first = next((z for z in order if z in stages), stages[0])
        best = _least_recompute(task, n, dp, gb, zero=first)
        if dp > 1 and 3 in stages and (best is None or best.recompute != "none"):
            sharded = _least_recompute(task, n, dp, gb, zero=3)
            if sharded is not None and (best is None or sharded.tokens_per_s > best.tokens_per_s):
                best = sharded
        if best is not None:
            out[n] = best
    return out


def _least_recompute(task: TrainTask, n: int, dp: int, gb: int, *, zero: int) -> TrainOption | None:
    """The first of no / selective / full recomputation whose memory fits at ``zero``; None when
    none fits or the layout is refused."""
    from planner.training import TrainingConfig, estimate_training

    arch, dev, t = task.arch, task.device, task.target
    for rc in ("none", "selective", "full"):
        try:
            cfg = TrainingConfig(
                global_batch=gb,
                micro_batch=task.micro_batch,
                seq=t.seq,
                tp=task.tp,
                pp=task.pp,
                dp=dp,
                zero=zero,
                recompute=rc,
                sequence_parallel=task.tp > 1,
                optimizer=t.optimizer,
                weights="bf16" if t.activations != "fp16" else "fp16",
                activations=t.activations,
                engine=t.engine,
            )
            est = estimate_training(arch, dev, cfg)
        except TierwiseError:  # an impossible layout (EstimateError), or one the engine does not run
            return None
        if not est.memory.fits:
            continue
        return TrainOption(
            hardware=dev.id,
            devices=n,
            tp=task.tp,
            pp=task.pp,
            dp=dp,
            micro_batch=task.micro_batch,
            global_batch=gb,
            recompute=rc,
            zero=cfg.zero,
            sequence_parallel=cfg.sequence_parallel,
            step_time_s=est.step_time_s,
            tokens_per_s=est.tokens_per_s,
            mfu=est.mfu,
            hfu=est.hfu,
            memory_per_device_bytes=est.memory.per_device_bytes,
            device_capacity_bytes=est.memory.device_capacity_bytes,
            usd_per_hour=est.usd_per_hour,
        )
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainAnswer:
    model: str
    hardware: str
    target: TrainTarget
    best: TrainOption | None  # fewest devices reaching the rate
    fastest: TrainOption | None  # highest throughput found (when the rate is out of reach)
    frontier: tuple[TrainOption, ...] = field(default_factory=tuple)  # best per device count
    complete: bool = True  # False: the search stopped at its time limit (some layouts not tried)

    @property
    def feasible(self) -> bool:
        return self.best is not None

    def to_dict(self) -> dict:
        t = self.target
        return {
            "model": self.model,
            "hardware": self.hardware,
            "tokens": t.tokens,
            "days": t.days,
            "required_tokens_per_s": t.tokens_per_s,
            "seq": t.seq,
            "feasible": self.feasible,
            "status": "complete" if self.complete else "time_limit",
            "best": self.best.to_dict(t.tokens) if self.best else None,
            "fastest": self.fastest.to_dict(t.tokens) if (self.best is None and self.fastest) else None,
            "frontier": [o.to_dict(t.tokens) for o in self.frontier],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainFleetAnswer:
    """Training capacity over several hardware: one :class:`TrainAnswer` per hardware that
    can train, those that meet the deadline first (cheapest per hour, then fewest devices),
    and the hardware no training engine runs on (``skipped``: (id, reason)). Iterates and
    indexes like the list of its answers; ``to_dict()`` is the JSON of ``tierwise capacity
    train --json`` with several hardware and of ``POST /v1/capacity/train``."""

    answers: tuple[TrainAnswer, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @classmethod
    def ranked(cls, answers: Iterable[TrainAnswer], skipped: Iterable[tuple[str, str]] = ()) -> TrainFleetAnswer:
        answers = list(answers)
        feasible = sorted((a for a in answers if a.feasible), key=lambda a: (
            a.best.usd_per_hour if a.best.usd_per_hour is not None else math.inf, a.best.devices))
        return cls(answers=tuple(feasible + [a for a in answers if not a.feasible]), skipped=tuple(skipped))

    @property
    def feasible(self) -> bool:
        return any(a.feasible for a in self.answers)

    def closest(self) -> TrainAnswer:
        """When none meets the deadline: the answer whose fastest layout comes nearest."""
        return max(self.answers, key=lambda a: a.fastest.tokens_per_s if a.fastest else -1.0)

    def __iter__(self):
        return iter(self.answers)

    def __len__(self) -> int:
        return len(self.answers)

    def __getitem__(self, i):
        return self.answers[i]

    def to_dict(self) -> dict:
        doc: dict = {"hardware": [a.to_dict() for a in self.answers]}
        if self.skipped:
            doc["skipped"] = [{"hardware": h, "reason": why} for h, why in self.skipped]
        return doc


def summarize_train(arch: ArchSpec, device: DeviceSpec, target: TrainTarget, results: Sequence[dict[int, TrainOption]]) -> TrainAnswer:
    best_at: dict[int, TrainOption] = {}
    for res in results:
        for n, o in res.items():
            if n not in best_at or o.tokens_per_s > best_at[n].tokens_per_s:
                best_at[n] = o
    frontier = tuple(best_at[n] for n in sorted(best_at))
    need = target.tokens_per_s
    # meets the deadline in whole optimizer steps (TrainOption.days_for), as the time to train is reported
    best = next((o for o in frontier if o.tokens_per_s >= need and o.days_for(target.tokens) <= target.days * (1 + 1e-9)),
                None)
    fastest = max(frontier, key=lambda o: o.tokens_per_s, default=None)
    return TrainAnswer(model=arch.id, hardware=device.id, target=target, best=best, fastest=fastest, frontier=frontier)


def human_step(seconds: float) -> str:
    return f"{seconds:.3g} s"


def rate_text(tokens_per_s: float) -> str:
    """A token rate: thousands separated when ≥ 100, three significant digits below (a budget of 1e3 tokens
    over 30 days needs 0.000386 tokens/s, not '0')."""
    return f"{tokens_per_s:,.0f}" if tokens_per_s >= 100 else f"{tokens_per_s:.3g}"


def days_text(days: float | None) -> str:
    """A training time given in days, readable at any scale: '45.3 days', '1.0 days', '6.2 h',
    '14.4 min', '0.864 s' (a tiny token budget trains in seconds: not '0.0 days')."""
    if days is None or not math.isfinite(days):
        return "-"
    if days >= 1:
        return f"{days:,.0f} days" if days >= 100 else f"{days:.1f} days"
    s = days * SECONDS_PER_DAY
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.3g} s"


def train_infeasible_message(ans: TrainAnswer) -> tuple[str, dict]:
    t = ans.target
    if ans.fastest is None:
        return (f"{ans.model} does not fit {ans.hardware} at any layout searched (up to {t.max_devices} devices; "
                f"ZeRO-1 and ZeRO-3, no to full recomputation)", {})
    f = ans.fastest
    where = f"({f.devices} × {ans.hardware}, tp={f.tp} pp={f.pp} dp={f.dp})"
    if f.tokens_per_s >= t.tokens_per_s:  # fast enough on average, but whole optimizer steps overrun the deadline
        msg = (f"{t.tokens:.3g} tokens in {t.days:g} days: the fastest layout found {where} reaches "
               f"{f.tokens_per_s:,.0f} tokens/s, but in whole optimizer steps of {f.global_batch} sequences "
               f"({human_step(f.step_time_s)} each) it takes {days_text(f.days_for(t.tokens))}")
        return msg, f.to_dict(t.tokens)
    msg = (
        f"{t.tokens:.3g} tokens in {t.days:g} days needs {rate_text(t.tokens_per_s)} tokens/s; the fastest layout found "
        f"{where} reaches {f.tokens_per_s:,.0f} tokens/s "
        f"({100 * (1 - f.tokens_per_s / t.tokens_per_s):.0f}% short), i.e. {days_text(f.days_for(t.tokens))}"
    )
    if 2 * f.dp * f.micro_batch >= f.global_batch:
        # the search keeps the batch asked for: it caps the data-parallel ranks, and so the devices that help
        msg += (f"; its global batch of {f.global_batch:,} sequences ({t.global_batch_tokens:,.0f} tokens asked for) "
                f"caps data parallelism at {f.dp} ranks of micro-batch {f.micro_batch}: a larger --global-batch-tokens "
                "lets more devices help")
    return msg, f.to_dict(t.tokens)


def plan_training(arch: ArchSpec, device: DeviceSpec, target: TrainTarget, map_fn: Callable[[Callable, Iterable], Iterable] = map,
                  deadline: Deadline | None = None) -> TrainAnswer:
    """Every layout family; with a ``deadline``, run here one after the other and stopped
    when it is up (the answer then covers the families searched: ``complete=False``)."""
    tasks = train_tasks(arch, device, target)
    if deadline is None:
        return summarize_train(arch, device, target, list(map_fn(run_train_task, tasks)))
    done: list[dict[int, TrainOption]] = []
    for task in tasks:
        try:
            done.append(run_train_task(task, deadline))
        except DeadlineExceeded:
            if not done:
                raise
            break
    ans = summarize_train(arch, device, target, done)
    return ans if len(done) == len(tasks) else replace(ans, complete=False)


__all__ = [
    "MFU_FLOOR_FACTOR",
    "SECONDS_PER_DAY",
    "TrainAnswer",
    "TrainFleetAnswer",
    "TrainOption",
    "TrainTarget",
    "TrainTask",
    "days_text",
    "rate_text",
    "device_grid",
    "training_flops_per_token",
    "plan_training",
    "run_train_task",
    "summarize_train",
    "train_infeasible_message",
    "train_tasks",
]
