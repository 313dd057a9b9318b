"""Accuracy sensitivity sources (planner.sensitivity): prior, real weights, tables/files."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from planner.arch import load_arch
from planner.options import Option, decision_groups
from planner.sensitivity import (
    PriorSensitivity,
    SensitivityError,
    WeightsSensitivity,
    activation_noise,
    depth_factor,
    kv_noise,
    load_sensitivity_file,
    sensitivity_from_spec,
    table_from_scores,
    weight_noise,
)
from planner.workload import build_workload


@pytest.fixture(scope="module")
def groups():
    return decision_groups(build_workload(load_arch("llama-3.2-1b")))


def test_sixteen_bit_options_cost_nothing():
    assert weight_noise("bf16") == 0.0 and weight_noise("fp16") == 0.0
    assert activation_noise("bf16") == 0.0 and kv_noise("bf16") == 0.0


def test_weight_noise_follows_bits_and_group_size():
    # Uniform quantisation noise ∝ step² ∝ 4^-bits: each bit removed costs ≈ 4× the noise
    # (±35 % on a finite N(0, 1) sample with absmax scales), and smaller groups track the
    # local range better (GPTQ/AWQ use g128 over per-channel for that reason).
    int8, int4, int3 = weight_noise("int8"), weight_noise("int4-g128"), weight_noise("int3-g128")
    assert int8 < int4 < int3
    assert 2.6 < int3 / int4 < 6.0
    assert weight_noise("int4-g32") < weight_noise("int4-g64") < weight_noise("int4-g128")
    # Relative MSE of int8 per-channel on N(0, 1) rows of 4096: step = absmax/127 with
    # absmax ≈ 3.9σ, noise = step²/12 ≈ 7.9e-5 (±30 %).
    assert int8 == pytest.approx(7.9e-5, rel=0.3)
    # NF4 is information-theoretically tuned to normal weights (QLoRA §3): below int4-g64.
    assert weight_noise("nf4") < weight_noise("int4-g64")
    # 2:4 magnitude pruning drops the smaller half of every 4: far noisier than 8-bit.
    assert weight_noise("int8", "2:4") > 100 * int8


def test_activation_outliers_penalise_per_token_int8_more_than_fp8():
    # LLM.int8() §4 / SmoothQuant §3: a few 100× outlier channels set a per-token int8 scale
    # that drowns the ordinary channels; fp8's exponent keeps them.
    assert activation_noise("int8") > 20 * activation_noise("fp8-e4m3")
    assert activation_noise("int8") > 0.05


def test_depth_factor_shape():
    assert depth_factor(0.0) == pytest.approx(2.0, abs=1e-4)
    assert depth_factor(1.0) == pytest.approx(2.0, abs=1e-4)
    assert depth_factor(0.5) == pytest.approx(1 + 2 * math.exp(-5))
    assert depth_factor(0.2) == pytest.approx(depth_factor(0.8))


def test_prior_scores_are_role_times_depth_times_size_times_noise(groups):
    opts = [(Option(weights="bf16"), Option(weights="int8"), Option(weights="int4-g128"))] * len(groups)
    s = PriorSensitivity().scores(groups, opts)
    by = {g.fqn: v for g, v in zip(groups, s.values)}
    info = {g.fqn: g for g in groups}
    assert all(v[0] == 0.0 for v in s.values)
    mid_in = by["model.layers.8.mlp.gate_up"]
    mid_out = by["model.layers.8.mlp.down_proj"]
    first = by["model.layers.0.mlp.gate_up"]
    # down_proj role factor 1.5 × the square root of the size ratio (gate_up holds twice the weights)
    size = (info["model.layers.8.mlp.down_proj"].params / info["model.layers.8.mlp.gate_up"].params) ** 0.5
    assert size == pytest.approx(0.5 ** 0.5)
    assert mid_out[2] / mid_in[2] == pytest.approx(1.5 * size)
    assert first[2] > 1.5 * mid_in[2]  # first layer ≈ 2× the middle
    assert mid_in[2] / mid_in[1] == pytest.approx(weight_noise("int4-g128") / weight_noise("int8"))
    assert PriorSensitivity().kv_score("int8", groups) < PriorSensitivity().kv_score("int4-g64", groups)


def test_weights_source_measures_real_tensors(groups):
    # Heavy-tailed weights (Student-t, ν = 3) have outliers that inflate absmax scales: int4
    # error relative to the weights' power is larger than on normal weights.
    torch.manual_seed(0)
    pick = [gr for gr in groups if gr.fqn.startswith("model.layers.0.")][:2]
    tensors = {}
    for gr in pick:
        for fqn, op in zip(gr.member_fqns, gr.members):
            t = torch.distributions.StudentT(3.0).sample((op.out_features, op.in_features))
            tensors[fqn + ".weight"] = t.to(torch.bfloat16)  # checkpoints are stored in 16 bits
    src = WeightsSensitivity(tensors=tensors, max_rows=64)
    opts = [(Option(weights="bf16"), Option(weights="int4-g128"))] * len(pick)
    measured = src.scores(pick, opts)
    prior = PriorSensitivity().scores(pick, opts)
    for m, p in zip(measured.values, prior.values):
        assert m[0] == 0.0
        assert m[1] > 1.2 * p[1]
    assert src.source == "weights"
    # Groups without tensors fall back to the prior and say so.
    partial = src.scores(groups[:5], [(Option(weights="int8"),)] * 5)
    assert "no tensor" in partial.notes[0]


def test_table_overrides_and_falls_back(groups):
    table = table_from_scores({"model.layers.*.mlp.down_proj": {"int8": 0.5}, "model.embed_tokens": {"int8": 0.25}},
                              kv={"int8": 0.125}, source="data")
    opts = [(Option(weights="bf16"), Option(weights="int8"), Option(weights="int4-g128"))] * len(groups)
    s = table.scores(groups, opts)
    by = {g.fqn: v for g, v in zip(groups, s.values)}
    assert by["model.layers.5.mlp.down_proj"][1] == 0.5
    assert by["model.embed_tokens"][1] == 0.25
    assert by["model.layers.5.mlp.down_proj"][0] == 0.0  # 16-bit reference
    prior = PriorSensitivity().scores(groups, opts)
    i = [g.fqn for g in groups].index("model.layers.5.mlp.gate_up")
    assert by["model.layers.5.mlp.gate_up"][2] == pytest.approx(prior.values[i][2])
    assert "come from the prior" in s.notes[0]
    assert table.kv_score("int8", groups) == 0.125


def test_sensitivity_file_loader(tmp_path, groups):
    path = tmp_path / "sens.yaml"
    path.write_text(
        "version: 1\nmetric: kl\nsource: measured\n"
        "groups:\n  'model.layers.*.self_attn.qkv': {int8: 0.002, 'int4-g128': 0.03, 'int8/int8': 0.4}\n"
        "kv: {fp8: 0.01}\n")
    src = sensitivity_from_spec(str(path))
    assert src.source == "file:sens.yaml"
    opts = [(Option(weights="int8"), Option(weights="int8", activations="int8"))] * len(groups)
    s = src.scores(groups, opts)
    i = [g.fqn for g in groups].index("model.layers.2.self_attn.qkv")
    assert list(s.values[i]) == [0.002, 0.4]
    assert src.kv_score("fp8-e4m3", groups) == 0.01


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 2\ngroups: {a: {int8: 1}}\n", "'version' must be 1"),
        ("version: 1\ngroups: {a: {int8: -1}}\n", "must be a finite number >= 0"),
        ("version: 1\ngroups: {a: {int5: 1}}\n", "unknown format 'int5'"),
        ("version: 1\ngroups: {}\n", "'groups' must map"),
        ("version: 1\ngroups: {a: {int8: 1}}\nextra: 1\n", "unknown keys extra"),
        ("version: 1\ngroups: [\n", "not valid YAML"),
    ],
)
def test_bad_sensitivity_files(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(SensitivityError, match=message):
        load_sensitivity_file(path)


def test_spec_errors():
    with pytest.raises(SensitivityError, match="no such file"):
        sensitivity_from_spec("/nonexistent/sens.yaml")
    assert isinstance(sensitivity_from_spec("prior"), PriorSensitivity)
    assert isinstance(sensitivity_from_spec(None), PriorSensitivity)


def test_prior_is_deterministic():
    a = np.array([weight_noise(f) for f in ("int4-g128", "cb4", "nvfp4", "mxfp4")])
    weight_noise.cache_clear()
    b = np.array([weight_noise(f) for f in ("int4-g128", "cb4", "nvfp4", "mxfp4")])
    assert np.array_equal(a, b)
