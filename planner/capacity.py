"""Capacity planning: how many devices of which hardware serve a load within latency SLOs,
or train a model on a token budget within a deadline, at least cost. Pure functions.

Searches are split into independent tasks (one per hardware × weight format for serving,
one per layout family for training) so that a caller can run them in a process pool or
on a Ray cluster: ``*_tasks`` builds them, ``run_*_task`` (module-level, picklable) runs
one, ``summarize_*`` combines the results. ``plan_serving`` / ``plan_training`` do all
three with the builtin ``map``.

Serving (see :mod:`planner.queueing` for the queueing model): for each hardware, weight
format and model-parallel layout (TP inside a node × PP), the cost model gives the
prefill time of one prompt, the decode step time at each batch size and the largest
batch whose KV cache fits; replicas are added until the per-replica load meets both SLOs
at the requested percentile. The answer per hardware is the configuration with the fewest
devices (then the lowest TTFT); hardware is ranked by USD per hour, cheapest first.

Several models on one fleet (composition of experts, fine-tuned variants): each replica
keeps the most requested models resident in device memory (the hot set) plus one swap
slot, and the rest in the slower tier (GPU host memory, SN40L DDR). A request for a cold
model waits for its weights to be switched in (resident bytes per device / slow-tier
bandwidth, as the cost model's ``switch_in_s``); switches queue on the slow-tier link as an
M/G/1 server. Decode iterations run one batch per live model, so the iteration time is
the sum of the models' step times. The fleet is compared with hosting each model on its
own replicas.

Training capacity lives in :mod:`planner.training_capacity` (re-exported here).
"""

from __future__ import annotations

import collections

import functools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwmodels import DeviceSpec
from planner.arch import ArchSpec
from planner.errors import InfeasibleError
from planner.costmodel import Choice, EstimateError
from planner.deadline import Deadline, DeadlineExceeded
from planner.training_capacity import (  # training capacity, re-exported here
    TrainAnswer,
    TrainFleetAnswer,
    TrainOption,
    TrainTarget,
    TrainTask,
    _check,
    device_grid,
    plan_training,
    run_train_task,
    summarize_train,
    train_infeasible_message,
    train_tasks,
)
from planner.queueing import continuous_batching

from planner.capacity_model import (  # noqa: F401 - the replica model, re-exported here
    DEFAULT_FORMATS,
    ServeTarget,
    ServeSearch,
    ServeOption,
    EngineSetup,
    ServePair,
    ServeTask,
    ServeResult,
    _activation_for,
    _serve_layouts,
    unsupported_rows,
    _Replica,
    _settings,
    _replica,
    _slo_failures,
    _fleet_cost,
    _option_from_queue,
    NEAR_MISS,
    closer,
    _min_replicas,
    fewest_replicas_within,
)


# ---------------------------------------------------------------------------
# Serving
# ---------------------------------------------------------------------------



def task_choice(task: ServeTask) -> Choice:
    """Weights, compute and KV formats a task prices (the engine's, else the device's)."""
    acts = task.activations or _activation_for(task.device, task.weights)
    return Choice(weights=task.weights, activations=acts, kv=task.kv or task.search.kv)


def task_replicas(task: ServeTask, deadline: Deadline | None = None) -> list[_Replica]:
    """What one replica of each layout the task may use can do (its model alone)."""
    deadline = deadline or Deadline.unbounded()
    device, search, arch = task.device, task.search, task.archs[0]
    if device.supports(task.weights) == "unsupported":
        return []
    choice, options = task_choice(task), _settings(task, search, arch)
    reps = []
    for tp, pp in _serve_layouts(arch, device, search, tp_ok=task.tp_ok, pp_ok=task.pp_ok):
        deadline.check("the capacity search")
        try:
            rep = _replica(arch, device, tp, pp, choice, task.target, search, options)
        except EstimateError:
            continue
        if rep is not None:
            reps.append(rep)
    return reps


