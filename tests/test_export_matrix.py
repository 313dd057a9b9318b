"""Export is guaranteed: a plan made for an engine exports to that engine's files without
error, over every engine × catalog hardware it runs on × models (Llama, Mixtral, Qwen2,
Gemma-2, Phi-3, Falcon, MiniLM) × budgets (tests/export_matrix.py; size and result in
docs/export.md). The full matrix runs for minutes and is marked slow; a sample covering every
engine and every model runs always."""

from __future__ import annotations

import os

import pytest

from planner.engines import list_engines, load_engine
from tests.export_matrix import MODELS, cases, pairs, run


def test_the_sample_covers_every_serving_engine_and_every_model():
    sample = cases(sample=True)
    serving = {e for e in list_engines() if load_engine(e).kind != "training"}
    assert {e for e, _, _ in sample} == serving
    assert {m for _, _, m in sample} == set(MODELS)
    assert set((e, h) for e, h, _ in sample) <= set(pairs())


def test_sampled_export_matrix_has_no_failures():
    r = run(sample=True, budgets=2)
    print(r.summary())
    assert r.plans >= 20 and r.exports >= r.plans
    assert r.failures == [], "\n".join(r.failures[:20])
    _refusals_are_models_the_tool_does_not_build(r)


def _refusals_are_models_the_tool_does_not_build(r) -> None:
    """The refusals allowed: ExecuTorch's Llama recipe, or MLC LLM, for a model it does not build."""
    from planner.arch import load_arch
    from planner.export.executorch import _MODEL
    from planner.engines import load_engine

    builds = {"executorch": set(_MODEL), "mlc-llm": set(load_engine("mlc-llm").model_types)}
    for line in r.refused:
        engine, _, model = [p.strip() for p in line.split(":")[0].split("×")][:3]
        assert engine in builds and load_arch(model).model_type not in builds[engine], line


@pytest.mark.slow
def test_full_export_matrix_has_no_failures():
    # the triples are independent: one worker process per core, at most four (each holds its own catalog)
    r = run(workers=min(4, os.cpu_count() or 1))
    print(r.summary())
    assert r.pairs == len(pairs()) and r.plans > 1000
    assert r.failures == [], "\n".join(r.failures[:20])
    _refusals_are_models_the_tool_does_not_build(r)
    # a solve past the time limit on a loaded machine makes no plan (reported, not an export failure)
    assert len(r.timed_out) <= r.cases // 100, "\n".join(r.timed_out)
