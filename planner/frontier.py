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

A series with no point says why (``reason``: the model fits no layout searched, or the time
limit stopped the search before it); when no series has a point the request layer and the
CLI answer ``infeasible`` (:func:`frontier_infeasible_message`). With a
:class:`~planner.deadline.Deadline` the searches run here pair by pair, checking it between
layouts; when it runs out the answer covers the pairs searched (``status: "time_limit"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from planner.capacity import (
    ServePair,
    ServeSearch,
    ServeTarget,
    ServeTask,
    _pair,
    dedupe_tasks,
    interleave_pairs,
    task_choice,
    task_replicas,
    unsupported_rows,
)
from planner.deadline import Deadline, DeadlineExceeded

__all__ = ["FrontierAnswer", "FrontierPoint", "FrontierSeries", "frontier_infeasible_message", "frontier_tasks",
           "pareto", "plan_frontier", "run_frontier_task", "run_frontier_within", "summarize_frontier"]

#: The reason of a series the time limit left unsearched ({@field} tokens: rendered per front end).
NOT_SEARCHED = "not searched before the time limit ({@time_limit_s})"

#: Columns of a frontier CSV (written even when there is no point).
CSV_COLUMNS = ("engine", "hardware", "weights", "activations", "kv", "tp", "pp", "devices", "batch", "step_s",
               "prefill_s", "tpot_s", "tokens_per_s_per_user", "tokens_per_s_per_device", "usd_per_million_tokens",
               "runtime")


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
    uncertainty: object = None  # p10-p90 error bars (planner.uncertainty), set by planner.request.capacity

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    def to_dict(self) -> dict:
        return {"engine": self.engine, "hardware": self.hardware, "weights": self.weights,
                "activations": self.activations, "kv": self.kv, "tp": self.tp, "pp": self.pp,
                "devices": self.devices, "batch": self.batch, "step_s": self.step_s, "prefill_s": self.prefill_s,
                "tpot_s": self.tpot_s, "tokens_per_s_per_user": self.tokens_per_s_per_user,
                "tokens_per_s_per_device": self.tokens_per_s_per_device,
                "usd_per_million_tokens": self.usd_per_million_tokens, "runtime": self.runtime,
                "uncertainty": self.uncertainty.to_dict() if self.uncertainty is not None else None}


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierSeries:
    engine: str
    hardware: str
    points: tuple[FrontierPoint, ...]  # the Pareto set, fastest per user first
    evaluated: int  # points evaluated before the Pareto filter
    reason: str = ""  # no point: why ({@field} tokens; render with reason_text)
    complete: bool = True  # False: the time limit stopped the search before every format of this pair was tried

    def reason_text(self, style: str = "rest", aliases: Any = None) -> str:
        from hwmodels.errors import render_tokens

        return render_tokens(self.reason, style, aliases)

    def to_dict(self, style: str = "rest", aliases: Any = None) -> dict:
        d = {"engine": self.engine, "hardware": self.hardware, "evaluated": self.evaluated,
             "points": [p.to_dict() for p in self.points], "complete": self.complete}
        if self.reason:
            d["reason"] = self.reason_text(style, aliases)
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class FrontierAnswer:
    model: str
    prompt: int
    gen: int
    series: tuple[FrontierSeries, ...]
    unsupported: tuple[ServePair, ...] = ()
    complete: bool = True  # False: the time limit stopped the search (some pairs partly or not searched)

    @property
    def feasible(self) -> bool:
        """Some series has a point."""
        return any(s.points for s in self.series)

    @property
    def not_searched(self) -> tuple[tuple[str, str], ...]:
        """The (engine, hardware) pairs the time limit left unsearched (each a series with no point)."""
        return tuple((s.engine, s.hardware) for s in self.series if s.reason == NOT_SEARCHED)

    def to_dict(self, style: str = "rest", aliases: Any = None) -> dict:
        """The answer as JSON; reasons name fields in ``style``'s syntax (``rest``, or ``cli`` with the
        command line's flag aliases)."""
        d = {"model": self.model, "prompt": self.prompt, "gen": self.gen,
             "status": "complete" if self.complete else "time_limit",
             "series": [s.to_dict(style, aliases) for s in self.series]}
        d["unsupported"] = unsupported_rows(self.unsupported, style, aliases)
        if self.not_searched:
            d["not_searched"] = [{"engine": e, "hardware": h} for e, h in self.not_searched]
        return d


def _load(prompt: int, gen: int) -> ServeTarget:
    """A target carrying only the request shape (the frontier has no load or SLOs)."""
    return ServeTarget(qps=1.0, prompt=prompt, gen=gen, ttft_slo_s=math.inf, tpot_slo_s=math.inf)


def frontier_tasks(arch, devices: Sequence, prompt: int, gen: int, search: ServeSearch | None = None) -> list[ServeTask]:
    """One task per (engine,) hardware × weight format; unsupported pairs get none."""
    from planner.capacity import serve_tasks

    return serve_tasks([arch], devices, _load(prompt, gen), replace(search or ServeSearch(), disaggregated=False))


def run_frontier_task(task: ServeTask, deadline: Deadline | None = None) -> list[FrontierPoint]:
    """Every (layout, batch) point of one task, before the Pareto filter (``deadline``: checked
    before each layout, raising ``DeadlineExceeded`` / ``Cancelled``)."""
    gen = max(task.target.gen, 1)
    usd = task.device.usd_per_hour
    choice = task_choice(task)
    out = []
    for rep in task_replicas(task, deadline):
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


def _no_fit(arch, hardware: str, search: ServeSearch | None) -> str:
    s = search or ServeSearch()
    return (f"{arch.id} does not fit {hardware} at any layout within {{@max_devices}} {s.max_devices} and "
            f"{{@max_pp}} {s.max_pp} in the weight formats searched (tensor parallelism stays within one node)")


def summarize_frontier(arch, prompt: int, gen: int, tasks: Sequence[ServeTask], results: Sequence[list | None],
                       unsupported: Sequence[ServePair] = (), search: ServeSearch | None = None) -> FrontierAnswer:
    """One series per (engine, hardware) of ``tasks``; ``results[i]`` is task i's points, or
    ``None`` when the time limit stopped the search before it (the answer is then incomplete:
    a pair with only some formats searched has ``complete=False``, one with none the reason
    :data:`NOT_SEARCHED`). A series without a point says why."""
    groups: dict[tuple[str, str], list[FrontierPoint]] = {}
    planned: dict[tuple[str, str], int] = {}
    ran: dict[tuple[str, str], int] = {}
    for task, pts in zip(tasks, results):
        key = (task.engine, task.device.id)
        groups.setdefault(key, [])
        planned[key] = planned.get(key, 0) + 1
        if pts is None:
            continue
        ran[key] = ran.get(key, 0) + 1
        groups[key].extend(p if p.engine == task.engine else replace(p, engine=task.engine) for p in pts)
    series = []
    for (e, h), pts in groups.items():
        done = ran.get((e, h), 0)
        reason = "" if pts else (NOT_SEARCHED if not done else _no_fit(arch, h, search))
        series.append(FrontierSeries(engine=e, hardware=h, points=tuple(pareto(pts)), evaluated=len(pts),
                                     reason=reason, complete=done == planned[(e, h)]))
    return FrontierAnswer(model=arch.id, prompt=prompt, gen=gen, series=tuple(series), unsupported=tuple(unsupported),
                          complete=all(s.complete for s in series))


def run_frontier_within(tasks: Sequence[ServeTask], deadline: Deadline) -> dict[int, list[FrontierPoint]]:
    """The searches of ``tasks`` done here before ``deadline`` (index → points), pair by pair
    (:func:`planner.capacity.interleave_pairs`). Nothing done when the time is up raises
    :class:`~planner.deadline.DeadlineExceeded`; a cancel raises ``Cancelled``."""
    done: dict[int, list[FrontierPoint]] = {}
    for i in interleave_pairs(tasks):
        try:
            done[i] = run_frontier_task(tasks[i], deadline)
        except DeadlineExceeded:
            if not done:
                raise
            break
    return done


def plan_frontier(arch, devices: Sequence, prompt: int, gen: int, search: ServeSearch | None = None,
                  map_fn: Callable[[Callable, Iterable], Iterable] = map, deadline: Deadline | None = None) -> FrontierAnswer:
    """The Pareto frontier per (engine, hardware); ``devices`` are hardware or :class:`ServePair` rows.
    With a ``deadline`` the searches run here one after the other (``map_fn`` unused) and the
    answer covers those done when it runs out."""
    tasks = frontier_tasks(arch, devices, prompt, gen, search)
    unique, index = dedupe_tasks(tasks)
    if deadline is None:
        found = dict(enumerate(map_fn(run_frontier_task, unique)))
    else:
        found = run_frontier_within(unique, deadline)
    unsupported = [p for p in map(_pair, devices) if p.listed]
    return summarize_frontier(arch, prompt, gen, tasks, [found.get(i) for i in index], unsupported, search)


def frontier_infeasible_message(ans: FrontierAnswer) -> tuple[str, dict]:
    """(message with ``{@field}`` tokens, details) when no series has a point: every pair's reason
    (and, when the time limit cut the search short, that a longer one may find points)."""
    why = [f"{s.engine or '-'} on {s.hardware}: {s.reason}" for s in ans.series]
    why += [f"{p.engine or '-'} on {p.device.id}: {p.reason}" for p in ans.unsupported if p.reason]
    msg = f"no (engine, hardware) pair has a point on the frontier of {ans.model}: " + "; ".join(why)
    if not ans.complete:
        msg += " (the time limit stopped the search; a longer {@time_limit_s} may find points)"
    details = {"series": [{"engine": s.engine, "hardware": s.hardware, "reason": s.reason_text("rest"),
                           "complete": s.complete} for s in ans.series],
               "unsupported": unsupported_rows(ans.unsupported),
               "complete": ans.complete}
    return msg, details
