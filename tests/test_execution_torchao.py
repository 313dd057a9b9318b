"""The optional torchao backend (skipped when torchao is not installed)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("torchao")

from planner.backends import sqnr_db  # noqa: E402
from planner.execution.apply import apply_plan, compressed_modules  # noqa: E402
from planner.execution.errors import PlanApplyError  # noqa: E402
from planner.execution.torchao_backend import apply_plan_torchao  # noqa: E402


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 64))


@pytest.mark.parametrize("choice", [{"weights": "int8"}, {"weights": "int8", "activations": "int8"},
                                    {"weights": "int4-g32"}])
def test_torchao_agrees_with_the_builtin_backend(choice):
    model = _model()
    x = torch.randn(8, 256, generator=torch.Generator().manual_seed(1))
    plan = {"0": choice, "2": choice}
    with torch.no_grad():
        ref = model(x)
        ours = apply_plan(model, plan)(x)
        theirs = apply_plan_torchao(model, plan)(x)
    s_ours, s_theirs = sqnr_db(ref, ours), sqnr_db(ref, theirs)
    # Same format, same scaling rule (symmetric absmax per channel / per group): SQNRs within 3 dB.
    assert abs(s_ours - s_theirs) < 3.0, (s_ours, s_theirs)
    assert type(model[0]) is nn.Linear and not compressed_modules(model)


def test_torchao_refuses_what_it_does_not_map():
    with pytest.raises(PlanApplyError, match="no torchao mapping for weights 'nf4'"):
        apply_plan_torchao(_model(), {"0": {"weights": "nf4"}})
    with pytest.raises(PlanApplyError, match="dense weights only"):
        apply_plan_torchao(_model(), {"0": {"weights": "int8", "sparsity": "2:4"}})
