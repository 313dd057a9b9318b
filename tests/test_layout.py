"""planner.layout: one Layout (with context parallelism), one validation, one link choice and
one collective pricing for inference and training; the planner's import graph has no cycle."""

import ast
from dataclasses import replace
import subprocess
import sys
from pathlib import Path

import pytest

from hwmodels import load_device
from hwmodels.loader import list_devices
from planner.arch import load_arch
from planner.costmodel import Choice, Serving, _op_comm, estimate_inference, memory_report
from planner.errors import EstimateError, TierwiseError
from planner.layout import (
    Layout,
    check_layout,
    collective_s,
    cp_split,
    max_group,
    microbatch_sizes,
    pipeline_time_s,
    strides,
)
from planner.training import TrainingConfig, estimate_training
from planner.workload import ATTENTION, Phase, build_workload

ROOT = Path(__file__).resolve().parents[1]
PLANNER = ROOT / "planner"
H100 = load_device("h100-sxm")
SMALL = "llama-3.2-1b"


# ---------------------------------------------------------------------------
# One collective pricing
# ---------------------------------------------------------------------------


def _moe_last_expert_op(arch):
    for b in build_workload(arch).blocks:
        for op in b.ops:
            if op.experts and op.allreduce_after:
                return b, op
    raise AssertionError("no expert op")