def run_serve_task(task: ServeTask, deadline: Deadline | None = None) -> ServeResult:
    """(fewest-devices option meeting the SLOs, best option that does not) for one
    hardware and weight format; either may be None; a disaggregated task adds the same for
    separate prefill and decode pools. ``deadline`` is checked before each layout
    (:class:`~planner.deadline.DeadlineExceeded` / ``Cancelled`` when it is up)."""
    deadline = deadline or Deadline.unbounded()
    device, target, search = task.device, task.target, task.search
    if device.supports(task.weights) == "unsupported":
        return ServeResult(None, None)
    if len(task.archs) > 1 and task.shared:
        from planner.shared_fleet import run_shared

        return ServeResult(*run_shared(task, task_choice(task), deadline))
    best: ServeOption | None = None
    closest: ServeOption | None = None
    share = target.mix[0] if len(target.mix) == len(task.archs) and len(task.archs) == 1 else 1.0
    qps = target.qps * share
    models = (task.archs[0].id,)
    reps = task_replicas(task, deadline)

    def evaluator(rep: _Replica):
        def evaluate(r: int) -> ServeOption:
            q = continuous_batching(qps / r, rep.prefill_s, rep.curve, target.gen, rep.max_batch, target.percentile)
            return replace(_option_from_queue(rep, device, target, r, q, models, qps), engine=task.engine,
                           runtime=task.launch)
        return evaluate

    tops = []  # (replica, its option at the most replicas --max-devices allows)
    for rep in reps:
        ok, at_max = _min_replicas(evaluator(rep), max(1, search.max_devices // (rep.tp * rep.pp)))
        tops.append((rep, at_max))
        if ok is not None and (best is None or (ok.devices, ok.ttft_s) < (best.devices, best.ttft_s)):
            best = ok
        if ok is None and (closest is None or at_max.badness < closest.badness):
            closest = at_max
    if best is None and closest is not None:
        # the fewest devices, over every layout, that come within NEAR_MISS of the closest miss
        limit = closest.badness * NEAR_MISS
        for rep, at_max in tops:
            deadline.check()
            near = fewest_replicas_within(evaluator(rep), at_max.replicas, limit, at_max)
            if near is not None and (near.devices, near.badness) < (closest.devices, closest.badness):
                closest = near
    if not task.disaggregated:
        return ServeResult(best, closest)
    from planner.disagg import no_pools_reason, search_disaggregated

    d_best, d_closest = search_disaggregated(reps, task, qps)
    why = no_pools_reason(reps, task) if d_best is None and d_closest is None else ""
    return ServeResult(best, closest, d_best, d_closest, why)


# ---- task plumbing -----------------------------------------------------------------------


def _pair(d: DeviceSpec | ServePair) -> ServePair:
    return d if isinstance(d, ServePair) else ServePair(device=d)


def _sub_target(target: ServeTarget, share: float) -> ServeTarget:
    return ServeTarget(qps=target.qps * share, prompt=target.prompt, gen=target.gen, ttft_slo_s=target.ttft_slo_s,
                       tpot_slo_s=target.tpot_slo_s, percentile=target.percentile)


def serve_tasks(archs: Sequence[ArchSpec], devices: Sequence[DeviceSpec | ServePair], target: ServeTarget,
                search: ServeSearch = ServeSearch()) -> list[ServeTask]:
    """One task per (engine,) hardware × weight format (× model when several models are
    hosted separately, for the comparison). ``devices`` are hardware (priced without an
    engine) or :class:`ServePair` rows; a pair that is not supported gets no task."""
    _check(len(archs) >= 1, "model", "--model needs at least one model")
    _check(len(devices) >= 1, "hardware", "--hardware needs at least one hardware id")
    _check(len(target.mix) == len(archs), "mix", f"--mix needs one share per model ({len(archs)}); got {len(target.mix)}")
    tasks = []
    for pair in map(_pair, devices):
        if pair.reason:
            continue
        setup = pair.setup
        formats = setup.formats if setup else tuple((w, None) for w in search.formats)
        extra = {} if setup is None else dict(engine=pair.engine, kv=setup.kv, reserved_bytes=setup.reserved_bytes,
                                              runtime=setup.runtime, tp_ok=setup.tp, pp_ok=setup.pp)
        for w, act in formats:
            common = dict(device=pair.device, search=search, weights=w, activations=act, **extra)
            own = ServeTask(archs=tuple(archs), target=target, shared=True, disaggregated=search.disaggregated and len(archs) == 1,
                            **common, **({} if setup is None else dict(kernel=setup.kernel, kernels=setup.kernels)))
            tasks.append(own)
            if len(archs) > 1:
                for i, a in enumerate(archs):
                    tasks.append(ServeTask(archs=(a,), target=_sub_target(target, target.mix[i]), shared=False, **common,
                                           kernel=own.kernel_of(a)))
    return tasks


def dedupe_tasks(tasks: Sequence[ServeTask]) -> tuple[list[ServeTask], list[int]]:
    """(the distinct searches, index of each task's search): engines that price a hardware
    alike (same formats, reserved memory, runtime, layouts) share one search."""
    first: dict[tuple, int] = {}
    unique: list[ServeTask] = []
    index = []
    for t in tasks:
        k = t.key()
        if k not in first:
            first[k] = len(unique)
            unique.append(t)
        index.append(first[k])
    return unique, index


def expand_results(tasks: Sequence[ServeTask], index: Sequence[int], results: Sequence[ServeResult]) -> list[ServeResult]:
    """Each task's result from the shared searches', with its own engine named."""
    out = []
    for t, i in zip(tasks, index):
        r = ServeResult(*results[i])
        out.append(ServeResult(*(o if o is None or isinstance(o, str) or o.engine == t.engine
                                 else replace(o, engine=t.engine) for o in r)))
    return out


def run_serve_tasks(tasks: Sequence[ServeTask], map_fn: Callable[[Callable, Iterable], Iterable] = map) -> list[ServeResult]:
    """Every task's result, each distinct search run once (``map_fn``: builtin map, a pool's map, ...)."""
    unique, index = dedupe_tasks(tasks)
    return expand_results(tasks, index, list(map_fn(run_serve_task, unique)))


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareAnswer:
    hardware: str
    best: ServeOption | None
    closest: ServeOption | None
    separate_devices: int | None = None  # several models: each hosted alone, summed
    separate_usd_per_hour: float | None = None
    engine: str = ""
    disaggregated: bool = False  # separate prefill / decode pools were searched too
    disagg: Any = None  # planner.disagg.DisaggOption meeting the SLOs with the fewest devices
    disagg_closest: Any = None
    disagg_reason: str = ""  # no disaggregated pools at all (neither disagg nor disagg_closest): why
    complete: bool = True  # False: the time limit stopped the search before every format of this pair was tried
    reason: str = ""  # neither best nor closest: why no layout fits ({@field} tokens: render with reason_text)

    def reason_text(self, style: str = "rest", aliases: Any = None) -> str:
        """:attr:`reason` in one front end's syntax (``--max-pp`` on the command line, ``'max_pp'`` in REST)."""
        from hwmodels.errors import render_tokens

        return render_tokens(self.reason, style, aliases)

    @property
    def cheapest(self) -> Any:
        """The cheaper of the aggregated and disaggregated answers meeting the SLOs (None: neither)."""
        opts = [o for o in (self.best, self.disagg) if o is not None]
        return min(opts, key=_cost_key) if opts else None

    def to_dict(self, style: str = "rest", aliases: Any = None) -> dict:
        d = {
            "hardware": self.hardware,
            **({"engine": self.engine} if self.engine else {}),
            "meets_slo": self.best is not None,
            "best": self.best.to_dict() if self.best else None,
            "closest": self.closest.to_dict() if (self.best is None and self.closest) else None,
            "complete": self.complete,
        }
        if self.best is None and self.closest is None and self.reason:
            d["reason"] = self.reason_text(style, aliases)
        if self.separate_devices is not None:
            d["separate_devices"] = self.separate_devices
            d["separate_usd_per_hour"] = self.separate_usd_per_hour
        if self.disaggregated:
            from planner.disagg import compare

            d["disaggregated"] = {
                "meets_slo": self.disagg is not None,
                "best": self.disagg.to_dict() if self.disagg else None,
                "closest": self.disagg_closest.to_dict() if (self.disagg is None and self.disagg_closest) else None,
                "vs_aggregated": compare(self.disagg, self.best),
            }
            if self.disagg is None and self.disagg_closest is None and self.disagg_reason:
                d["disaggregated"]["reason"] = self.disagg_reason
        return d


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeAnswer:
    target: ServeTarget
    models: tuple[str, ...]
    ranked: tuple[HardwareAnswer, ...]  # feasible first, cheapest first; then infeasible by closeness
    complete: bool = True  # False: the search stopped at its time limit (some configurations not tried)
    # (engine, hardware) pairs the engine does not run, with the reason, or with weight formats skipped
    unsupported: tuple[ServePair, ...] = ()
    serving: str = "aggregated"  # or "disaggregated": separate prefill / decode pools searched too
    # (engine, hardware) pairs the time limit left unsearched: in no row, not ranked
    not_searched: tuple[tuple[str, str], ...] = ()

    @property
    def feasible(self) -> bool:
        return any(h.cheapest is not None for h in self.ranked)

    def to_dict(self, style: str = "rest", aliases: Any = None) -> dict:
        """The answer as JSON; reasons name fields in ``style``'s syntax (``rest``: ``'kv'``; the
        command line's ``--json`` passes ``cli`` and its flag aliases: ``--kv``)."""
        t = self.target
        d = {
            "models": list(self.models),
            "mix": list(t.mix),
            "qps": t.qps,
            "prompt": t.prompt,
            "gen": t.gen,
            "ttft_slo_s": t.ttft_slo_s,
            "tpot_slo_s": t.tpot_slo_s,
            "percentile": t.percentile,
            "serving": self.serving,
            "feasible": self.feasible,
            "status": "complete" if self.complete else "time_limit",
            "hardware": [h.to_dict(style, aliases) for h in self.ranked],
        }
        if self.unsupported:
            d["unsupported"] = unsupported_rows(self.unsupported, style, aliases)
        if self.not_searched:
            d["not_searched"] = [{"engine": e, "hardware": h} for e, h in self.not_searched]
        return d


def _cost_key(o: Any) -> tuple:
    return (o.usd_per_hour if o.usd_per_hour is not None else math.inf, o.devices, o.ttft_s)


def _better(cur: Any, new: Any, key: Callable[[Any], Any]) -> Any:
    return new if new is not None and (cur is None or key(new) < key(cur)) else cur


def _separate(archs: Sequence[ArchSpec], seps: dict) -> tuple[int | None, float | None]:
    if len(archs) < 2 or len(seps) != len(archs):
        return None, None
    usd = [o.usd_per_hour for o in seps.values()]
    return sum(o.devices for o in seps.values()), (sum(usd) if all(u is not None for u in usd) else None)


def summarize_serve(archs: Sequence[ArchSpec], target: ServeTarget, tasks: Sequence[ServeTask],
                    results: Sequence[tuple], unsupported: Sequence[ServePair] = ()) -> ServeAnswer:
    """One row per (engine, hardware): its cheapest answer per mode; rows ranked by cost."""
    per_hw: dict[tuple[str, str], dict] = {}
    badness = lambda o: o.badness  # noqa: E731
    for task, res in zip(tasks, results):
        r = ServeResult(*res)
        h = per_hw.setdefault((task.engine, task.device.id), {"best": None, "closest": None, "separate": {},
                                                              "disagg": None, "disagg_closest": None, "d": False,
                                                              "why": "", "tasks": []})
        h["tasks"].append(task)
        if task.shared:
            h["best"] = _better(h["best"], r.best, _cost_key)
            h["closest"] = closer(h["closest"], r.closest)
            h["d"] = h["d"] or task.disaggregated
            h["disagg"] = _better(h["disagg"], r.disagg, _cost_key)
            h["disagg_closest"] = _better(h["disagg_closest"], r.disagg_closest, badness)
            h["why"] = h["why"] or r.disagg_reason
        else:
            m = task.archs[0].id
            h["separate"][m] = _better(h["separate"].get(m), r.best, _cost_key)
    answers = []
    for (engine, hw), h in per_hw.items():
        seps = {m: o for m, o in h["separate"].items() if o is not None}
        sep_dev, sep_usd = _separate(archs, seps)
        answers.append(HardwareAnswer(hardware=hw, engine=engine, best=h["best"], closest=h["closest"],
                                      separate_devices=sep_dev, separate_usd_per_hour=sep_usd, disaggregated=h["d"],
                                      disagg=h["disagg"], disagg_closest=h["disagg_closest"],
                                      disagg_reason="" if h["disagg"] or h["disagg_closest"] else h["why"],
                                      reason="" if h["best"] or h["closest"] else _no_fit_reason(h["tasks"])))
    feasible = sorted((a for a in answers if a.cheapest is not None), key=lambda a: _cost_key(a.cheapest))
    rest = sorted((a for a in answers if a.cheapest is None), key=lambda a: a.closest.badness if a.closest else math.inf)
    mode = "disaggregated" if any(t.disaggregated for t in tasks) else "aggregated"
    return ServeAnswer(target=target, models=tuple(a.id for a in archs), ranked=tuple(feasible + rest),
                       unsupported=tuple(unsupported), serving=mode)


def _no_fit_reason(tasks: Sequence[ServeTask]) -> str:
    """Why no layout of an (engine, hardware) pair holds the model: the largest replica its layout bounds allow
    (tensor parallelism within one node, ``--max-pp``, ``--max-devices``) against the weights alone at the
    smallest format searched — a T4 node holds one GPU, so the 405B model needs more than tp 1 × pp 4."""
    from planner.formats import get_format

    shared = [t for t in tasks if t.shared] or list(tasks)
    if not shared:
        return ""
    t = min(shared, key=lambda x: get_format(x.weights).bits_per_value())
    dev, search = t.device, t.search
    arch = max(t.archs, key=lambda a: a.param_count())
    layouts = _serve_layouts(arch, dev, search, tp_ok=t.tp_ok, pp_ok=t.pp_ok)
    gb = 1e9
    weights = sum(_weight_bytes(t, a) for a in t.archs)
    if not layouts:
        return (f"no layout of {arch.id} within {{@max_pp}} {search.max_pp} and {{@max_devices}} "
                f"{search.max_devices} on {dev.id}")
    tp, pp = max(layouts, key=lambda lp: lp[0] * lp[1])
    node = max(dev.devices_per_node, 1)
    limits = []
    if t.tp_ok:
        limits.append(f"tensor parallelism stays within one node of {node}")
    else:
        limits.append(f"{t.engine or 'the engine'} runs no tensor parallelism here")
    limits.append(f"pipeline stages ≤ {{@max_pp}} {search.max_pp}" if t.pp_ok else "no pipeline stages")
    if tp * pp >= search.max_devices:
        limits.append(f"devices ≤ {{@max_devices}} {search.max_devices}")
    return (f"does not fit: one replica spans at most tp {tp} × pp {pp} = {tp * pp} × {dev.memory_capacity_bytes / gb:.1f} "
            f"GB ({'; '.join(limits)}), and the weights alone are {weights / gb:,.0f} GB in {t.weights}, "
            "before the KV cache and activations")


def _weight_bytes(task: ServeTask, arch: ArchSpec) -> float:
    """Whole-model weight bytes of ``arch`` as ``task``'s engine holds them (its 16-bit tables, its storage
    types), from the cost model; the catalog price of the format if the model cannot be priced at all."""
    from planner.costmodel import Layout, Serving, estimate_inference
    from planner.formats import get_format

    try:
        est = estimate_inference(arch, task.device, Layout(), Serving(batch=1, prompt=1, gen=1), task_choice(task),
                                 options=_settings(task, task.search, arch))
        return est.memory.weights_bytes
    except EstimateError:
        return arch.param_count() * get_format(task.weights).bits_per_value() / 8.0


def serve_infeasible_message(ans: ServeAnswer) -> tuple[str, dict]:
    """Reason and the best layout's numbers when no hardware meets the SLOs (and, when the time
    limit cut the search short, what it did not search)."""
    msg, payload = _infeasible_reason(ans)
    if ans.complete:
        return msg, payload
    partial = sum(1 for h in ans.ranked if not h.complete)
    msg += (f" (the time limit stopped the search: {partial} (engine, hardware) pair{'s' if partial != 1 else ''} "
            f"partly and {len(ans.not_searched)} not searched; a longer {{@time_limit_s}} may find an answer)")
    return msg, {**payload, "complete": False,
                 "not_searched": [{"engine": e, "hardware": h} for e, h in ans.not_searched]}


def _infeasible_reason(ans: ServeAnswer) -> tuple[str, dict]:
    near = [h.closest for h in ans.ranked if h.closest is not None]
    if not near:
        why = "".join(f"; {p.engine} on {p.device.id}: {p.reason}" for p in [p for p in ans.unsupported if p.reason][:4])
        pairs = [{"engine": h.engine, "hardware": h.hardware, "reason": h.reason} for h in ans.ranked if h.reason]
        pairs += [{"engine": p.engine, "hardware": p.device.id, "reason": p.reason, "supported": False}
                  for p in ans.unsupported if p.reason]
        return ("the model does not fit any of the hardware at any layout within --max-devices and --max-pp "
                "(tensor parallelism stays within one node)" + why, {"hardware": pairs} if pairs else {})
    o = functools.reduce(closer, sorted(near, key=lambda x: x.badness))
    why = "; ".join(o.failures) or "SLOs not met"
    engine = f" {o.engine}" if o.engine else ""
    msg = (
        f"no hardware meets the SLOs at {ans.target.qps:g} QPS; closest:{engine} {o.hardware} {o.weights} "
        f"tp={o.tp} pp={o.pp} × {o.replicas} replica{'s' if o.replicas != 1 else ''} "
        f"({o.devices} device{'s' if o.devices != 1 else ''}): {why}"
    )
    return msg, o.to_dict()


def run_serve_until(tasks: Sequence[ServeTask], deadline: Deadline) -> list[ServeResult]:
    """Run ``tasks`` here one after the other until ``deadline``: the results of those done (a
    prefix of ``tasks``; all of them when the time suffices). Nothing done when the time is up
    raises :class:`~planner.deadline.DeadlineExceeded`; a cancel raises ``Cancelled``."""
    done: list[ServeResult] = []
    for task in tasks:
        try:
            done.append(run_serve_task(task, deadline))
        except DeadlineExceeded:
            if not done:
                raise
            break
    return done


def _pair_key(task: ServeTask) -> tuple:
    return (task.engine, task.device.id)


def interleave_pairs(tasks: Sequence[ServeTask]) -> list[int]:
    """Indices of ``tasks`` taking each (engine, hardware) pair's searches in turn (its first format,
    then every pair's second, ...): a time limit then leaves every pair with some answer before any
    pair gets all of its formats."""
    groups: dict[tuple, list[int]] = {}
    for i, t in enumerate(tasks):
        groups.setdefault(_pair_key(t), []).append(i)
    lists = list(groups.values())
    return [g[k] for k in range(max(map(len, lists), default=0)) for g in lists if k < len(g)]


def run_serve_within(tasks: Sequence[ServeTask], deadline: Deadline) -> dict[int, ServeResult]:
    """The searches of ``tasks`` done before ``deadline`` (index → result), taken pair by pair
    (:func:`interleave_pairs`); as :func:`run_serve_until` when nothing is done."""
    order = interleave_pairs(tasks)
    done = run_serve_until([tasks[i] for i in order], deadline)
    return {order[k]: r for k, r in enumerate(done)}


def summarize_searched(archs: Sequence[ArchSpec], target: ServeTarget, tasks: Sequence[ServeTask], index: Sequence[int],
                       found: dict[int, ServeResult], unsupported: Sequence[ServePair] = ()) -> ServeAnswer:
    """:func:`summarize_serve` over the tasks whose search ran (``index``: each task's search, ``found``:
    the searches done). When some did not run the answer is incomplete: a row whose pair had only
    some of its formats searched is marked ``complete=False``, and a pair with none searched is
    listed under ``not_searched`` instead of being left out silently."""
    kept = [i for i, u in enumerate(index) if u in found]
    ran = [tasks[i] for i in kept]
    ans = summarize_serve(archs, target, ran, expand_results(ran, [index[i] for i in kept], found), unsupported)
    if len(kept) == len(tasks):
        return ans
    planned = collections.Counter(_pair_key(t) for t in tasks)
    searched = collections.Counter(_pair_key(t) for t in ran)
    ranked = tuple(h if searched[(h.engine, h.hardware)] == planned[(h.engine, h.hardware)] else replace(h, complete=False)
                   for h in ans.ranked)
    missing = tuple(p for p in planned if p not in searched)
    return replace(ans, ranked=ranked, complete=False, not_searched=missing)


def plan_serving(
    archs: Sequence[ArchSpec],
    devices: Sequence[DeviceSpec | ServePair],
    target: ServeTarget,
    search: ServeSearch = ServeSearch(),
    map_fn: Callable[[Callable, Iterable], Iterable] = map,
    deadline: Deadline | None = None,
) -> ServeAnswer:
    """Every (engine,) hardware × format task; with a ``deadline`` the tasks run here one
    after the other, each checking it between layouts. When the time is up, the answer
    covers the configurations searched so far (``complete=False``); nothing searched yet,
    or a cancel, raises :class:`~planner.deadline.DeadlineExceeded` / ``Cancelled``.
    ``search.disaggregated``: separate prefill and decode pools are searched too (:mod:`planner.disagg`)."""
    tasks = serve_tasks(archs, devices, target, search)
    unsupported = [p for p in map(_pair, devices) if p.listed]
    if deadline is None:
        return summarize_serve(archs, target, tasks, run_serve_tasks(tasks, map_fn), unsupported)
    unique, index = dedupe_tasks(tasks)
    return summarize_searched(archs, target, tasks, index, run_serve_within(unique, deadline), unsupported)


__all__ = [
    "DEFAULT_FORMATS",
    "EngineSetup",
    "HardwareAnswer",
    "InfeasibleError",
    "ServeAnswer",
    "ServeOption",
    "ServePair",
    "ServeResult",
    "ServeSearch",
    "ServeTarget",
    "ServeTask",
    "TrainAnswer",
    "TrainFleetAnswer",
    "TrainOption",
    "TrainTarget",
    "TrainTask",
    "dedupe_tasks",
    "device_grid",
    "expand_results",
    "plan_serving",
    "plan_training",
    "run_serve_task",
    "run_serve_tasks",
    "run_serve_until",
    "run_serve_within",
    "summarize_searched",
    "run_train_task",
    "serve_infeasible_message",
    "serve_tasks",
    "task_choice",
    "task_replicas",
    "summarize_serve",
    "summarize_train",
    "train_infeasible_message",
    "train_tasks",
]
