"""`tierwise sensitivity`'s fast path (replayed prefix, fake-quantised weights, embedding rows
read, unpadded length buckets) gives the scores of the reference path — one full forward pass
of the packed model per (group, option) — exactly; its pieces are checked on their own."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from planner.backends.grids import minifloat_magnitudes, round_to_minifloat
from planner.backends.quantize import _round_minifloat, fake_quantize, quantize_tensor, rows_independent
from planner.cli import main
from planner.deadline import Cancelled, Deadline, DeadlineExceeded
from planner.execution.models import load_torch_model
from planner.execution.replay import ForwardTrace
from planner.execution.sensitivity_data import _batches, default_threads, measure_sensitivity
from planner.formats import format_names, get_format

WEIGHT_FORMATS = [f for f in format_names() if get_format(f).is_weight]


@pytest.fixture(autouse=True, scope="module")
def _threads():
    # As `tierwise sensitivity` does on a shared machine (default_threads): one thread per idle core.
    before = torch.get_num_threads()
    torch.set_num_threads(default_threads())
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def minilm():
    return load_torch_model("all-minilm-l6-v2")


def test_fast_scores_equal_the_reference_path_on_minilm(minilm):
    # One group of every kind the fast path treats differently: an embedding table (rows read
    # only), the first layer's fused qkv (no prefix), a late output projection (long prefix),
    # an attention output (the attention itself replayed) and the pooler (never called).
    groups = ["bert.embeddings.word_embeddings", "bert.encoder.layer.0.attention.self.qkv",
              "bert.encoder.layer.3.attention.output.dense", "bert.encoder.layer.5.output.dense", "bert.pooler.dense"]
    formats = ["int4-g64", "fp8-e4m3"]  # the embedding's rows alone / the whole table (per-tensor scale)
    fast = measure_sensitivity(minilm, formats, groups=groups, samples=4, seed=3)
    ref = measure_sensitivity(minilm, formats, groups=groups, samples=4, seed=3, fast=False)
    assert fast.scores == ref.scores
    assert all(len(row) == len(formats) for row in fast.scores.values())
    assert all(v > 0 for g, row in fast.scores.items() if g != "bert.pooler.dense" for v in row.values())
    assert set(fast.scores["bert.pooler.dense"].values()) == {0.0}  # mean pooling never calls it


def test_fast_scores_equal_the_reference_path_on_a_cnn_with_sparsity():
    # 2:4 options go through the packed modules (no weight swap); conv1 has no 2:4 entry.
    tm = load_torch_model("digits-cnn")
    args = (tm, ["int8", "int4-g32", "mxfp4"], ["dense", "2:4"])
    fast = measure_sensitivity(*args, samples=16)
    ref = measure_sensitivity(*args, samples=16, fast=False)
    assert fast.scores == ref.scores
    assert "int8+2:4" not in fast.scores["model.conv1"] and "int8+2:4" in fast.scores["model.conv2"]


def test_model_is_left_as_it_was(minilm):
    before = {k: v.clone() for k, v in minilm.module.state_dict().items()}
    modules = dict(minilm.module.named_modules())
    measure_sensitivity(minilm, ["int3-g64"], groups=["bert.encoder.layer.1.intermediate.dense",
                                                     "bert.embeddings.token_type_embeddings"], samples=4)
    assert all(a is b for a, b in zip(dict(minilm.module.named_modules()).values(), modules.values()))
    assert not any("forward" in m.__dict__ for m in minilm.module.modules())
    after = minilm.module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("fmt", WEIGHT_FORMATS)
def test_fake_quantize_is_the_packed_round_trip(fmt):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(23, 200, generator=g) * 0.05  # 200 columns: a ragged tail group for g64/g128
    w[4] = 0.0
    w[7, :50] *= 300.0
    want = quantize_tensor(w, fmt).dequantize()
    got = fake_quantize(w, fmt)
    assert torch.equal(got, want)
    rows = torch.tensor([0, 4, 7, 22])
    if rows_independent(fmt):
        assert torch.equal(fake_quantize(w[rows], fmt), want[rows])


def test_rows_independent_is_false_where_a_tensor_statistic_couples_rows():
    w = torch.full((8, 64), 0.3)
    w[0, 0] = 100.0  # fp8's per-tensor scale comes from row 0
    assert not rows_independent("fp8-e4m3")
    assert not torch.equal(fake_quantize(w[1:], "fp8-e4m3"), fake_quantize(w, "fp8-e4m3")[1:])
    assert not any(rows_independent(f) for f in ("nvfp4", "nf4-dq", "cb4", "cb4-g4096"))
    assert all(rows_independent(f) for f in ("int8", "int4-g128", "int4-g128-zp", "mxfp4", "nf4", "bfp8", "bf16"))


@pytest.mark.parametrize("em", [(4, 3), (5, 2), (2, 1), (3, 2)])
def test_fast_minifloat_rounding_is_the_grid_code_for_code(em):
    e, m = em
    mags = torch.tensor(minifloat_magnitudes(e, m))
    mids = (mags[1:] + mags[:-1]) / 2
    up, down = torch.tensor(1e30), torch.tensor(-1.0)
    g = torch.Generator().manual_seed(0)
    x = torch.cat([mags, mids, torch.nextafter(mids, up), torch.nextafter(mids, down), mags * 1.7,
                   torch.rand(20000, generator=g) * mags[-1] * 1.2, torch.exp(torch.randn(20000, generator=g) * 6),
                   torch.tensor([0.0, -0.0, 1e-30, 1e30])])
    x = torch.cat([x, -x])
    assert torch.equal(_round_minifloat(x, e, m), round_to_minifloat(x, e, m))


def test_trace_replays_the_prefix_and_only_what_is_safe():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.c, self.shared = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            y = self.a(x)
            y = self.shared(y)
            z = self.b(y)
            z.mul_(2.0)  # b's output is changed in place: not what b returned
            return self.c(self.shared(z))

    torch.manual_seed(0)
    model = Twice()
    x = torch.randn(3, 4)
    trace = ForwardTrace(model, (x,))
    assert trace.replay_set([model.c]) == ["a"]  # shared runs twice, b was modified in place
    assert trace.replay_set([model.a]) == []
    with torch.no_grad():
        model.c.weight.mul_(0.5)
        want = model(x)
    with trace.replaying([model.c]) as replayed:
        assert replayed == ["a"]
        got = trace.run()
    assert torch.equal(got, want)
    assert "forward" not in model.a.__dict__
    assert trace.reaches([model.c])


def test_buckets_cover_every_text_once_without_padding_beyond_ten_percent(minilm):
    ids, mask = minilm.make_inputs(12, 5)
    batches = _batches(minilm, (ids, mask))
    rows = torch.cat([r for r, _ in batches])
    assert sorted(rows.tolist()) == list(range(12))
    for r, (bids, bmask) in batches:
        assert torch.equal(bids, ids[r, : bids.shape[1]]) and torch.equal(bmask, mask[r, : bmask.shape[1]]) and int(mask[r, bmask.shape[1]:].sum()) == 0
        real = int(bmask.sum())
        assert bmask.numel() <= 1.1 * real or len(r) == 1


def test_deadline_and_cancel_stop_the_measurement(minilm):
    dl = Deadline(None)
    dl.cancel()
    with pytest.raises(Cancelled):
        measure_sensitivity(minilm, ["int8"], samples=2, deadline=dl)
    with pytest.raises(DeadlineExceeded):
        measure_sensitivity("digits-cnn", ["int8"], samples=2, deadline=Deadline(0.0))


def test_cli_time_limit_and_threads(tmp_path, capsys):
    out = tmp_path / "s.yaml"
    assert main(["sensitivity", "--torch-model", "digits-cnn", "--formats", "int8", "--samples", "4",
                 "--time-limit", "0", "--out", str(out)]) == 3
    assert "--time-limit" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sensitivity", "--torch-model", "digits-cnn", "--formats", "int8", "--samples", "4",
                 "--threads", "1", "--out", str(out)]) == 0
    assert main(["sensitivity", "--torch-model", "digits-cnn", "--formats", "int8", "--threads", "0",
                 "--out", str(out)]) == 2
    assert 1 <= default_threads() <= (os.cpu_count() or 1)


def test_fast_scores_equal_the_reference_path_on_a_decoder_with_tied_head():
    # Decoders run whole (their forward pass carries a KV cache); Llama-3.2-1B ties its head
    # to the embedding table, so that group goes through the packed layers.
    tm = load_torch_model("llama-3.2-1b@layers=1,vocab=512")
    groups = ["model.embed_tokens", "model.layers.0.self_attn.o_proj"]
    fast = measure_sensitivity(tm, ["int4-g32", "fp8-e4m3"], groups=groups, samples=2, kv_formats=["int8"])
    ref = measure_sensitivity(tm, ["int4-g32", "fp8-e4m3"], groups=groups, samples=2, kv_formats=["int8"],
                              fast=False)
    assert fast.scores == ref.scores and fast.kv == ref.kv
    assert all(v > 0 for row in fast.scores.values() for v in row.values())
