"""Measured sensitivity swaps one group's packed layers into the model in place: the same
outputs as a compressed copy from apply_plan, and the model is left as it was."""

from __future__ import annotations

import torch

from planner.execution.apply import apply_plan
from planner.execution.models import load_torch_model
from planner.execution.sensitivity_data import _swapped
from planner.execution.validate import _run


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_swap_matches_apply_plan_and_restores_the_model():
    tm = load_torch_model("digits-cnn")
    inputs = tm.make_inputs(16, 0)
    before = _state(tm.module)
    modules_before = dict(tm.module.named_modules())
    for group, weights, sparsity in (("model.conv2", "int4-g32", "dense"), ("model.classifier", "int8", "2:4")):
        choice = {group: {"weights": weights, "sparsity": sparsity, "activations": "fp32"}}
        want = _run(tm, apply_plan(tm.module, choice, arch=tm.arch), inputs).out
        with _swapped(tm, choice) as compressed:
            got = _run(tm, compressed, inputs).out
        assert torch.equal(got, want)
    assert dict(tm.module.named_modules()).keys() == modules_before.keys()
    assert all(a is b for a, b in zip(dict(tm.module.named_modules()).values(), modules_before.values()))
    after = _state(tm.module)
    assert all(torch.equal(before[k], after[k]) for k in before)
