"""Throughput-latency frontier of a model on hardware and engines (pure functions).

For every (engine, hardware) pair, weight format and model-parallel layout the capacity
search allows, and every batch size its decode curve samples (1, 2, 4, … up to the batch
the memory holds), a replica at steady state with ``n`` live sequences of ``G`` generated
tokens each starts ``n/G`` requests per decode step, so under continuous batching (prefills
at iteration boundaries, ahead of decode) one step of every sequence takes

    T(n) = τ(n) + (n / G) · t_p

(``τ(n)``: the cost model's decode step at batch n; ``t_p``: its prefill of one prompt).
The point is (tokens/s per user = 1/T(n), tokens/s per device = n / (T(n) · tp · pp)),
the axes NVIDIA's aiconfigurator draws for its Pareto frontier. Points are filtered to the
Pareto set per (engine, hardware): a point is kept unless another is at least as good on
both axes and better on one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

from planner.capacity import ServePair, ServeSearch, ServeTarget, ServeTask, _pair, dedupe_tasks, task_choice, task_replicas

__all__ = ["FrontierAnswer", "FrontierPoint", "FrontierSeries", "frontier_tasks", "pareto", "plan_frontier",
           "run_frontier_task", "summarize_frontier"]


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierPoint:
    engine: str
    hardware: str
    weights: str
    activations: str
    kv: str
    tp: int
    pp: int
    batch: int
    step_s: float  # decode step τ(n)
    prefill_s: float  # one prompt's prefill t_p
    tpot_s: float  # T(n) = τ(n) + n·t_p/G
    tokens_per_s_per_user: float
    tokens_per_s_per_device: float
    usd_per_million_tokens: float | None
    runtime: str = ""  # the launch mode priced: graph, or eager PyTorch

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    def to_dict(self) -> dict:
        return {"engine": self.engine, "hardware": self.hardware, "weights": self.weights,
                "activations": self.activations, "kv": self.kv, "tp": self.tp, "pp": self.pp,
                "devices": self.devices, "batch": self.batch, "step_s": self.step_s, "prefill_s": self.prefill_s,
                "tpot_s": self.tpot_s, "tokens_per_s_per_user": self.tokens_per_s_per_user,
                "tokens_per_s_per_device": self.tokens_per_s_per_device,
                "usd_per_million_tokens": self.usd_per_million_tokens, "runtime": self.runtime}


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierSeries:
    engine: str
    hardware: str
    points: tuple[FrontierPoint, ...]  # the Pareto set, fastest per user first
    evaluated: int  # points evaluated before the Pareto filter

    def to_dict(self) -> dict:
        return {"engine": self.engine, "hardware": self.hardware, "evaluated": self.evaluated,
                "points": [p.to_dict() for p in self.points]}


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierAnswer:
    model: str
    prompt: int
    gen: int
    series: tuple[FrontierSeries, ...]
    unsupported: tuple[ServePair, ...] = ()

    def to_dict(self) -> dict:
        d = {"model": self.model, "prompt": self.prompt, "gen": self.gen,
             "series": [s.to_dict() for s in self.series]}
        d["unsupported"] = [{"engine": p.engine, "hardware": p.device.id, "reason": p.reason_text("rest")}
                            for p in self.unsupported]
        return d


def _load(prompt: int, gen: int) -> ServeTarget:
    """A target carrying only the request shape (the frontier has no load or SLOs)."""
    return ServeTarget(qps=1.0, prompt=prompt, gen=gen, ttft_slo_s=math.inf, tpot_slo_s=math.inf)


def frontier_tasks(arch, devices: Sequence, prompt: int, gen: int, search: ServeSearch | None = None) -> list[ServeTask]:
    """One task per (engine,) hardware × weight format; unsupported pairs get none."""
    from planner.capacity import serve_tasks

    return serve_tasks([arch], devices, _load(prompt, gen), replace(search or ServeSearch(), disaggregated=False))


def run_frontier_task(task: ServeTask) -> list[FrontierPoint]:
    """Every (layout, batch) point of one task, before the Pareto filter."""
    gen = max(task.target.gen, 1)
    usd = task.device.usd_per_hour
    choice = task_choice(task)
    out = []
    for rep in task_replicas(task):
        n_dev = rep.tp * rep.pp
        for n, tau in zip(rep.curve.batches, rep.curve.step_s):
            t = tau + n * rep.prefill_s / gen
            per_device = n / t / n_dev
            out.append(FrontierPoint(
                engine=task.engine, hardware=task.device.id, weights=choice.weights, activations=choice.activations,
                kv=choice.kv, tp=rep.tp, pp=rep.pp, batch=n, step_s=tau, prefill_s=rep.prefill_s, tpot_s=t,
                tokens_per_s_per_user=1.0 / t, tokens_per_s_per_device=per_device,
                usd_per_million_tokens=None if usd is None else usd / 3600.0 / per_device * 1e6,
                runtime=task.launch))
    return out


def pareto(points: Iterable[FrontierPoint]) -> list[FrontierPoint]:
    """The points no other point dominates (at least as fast per user and per device, and
    faster on one), fastest per user first; of equal points the first is kept."""
    ordered = sorted(points, key=lambda p: (-p.tokens_per_s_per_user, -p.tokens_per_s_per_device))
    out: list[FrontierPoint] = []
    for p in ordered:
        if not out or p.tokens_per_s_per_device > out[-1].tokens_per_s_per_device:
            out.append(p)
    return out


def summarize_frontier(arch, prompt: int, gen: int, tasks: Sequence[ServeTask], results: Sequence[list],
                       unsupported: Sequence[ServePair] = ()) -> FrontierAnswer:
    groups: dict[tuple[str, str], list[FrontierPoint]] = {}
    for task, pts in zip(tasks, results):
        groups.setdefault((task.engine, task.device.id), []).extend(
            p if p.engine == task.engine else replace(p, engine=task.engine) for p in pts)
    series = tuple(FrontierSeries(engine=e, hardware=h, points=tuple(pareto(pts)), evaluated=len(pts))
                   for (e, h), pts in groups.items())
    return FrontierAnswer(model=arch.id, prompt=prompt, gen=gen, series=series, unsupported=tuple(unsupported))


def plan_frontier(arch, devices: Sequence, prompt: int, gen: int, search: ServeSearch | None = None,
                  map_fn: Callable[[Callable, Iterable], Iterable] = map) -> FrontierAnswer:
    """The Pareto frontier per (engine, hardware); ``devices`` are hardware or :class:`ServePair` rows."""
    tasks = frontier_tasks(arch, devices, prompt, gen, search)
    unique, index = dedupe_tasks(tasks)
    found = list(map_fn(run_frontier_task, unique))
    unsupported = [p for p in map(_pair, devices) if p.reason]
    return summarize_frontier(arch, prompt, gen, tasks, [found[i] for i in index], unsupported)
