"""Every "cheapest change" a diagnosis prints, applied literally, makes the request feasible.

Infeasible plan requests are drawn at random (seeded) over models of several families
(Llama, Phi-3, Qwen2.5, Gemma-2, Mistral, Mixtral, Falcon), hardware (datacenter and
consumer GPUs, an edge module, a phone) and constraints (memory budget, TTFT / TPOT
targets, ``--avg-bits``, large batches and contexts, a narrow ``--formats``). Each change's
fields are applied to the request through the one request layer (:func:`planner.plan`),
exactly as printed; the re-solve must find a plan that meets them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shlex

import pytest

from planner import api
from planner.diagnose import NoFeasiblePlanError, flags, round_up

#: GB of weights at about 4 bits, to draw budgets that do not fit.
_GB_AT_4_BITS = {"llama-3.2-1b": 0.62, "phi-3-mini": 1.9, "qwen2.5-7b": 3.8, "gemma-2-9b": 4.6,
                 "mistral-7b": 3.6, "mixtral-8x7b": 23.4, "falcon-7b": 3.5}
_HARDWARE = ("l4", "rtx-4090", "h100-sxm", "a100-80gb-sxm", "jetson-agx-orin")


def _request(rng: random.Random) -> dict:
    model = rng.choice(sorted(_GB_AT_4_BITS))
    hw = "iphone-15-pro" if model == "llama-3.2-1b" and rng.random() < 0.3 else rng.choice(_HARDWARE)
    req: dict = {"model": model, "hardware": hw, "devices": rng.choice((1, 1, 2)), "time_limit_s": 60}
    kind = rng.choice(("memory", "memory", "ttft", "tpot", "both_slo", "avg_bits", "batch", "formats"))
    size = _GB_AT_4_BITS[model]
    if kind == "memory":
        req["max_memory_per_device"] = f"{size * rng.uniform(0.25, 0.9) / req['devices']:.2f}GB"
    elif kind == "ttft":
        req["ttft_slo_s"] = f"{rng.uniform(1, 40):.1f}ms"
    elif kind == "tpot":
        req["tpot_slo_s"] = f"{rng.uniform(0.3, 6):.2f}ms"
    elif kind == "both_slo":
        req["ttft_slo_s"], req["tpot_slo_s"] = f"{rng.uniform(5, 80):.0f}ms", f"{rng.uniform(1, 10):.1f}ms"
    elif kind == "avg_bits":
        req["avg_bits"] = round(rng.uniform(2.0, 4.05), 2)
    elif kind == "batch":
        req.update(batch=rng.choice((64, 128, 256)), prompt=rng.choice((2048, 4096)),
                   max_memory_per_device=f"{size * rng.uniform(1.5, 3):.1f}GB")
    else:
        req.update(formats="bf16,fp16" if hw in ("iphone-15-pro",) else "bf16",
                   max_memory_per_device=f"{size * rng.uniform(1.2, 3) / req['devices']:.2f}GB")
    if rng.random() < 0.25 and kind != "batch":
        req["tp"] = 1  # a fixed degree: a "more devices" change must say which layout
    return req


def _diagnosis(req: dict):
    fields = {k: v for k, v in req.items() if k not in ("model", "hardware")}
    try:
        api.plan(req["model"], req["hardware"], **fields)
    except NoFeasiblePlanError as exc:
        assert exc.diagnosis is not None
        return exc.diagnosis
    except Exception as exc:  # noqa: BLE001 - a request the generator got wrong (e.g. tp on a phone engine)
        from planner.errors import TierwiseError

        if isinstance(exc, TierwiseError) and exc.kind == "bad_input":
            return None
        raise
    return None


def _check_changes(req: dict, diagnosis) -> int:
    checked = 0
    for change in diagnosis.changes:
        assert change.set, change
        assert change.template.startswith(flags(change.set)), change.template
        applied = {**req, **change.set}
        if change.set.get("devices") and req.get("tp") is not None:
            assert {"tp", "pp", "dp"} <= set(change.set), change  # the fixed degree is replaced, not kept
        fields = {k: v for k, v in applied.items() if k not in ("model", "hardware")}
        try:
            plan = api.plan(applied["model"], applied["hardware"], **fields)
        except NoFeasiblePlanError as exc:  # pragma: no cover - the failure message says which
            pytest.fail(f"{req} → change {change.description!r} applied as {change.set} is still infeasible: "
                        f"{exc.diagnosis.message if exc.diagnosis else exc}")
        p = plan.predicted
        for name, got in (("ttft_slo_s", p.ttft_s), ("tpot_slo_s", p.tpot_s)):
            if name in change.set:
                assert got <= change.set[name] * (1 + 1e-9)
        if "avg_bits" in change.set:
            assert p.avg_weight_bits <= change.set["avg_bits"] + 1e-9
        checked += 1
    return checked


def _seed(seed: int) -> tuple[int, int]:
    """(1 when the seed's request is diagnosed else 0, the changes checked) for one seed."""
    req = _request(random.Random(seed))
    diagnosis = _diagnosis(req)
    if diagnosis is None:
        return 0, 0
    return 1, _check_changes(req, diagnosis)


def _run(seeds, want: int, workers: int = 1) -> None:
    """The seeds' checks; ``workers`` > 1 spreads the (independent) seeds over that many fresh
    processes, whose failures are raised here as they would be in this one."""
    if workers > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            counts = list(pool.map(_seed, seeds))
    else:
        counts = [_seed(s) for s in seeds]
    diagnosed, changes = sum(d for d, _ in counts), sum(c for _, c in counts)
    assert diagnosed >= want and changes >= diagnosed // 2, (diagnosed, changes)


def test_printed_changes_make_a_few_random_infeasible_requests_feasible():
    _run((1, 2, 3, 8, 9, 12, 14), want=6)  # quick ones; the slow test draws 40 more


@pytest.mark.slow
def test_printed_changes_make_random_infeasible_requests_feasible():
    _run(range(16, 48), want=20, workers=min(2, os.cpu_count() or 1))


def test_round_up_never_prints_below_the_value():
    rng = random.Random(7)
    for _ in range(2000):
        x = 10 ** rng.uniform(-6, 3)
        v = round_up(x)
        assert v >= x and float(f"{v:.4g}") == v and v <= x * 1.011
    assert round_up(0.084465) == 0.0845 and round_up(0.0845) == 0.0845


def test_a_latency_change_pasted_on_the_command_line_fits():
    # The TTFT target the diagnosis suggests is rounded up: pasted as printed, it fits.
    from planner.cli import main

    argv = ["plan", "--model", "qwen2.5-7b", "--hardware", "l4", "--ttft-slo", "5ms", "--json"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 3
    changes = json.loads(out.getvalue())["error"]["details"]["changes"]
    slo = [c for c in changes if c["kind"] == "slo"]
    assert slo and slo[0]["description"].startswith("--ttft-slo ")
    pasted = shlex.split(slo[0]["description"].split(":")[0])
    argv = [a for a in argv if a not in ("--ttft-slo", "5ms")] + pasted
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert main(argv) == 0


def test_the_command_line_diagnosis_names_flags_and_the_python_one_fields():
    # One diagnosis, three front ends: `--allow-offload` / `--devices 8` on the command line
    # (stderr and --json), 'allow_offload' / 'devices' in Python; never a raw {@token}.
    from planner.cli import main

    # 2.7 GB: vLLM's 1.5 GiB runtime context (the L4's default engine) + 1.1 GB for the model
    argv = ["plan", "--model", "llama-3.1-8b", "--hardware", "l4", "--max-memory-per-device", "2.7GB"]
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        assert main(argv) == 3
    text = " ".join(err.getvalue().split())
    # the budget binds on a 24 GB device: raising it comes first, then offload and more devices
    assert "1. --max-memory-per-device 7.4GB: the budget is what binds" in text, text
    assert "2. --allow-offload: keep" in text and "--devices " in text and "{@" not in text
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([*argv, "--json"]) == 3
    details = json.loads(out.getvalue())["error"]["details"]
    by_kind = {c["kind"]: c for c in details["changes"]}
    assert by_kind["offload"]["description"].startswith("--allow-offload: keep")
    assert by_kind["devices"]["description"].startswith(f"--devices {by_kind['devices']['set']['devices']} (")
    assert "{@" not in details["message"] and "--allow-offload" in details["message"]
    with pytest.raises(NoFeasiblePlanError) as caught:
        api.plan("llama-3.1-8b", "l4", max_memory_per_device="2.7GB")
    d = caught.value.diagnosis
    assert d.changes[0].description.startswith("'max_memory_per_device' 7.4GB: the budget is what binds")
    assert d.changes[1].description.startswith("'allow_offload': keep")
    assert "--" not in str(caught.value) and "{@" not in str(caught.value)
