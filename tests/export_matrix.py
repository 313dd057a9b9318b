"""The export property matrix: every engine × every catalog hardware it runs on × a few
models × budgets is planned for that engine and exported with every target that writes files
for it (``planner.export.rules.engine_formats``). A plan made for an engine must export to it
without error (docs/export.md, "The export matrix").

``python -m tests.export_matrix [--sample] [--engine=ID ...] [--progress] [--workers=N]`` prints the matrix size and every failure;
tests/test_export_matrix.py runs the sampled matrix (and the full one, marked slow).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

#: Llama, MoE, Qwen2, Gemma-2, Phi-3 (fused qkv and gate_up), Falcon (fused qkv, GELU MLP),
#: and an encoder (MiniLM) for every engine (on-device and FPGA runtimes run it too).
MODELS = ("llama-3.2-1b", "mixtral-8x7b", "qwen2.5-7b", "gemma-2-9b", "phi-3-mini", "falcon-7b", "all-minilm-l6-v2",
          "mobilenet-v2")


def _runs(engine: str) -> list[str]:
    """The models of MODELS whose family ``engine`` runs (vLLM runs no CNN, the Vitis AI DPU only CNNs)
    and whose model type it builds (MLC LLM builds no Falcon; a plan for one is refused)."""
    from planner.arch import load_arch
    from planner.engines import load_engine

    spec = load_engine(engine)
    return [m for m in MODELS if spec.runs_family(load_arch(m).family) and spec.builds(load_arch(m).model_type)]
#: Budgets per device: the device's memory (None) and fractions of the model's 16-bit weights per device.
BUDGETS = (None, 0.6, 0.35)
#: Wall-clock limit per plan: solves take well under a second of CPU; the margin is for a loaded machine.
TIME_LIMIT_S = 60.0


@dataclass
class MatrixResult:
    pairs: int = 0            # (engine, hardware) pairs
    cases: int = 0            # (engine, hardware, model, budget) plan requests
    plans: int = 0            # feasible plans made
    infeasible: int = 0       # requests with no feasible plan (nothing to export)
    exports: int = 0          # exports written
    #: exports refused because the target's recipe does not build the model (ExecuTorch's
    #: export_llama and Falcon, Gemma, Mixtral, encoders; MLC LLM and Falcon): the error names the model and recipe
    refused: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)  # solves past TIME_LIMIT_S (a loaded machine): no plan
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, other: "MatrixResult") -> None:
        """Count ``other`` (the result of other cases) into this one."""
        for k in ("cases", "plans", "infeasible", "exports"):
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.timed_out += other.timed_out
        self.refused += other.refused
        self.failures += other.failures

    def summary(self) -> str:
        return (f"{self.pairs} engine × hardware pairs, {self.cases} plan requests, {self.plans} plans, "
                f"{self.infeasible} infeasible, {len(self.timed_out)} past the time limit, {self.exports} exports, "
                f"{len(self.refused)} refused for the model, "
                f"{len(self.failures)} failures "
                f"({self.seconds:.0f} s)")


def pairs() -> list[tuple[str, str]]:
    """Every (engine, catalog hardware) pair where the engine runs, for plans (serving and
    on-device engines; training engines plan no serving deployment)."""
    from hwmodels import list_devices, load_device

    from planner.engines import list_engines, load_engine

    out = []
    for e in list_engines():
        spec = load_engine(e)
        if spec.kind == "training":
            continue
        for h in sorted(list_devices()):
            if spec.support(load_device(h)) is not None:
                out.append((e, h))
    return out


def _devices_and_budgets(arch, dev, spec) -> tuple[int, list[float | None]]:
    from planner.costmodel import Choice, memory_report
    from planner.layout import Layout
    from planner.serving import Serving

    w16 = memory_report(arch, dev, Layout(), Serving(batch=1, prompt=1, gen=0), Choice(weights="bf16"))[0].weights_bytes
    cap = dev.memory_capacity_bytes
    devices = 1
    can_split = bool({"tp", "pp"} & set(spec.parallel))
    while can_split and 0.35 * w16 / devices > 0.85 * cap and devices < max(1, dev.devices_per_node or 1):
        devices *= 2
    budgets = []
    for f in BUDGETS:
        b = None if f is None else f * w16 / devices
        budgets.append(None if b is not None and b >= cap else b)
    return devices, list(dict.fromkeys(budgets))


def cases(sample: bool = False) -> list[tuple[str, str, str]]:
    """(engine, hardware, model) triples; ``sample``: per engine one hardware (rotating over its
    pairs) and two models (rotating), so every engine and every model is covered."""
    ps = pairs()
    if not sample:
        return [(e, h, m) for e, h in ps for m in _runs(e)]
    by: dict[str, list[str]] = {}
    for e, h in ps:
        by.setdefault(e, []).append(h)
    out = []
    for i, (e, hws) in enumerate(sorted(by.items())):
        h = hws[(i * 5) % len(hws)]
        ms = _runs(e)
        out += list(dict.fromkeys([(e, h, ms[(2 * i) % len(ms)]), (e, h, ms[(2 * i + 1) % len(ms)])]))
    return out


def _export_context(arch, dev):
    from planner.export import ExportContext, group_modules

    return ExportContext(modules=group_modules(arch), arch=arch, device_capacity_bytes=dev.memory_capacity_bytes,
                         devices_per_node=dev.devices_per_node)


def unasked_structure(plan, searched_formats=()) -> list[str]:
    """Sparsity, low-rank factors, codebook weights or shared KV caches in a plan made without
    asking for any (every plan of the matrix): empty when there are none. Codebook formats are
    among the planner's default weight formats (planner.options.DEFAULT_WEIGHT_FORMATS), searched
    for an engine that runs them (Tierwise's own torch execution): one of those in
    ``searched_formats`` was asked for by the default search."""
    from planner.formats import get_format

    out = []
    for g, c in plan.choices.items():
        if c.sparsity != "dense":
            out.append(f"{g}: sparsity {c.sparsity}")
        if c.low_rank is not None:
            out.append(f"{g}: low rank {c.low_rank}")
        if get_format(c.weights).kind == "codebook" and c.weights not in searched_formats:
            out.append(f"{g}: codebook weights {c.weights}")
    if getattr(plan, "kv_share", None) not in (None, 1):  # plans have no KV sharing field today
        out.append(f"kv_share {plan.kv_share}")
    return out


def run_case(engine: str, hardware: str, model: str, res: MatrixResult, *, budgets: int | None = None) -> None:
    from hwmodels import load_device

    from planner.arch import load_arch
    from planner.deadline import DeadlineExceeded
    from planner.diagnose import NoFeasiblePlanError
    from planner.engines import load_engine
    from planner.export import export_plan
    from planner.export.core import UnsupportedModelError
    from planner.export.rules import engine_formats
    from planner.plan import with_engine
    from planner.request.plan import PlanRequest, resolve_plan
    from planner.search import Planner

    arch, dev, spec = load_arch(model), load_device(hardware), load_engine(engine)
    devices, bs = _devices_and_budgets(arch, dev, spec)
    ctx = _export_context(arch, dev)
    for b in bs[:budgets]:
        res.cases += 1
        where = f"{engine} × {hardware} × {model} × {devices} dev × budget {'device' if b is None else f'{b / 1e9:.3g} GB'}"
        try:
            _, _, problem, sens = resolve_plan(PlanRequest(model=arch, hardware=dev, engine=engine, devices=devices,
                                                           max_memory_per_device=b, time_limit_s=TIME_LIMIT_S))
            plan = with_engine(Planner(arch, dev, sensitivity=sens).solve(problem, diagnose_failure=False), engine)
        except NoFeasiblePlanError:
            res.infeasible += 1
            continue
        except DeadlineExceeded as exc:
            res.timed_out.append(f"{where}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not only the first
            res.failures.append(f"{where}: plan: {type(exc).__name__}: {exc}")
            continue
        res.plans += 1
        extra = unasked_structure(plan, problem.formats)
        if extra:
            res.failures.append(f"{where}: the plan has options nobody asked for: {extra}")
        for fmt in engine_formats(engine):
            try:
                out = export_plan(plan, None if fmt == spec.exporter else fmt, ctx)
                assert out.files and out.next_command.strip(), "an export with no files or next command"
                res.exports += 1
            except Exception as exc:  # noqa: BLE001
                if isinstance(exc, UnsupportedModelError) and exc.field == "model" and model in str(exc):
                    res.refused.append(f"{where}: export {fmt}: {exc}")
                    continue
                res.failures.append(f"{where}: export {fmt}: {type(exc).__name__}: {exc}")


def _one(case: tuple[str, str, str, int | None]) -> MatrixResult:
    """One (engine, hardware, model) triple on its own (in a worker process)."""
    res = MatrixResult()
    run_case(*case[:3], res, budgets=case[3])
    return res


def run(sample: bool = False, *, budgets: int | None = None, progress: bool = False,
        engines: tuple[str, ...] = (), workers: int = 1) -> MatrixResult:
    """The matrix; ``workers`` > 1 spreads the triples over that many fresh processes (each
    triple is planned and exported on its own, so the result is the one a single process gets)."""
    res = MatrixResult()
    t0 = time.perf_counter()
    cs = [c for c in cases(sample) if not engines or c[0] in engines]
    res.pairs = len({(e, h) for e, h, _ in cs})
    jobs = [(e, h, m, budgets) for e, h, m in cs]
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent may hold torch's and HiGHS's threads
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
        results = pool.map(_one, jobs, chunksize=4)
    else:
        pool, results = None, map(_one, jobs)
    try:
        for i, ((e, h, m, _), one) in enumerate(zip(jobs, results)):
            res.add(one)
            if progress:
                print(f"[{i + 1}/{len(cs)}] {e} {h} {m}: {res.summary()}", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    res.seconds = time.perf_counter() - t0
    return res


if __name__ == "__main__":
    only = tuple(a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--engine="))
    n = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--workers=")), 1)
    r = run(sample="--sample" in sys.argv, progress="--progress" in sys.argv, engines=only, workers=n)
    print(r.summary())
    for f in r.timed_out:
        print("TIME LIMIT", f)
    for f in r.failures:
        print("FAIL", f)