def test_cross_node_all_to_all_has_one_price_in_inference_and_training():
    # EP 16 on 8-GPU H100 nodes, 64 MB per rank: half the peers are in the node (NVLink),
    # half across InfiniBand, both at once → the remote half sets the time:
    # 8/16 · 64 MB / (0.8 · 50 GB/s) + 8 · 5 µs = 0.84 ms (the flat IB formula gave 1.575 ms).
    one = collective_s("all_to_all", H100, 64e6, 16, 1)
    assert one == pytest.approx(0.84e-3, rel=1e-9)

    # Mixtral's layer with 16 experts (top-2), so that EP 16 is a valid layout
    arch = replace(load_arch("mixtral-8x7b"), num_experts=16, id="mixtral-16x7b")
    _, op = _moe_last_expert_op(arch)
    layout = Layout(dp=16, ep=16)
    choice = Choice()
    tokens = 64e6 / (op.experts_active * op.out_features * 2.0)  # bf16 → 64 MB per rank
    ph = Phase(name="prefill", batch=1, tokens=int(tokens), context=0.0)
    nbytes = ph.tokens * op.experts_active * op.out_features * 2.0
    assert _op_comm(op, ph, H100, choice, layout) == pytest.approx(2.0 * collective_s("all_to_all", H100, nbytes, 16, 1))

    # training prices its EP all-to-alls with the same function: 4 per MoE layer per micro-batch
    cfg = TrainingConfig(global_batch=16, micro_batch=1, seq=4096, dp=16, ep=16)
    est = estimate_training(arch, H100, cfg)
    per_rank = 4096 * op.experts_active * arch.hidden_size * 2.0
    expect = arch.num_layers * 4 * collective_s("all_to_all", H100, per_rank, 16, 1)
    assert est.ep_comm_s == pytest.approx(expect, rel=1e-9)


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at top level or inside functions (imports for type
    checkers only, under ``if TYPE_CHECKING:``, run nothing and are left out)."""
    out: set[str] = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
                   for n in ast.walk(node)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def _planner_modules() -> dict[str, Path]:
    mods = {}
    for p in PLANNER.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = p
    return mods


def test_only_the_layout_module_prices_collectives():
    users = sorted(name for name, p in _planner_modules().items() if "planner.collectives" in _imports(p))
    assert users == ["planner.layout"]


# ---------------------------------------------------------------------------
# No import cycle
# ---------------------------------------------------------------------------


def test_planner_import_graph_has_no_cycle():
    mods = _planner_modules()
    graph = {m: {d for d in _imports(p) if d in mods and d != m} for m, p in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(stack[stack.index(v):] + [v])
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, " ; ".join(" → ".join(c) for c in cycles)
    assert "planner.parallel" not in graph["planner.training"]


@pytest.mark.parametrize(
    "module",
    ["planner.layout", "planner.collectives", "planner.costmodel", "planner.parallel", "planner.training",
     "planner.training_config", "planner.training_ops", "planner.training_memory"],
)
def test_each_module_imports_on_its_own(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_layout_training_and_parallel_modules_are_small():
    for name in ("layout", "parallel", "collectives", "training", "training_config", "training_ops", "training_memory"):
        path = PLANNER / f"{name}.py"
        lines = path.read_text().splitlines()
        assert len(lines) <= 800, f"{path.name}: {len(lines)} lines"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                assert n <= 80, f"{path.name}:{node.name} is {n} lines"


# ---------------------------------------------------------------------------
# Tensor parallelism on devices without a peer link
# ---------------------------------------------------------------------------


def test_tp_over_the_network_costs_communication_where_there_is_no_peer_link():
    arch = load_arch("llama-3.1-8b")
    serving = Serving(batch=8, prompt=1024, gen=64)
    gh = load_device("gh200")
    gh4 = estimate_inference(arch, gh, Layout(tp=4), serving)
    h4 = estimate_inference(arch, H100, Layout(tp=4), serving)
    # GH200 has more bandwidth and the same tensor cores as H100, but four GH200 superchips
    # talk over InfiniBand, four H100s over NVLink
    assert gh4.prefill.comm_s > 0 and gh4.decode.comm_s > 0
    assert gh4.prefill.comm_s > 5 * h4.prefill.comm_s
    assert gh4.ttft_s > h4.ttft_s
    cpu = load_device("cpu-host")
    one = estimate_inference(arch, cpu, Layout(tp=1), serving)
    four = estimate_inference(arch, cpu, Layout(tp=4), serving)
    assert four.prefill.comm_s > 0
    assert four.ttft_s > one.ttft_s / 4 * 1.01  # no longer perfect scaling


def test_tp_on_a_phone_is_refused_identically_in_inference_and_training():
    arch = load_arch(SMALL)
    phone = load_device("iphone-15-pro")
    assert max_group(phone) == 1
    with pytest.raises(EstimateError) as inf:
        estimate_inference(arch, phone, Layout(tp=8), Serving(batch=1, prompt=128, gen=8))
    with pytest.raises(EstimateError) as tr:
        estimate_training(arch, phone, TrainingConfig(global_batch=1, seq=128, tp=8, activations="fp16", weights="fp16"))
    for e in (inf.value, tr.value):
        assert isinstance(e, TierwiseError) and e.field == "tp" and e.kind == "bad_input"
        assert "iphone-15-pro" in e.message and "supports only" in e.message
        assert "--tp 1" in e.render("cli")
    assert inf.value.message == tr.value.message


def test_tp_on_a_phone_exits_2_on_the_command_line(capsys):
    from planner.cli import main

    code = main(["estimate", "--model", SMALL, "--hardware", "iphone-15-pro", "--tp", "8"])
    err = capsys.readouterr().err
    assert code == 2 and "iphone-15-pro" in err


@pytest.mark.parametrize("hw", list_devices())
@pytest.mark.parametrize("dim", ["tp", "pp"])
def test_every_profile_prices_or_refuses_a_split_the_same_way_in_both_modes(hw, dim):
    arch = load_arch(SMALL)
    dev = load_device(hw)
    lay = Layout(**{dim: 2})
    fmt = "bf16" if dev.supports("bf16") != "unsupported" else "fp16"
    try:
        est = estimate_inference(arch, dev, lay, Serving(batch=2, prompt=64, gen=4), Choice(weights=fmt, activations=fmt, kv=fmt))
        inf_err = None
    except EstimateError as e:
        if e.field not in (dim,):
            pytest.skip(f"{hw} cannot run this model for another reason: {e.message}")
        inf_err = e
    try:
        estimate_training(arch, dev, TrainingConfig(global_batch=4, seq=64, weights=fmt, activations=fmt, **{dim: 2}))
        tr_err = None
    except EstimateError as e:
        if e.field != dim:
            tr_err = "other"
        else:
            tr_err = e
    if inf_err is None:
        # priced: the split costs communication
        assert est.prefill.comm_s > 0, f"{hw}: {dim}=2 priced with no communication"
        assert not isinstance(tr_err, EstimateError), f"{hw}: training refuses {dim}=2 but inference prices it"
    else:
        assert max_group(dev) == 1
        if tr_err != "other":
            assert isinstance(tr_err, EstimateError) and tr_err.message == inf_err.message


# ---------------------------------------------------------------------------
# Pipeline micro-batches of their true sizes
# ---------------------------------------------------------------------------


def test_microbatch_sizes_and_fill_drain():
    assert microbatch_sizes(5, 4) == [2, 1, 1, 1]
    assert microbatch_sizes(3, 4) == [1, 1, 1]
    assert microbatch_sizes(8, 4) == [2, 2, 2, 2]
    assert pipeline_time_s([2.0, 1.0, 1.0, 1.0], 4) == pytest.approx((5.0 + 3 * 2.0) / 4)
    # equal micro-batches: the GPipe bubble (m + p − 1)/p
    assert pipeline_time_s([1.0] * 4, 4) == pytest.approx(7 / 4)
    assert pipeline_time_s([3.0], 1) == 3.0


def test_pipeline_ttft_has_no_staircase():
    arch = load_arch("llama-3.1-8b")
    ttft = [estimate_inference(arch, H100, Layout(pp=4), Serving(batch=b, prompt=512, gen=4)).ttft_s for b in range(1, 9)]
    # batch 5 on 4 stages is micro-batches 2,1,1,1, not 2,2,2,2 (batch 8)
    assert ttft[4] < ttft[7] * 0.95
    assert all(a < b for a, b in zip(ttft, ttft[1:])), ttft


# ---------------------------------------------------------------------------
# Context parallelism in inference
# ---------------------------------------------------------------------------


def test_layout_counts_cp_devices_and_strides():
    lay = Layout(tp=2, cp=4, pp=2, dp=3)
    assert lay.devices == 48 and lay.model_parallel == 16
    st = strides(lay)
    assert (st.tp, st.cp, st.dp, st.pp) == (1, 2, 8, 24)
    check_layout(load_arch("llama-3.1-8b"), lay, 48)
    with pytest.raises(EstimateError) as e:
        check_layout(load_arch("llama-3.1-8b"), lay, 12)
    assert e.value.field == "devices" and "tp×cp×pp×dp" in e.value.message


def test_cp_split_balances_query_key_pairs():
    local, ctx = cp_split(4096, 4, causal=True)
    assert local == 1024 and local * (ctx + local / 2) == pytest.approx(4096 * 4096 / 2 / 4, rel=1e-3)
    local, ctx = cp_split(4096, 4, causal=False)
    assert local * (ctx + local) == pytest.approx(4096 * 4096 / 4)


def test_context_parallel_prefill_splits_the_sequence_and_shards_the_cache():
    arch = load_arch("llama-3.1-8b")
    serving = Serving(batch=1, prompt=32768, gen=16)
    one = estimate_inference(arch, H100, Layout(), serving)
    four = estimate_inference(arch, H100, Layout(cp=4), serving)
    # on NVLink the ring K/V exchange hides behind 8k-token attention; the decode combine does not
    assert four.prefill.comm_s == 0 and four.decode.comm_s > 0
    assert four.ttft_s < one.ttft_s / 2.5
    # over PCIe through the host, with a short prompt, the exchange is exposed
    slow = estimate_inference(arch, load_device("rtx-4090"), Layout(cp=4), Serving(batch=1, prompt=2048, gen=16))
    assert slow.prefill.comm_s > 0
    assert four.to_dict()["cp"] == 4 and four.to_dict()["devices"] == 4
    m1, _ = memory_report(arch, H100, Layout(), serving, Choice())
    m4, _ = memory_report(arch, H100, Layout(cp=4), serving, Choice())
    assert m4.kv_cache_bytes == pytest.approx(m1.kv_cache_bytes)  # whole cache unchanged
    kv1 = next(t.kv_cache_bytes for t in m1.tiers if t.role == "device")
    kv4 = next(t.kv_cache_bytes for t in m4.tiers if t.role == "device")
    assert kv4 == pytest.approx(kv1 / 4)
    # decode reads a quarter of the cache per rank
    att1 = sum(o.kv_bytes for o in one.decode.ops if o.kind == ATTENTION)
    att4 = sum(o.kv_bytes for o in four.decode.ops if o.kind == ATTENTION)
    assert att4 == pytest.approx(att1 / 4, rel=0.01)


def test_context_parallel_is_validated_like_tp_in_both_modes():
    t5 = load_arch("t5-3b")
    resnet = load_arch("resnet-50")
    for arch in [a for a in (t5, resnet) if a is not None]:
        with pytest.raises(EstimateError) as inf:
            estimate_inference(arch, H100, Layout(cp=2), Serving(batch=1, prompt=64, gen=4))
        with pytest.raises(EstimateError) as tr:
            estimate_training(arch, H100, TrainingConfig(global_batch=1, seq=64, cp=2))
        assert inf.value.field == tr.value.field == "cp" and inf.value.message == tr.value.message
    with pytest.raises(EstimateError) as e:
        estimate_inference(load_arch(SMALL), H100, Layout(cp=8), Serving(batch=1, prompt=4, gen=4))
    assert e.value.field == "cp" and "4 positions" in e.value.message
    with pytest.raises(EstimateError) as e:
        estimate_inference(load_arch(SMALL), load_device("iphone-15-pro"), Layout(cp=2), Serving(batch=1, prompt=64, gen=4))
    assert e.value.field == "cp"
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(EstimateError) as e:
            check_layout(load_arch(SMALL), Layout(cp=bad))
        assert e.value.field == "cp"


def _has(model_id: str) -> bool:
    try:
        load_arch(model_id)
        return True
    except Exception:
        return False
