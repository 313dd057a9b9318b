"""One numeric-choice type: the cost model's Choice, the planner's Option, a plan's GroupChoice
and the torch handlers' LayerOption are all planner.numerics.Numerics."""

import dataclasses

import pytest

from planner.costmodel import Choice, EstimateError, RuntimeSettings
from planner.execution.apply import LayerOption, PlanApplyError
from planner.numerics import Numerics, numerics_key
from planner.options import Option, OptionError, option_key
from planner.plan import GroupChoice, PlanError


def test_every_numeric_choice_is_a_numerics():
    for cls in (Choice, Option, GroupChoice, LayerOption):
        assert issubclass(cls, Numerics)
    shared = {f.name for f in dataclasses.fields(Numerics)}
    assert shared == {"weights", "activations", "sparsity", "low_rank"}
    # Each adds only what it genuinely carries.
    assert {f.name for f in dataclasses.fields(Choice)} - shared == {"kv"}
    assert {f.name for f in dataclasses.fields(GroupChoice)} - shared == {"tier"}
    assert {f.name for f in dataclasses.fields(Option)} == shared == {f.name for f in dataclasses.fields(LayerOption)}


def test_one_key_and_one_conversion_to_the_cost_model():
    g = GroupChoice(weights="int4", sparsity="dense", activations="bf16", tier="hbm", low_rank=256)
    o = Option(weights="int4", low_rank=256)
    assert g.key == o.key == option_key("int4", low_rank=256) == numerics_key("int4", low_rank=256) == "int4-g128@r256"  # int4 is an alias of int4-g128
    c = g.to_choice("fp8")
    assert c == Choice.of(o, kv="fp8") == Choice(weights="int4-g128", kv="fp8", low_rank=256)
    assert "kv" not in g.keys() and "kv" not in g.to_dict()
    assert Option(weights="int8", activations="int8").key == "int8/int8" and not Option(weights="int8", activations="int8").weight_only


@pytest.mark.parametrize(("build", "error"), [
    (lambda: Choice(low_rank=0), EstimateError),
    (lambda: Option(weights="int4", low_rank=0), OptionError),
    (lambda: GroupChoice(weights="int4", tier="hbm", low_rank=True), PlanError),
    (lambda: LayerOption(weights="int4", low_rank=-1), PlanApplyError),
    (lambda: GroupChoice(weights="int44", tier="hbm"), PlanError),
    (lambda: LayerOption(weights="int4", sparsity="2:4", low_rank=8), PlanApplyError),
])
def test_each_front_keeps_its_own_error(build, error):
    with pytest.raises(error):
        build()


def test_runtime_settings_is_not_the_options_module():
    import planner.costmodel as cm

    assert not hasattr(cm, "Options")
    assert RuntimeSettings(runtime="eager").host_overhead_s > RuntimeSettings().host_overhead_s == 0.0
