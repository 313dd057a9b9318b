"""The shipped format-noise table equals the live measurement it replaces."""

from __future__ import annotations

import json

import pytest

from planner import format_noise as fn
from planner.formats import list_formats


def test_table_covers_every_registry_format():
    data = json.loads(fn.TABLE_PATH.read_text())
    assert data["reference"] == fn.REFERENCE
    want_w = {f"{f.name}|{sp}" for f in list_formats(role="weight") for sp in fn.TABLE_SPARSITIES}
    assert set(data["weight"]) == want_w
    plain = {f.name for f in list_formats(role="activation")}
    # vLLM's and SGLang's SmoothQuant (activation_smoothing), llama.cpp's CPU Q8_0 / Q8_K blocks (activation_blocks)
    assert fn.table_recipes() == ((None, 32), (None, 256), (0.8, None))
    recipes = {fn.activation_key(f, sm, b) for sm, b in fn.table_recipes() for f in plain if fn.smoothable(f)}
    assert set(data["activation"]) == plain | recipes
    assert set(data["kv"]) == {f.name for f in list_formats() if f.is_kv}


@pytest.mark.parametrize("fmt,sp", [("int8", "dense"), ("int4-g128", "dense"), ("nf4", "dense"), ("nvfp4", "dense"),
                                    ("mxfp6", "dense"), ("fp8-e4m3", "2:4"), ("int3-g64-zp", "dense"),
                                    ("cb4", "dense"), ("bf16", "2:4"), ("int8", "unstructured:0.5")])
def test_weight_entries_match_live_quantisation(fmt, sp):
    shipped = fn._table()["weight"][f"{fmt}|{sp}"]
    assert shipped == pytest.approx(fn.measure_weight_noise(fmt, sp), rel=1e-6, abs=1e-12)


@pytest.mark.parametrize("fmt", ["int8", "fp8-e4m3", "int4-g128"])
def test_activation_entries_match_live_quantisation(fmt):
    assert fn._table()["activation"][fmt] == pytest.approx(fn.measure_activation_noise(fmt), rel=1e-6)


@pytest.mark.parametrize("fmt,sm,block", [("int8", 0.8, None), ("int4-g128", 0.8, None), ("int8", None, 32),
                                          ("int8", None, 256)])
def test_recipe_activation_entries_match_live_quantisation(fmt, sm, block):
    key = fn.activation_key(fmt, sm, block)
    assert fn._table()["activation"][key] == pytest.approx(fn.measure_activation_noise(fmt, sm, block), rel=1e-6)


def test_activation_blocks_confine_an_outlier_to_its_block():
    """One scale per 32 features (llama.cpp's Q8_0) leaves the ordinary channels of the 6 outlier-free
    blocks in 128 at int8's own noise; per 256 (Q8_K) more blocks meet an outlier; per token all do."""
    per32, per256, per_token = (fn.activation_noise("int8", None, b) for b in (32, 256, None))
    assert per32 < per256 < per_token
    assert per32 < per_token / 50 and per256 < per_token / 5
    assert fn.activation_noise("fp8-e4m3", None, 32) == fn.activation_noise("fp8-e4m3")
    with pytest.raises(ValueError, match="divide"):
        fn.measure_activation_noise("int8", None, 3000)


def test_smoothing_trades_activation_noise_for_weight_noise():
    """SmoothQuant's migration removes most of per-token int8's outlier noise on the reference; the
    stronger the migration, the more of the range the int8 weights carry. Float formats are not smoothed."""
    plain = fn.activation_noise("int8")
    by_alpha = {a: fn.measure_activation_noise("int8", a) for a in (0.5, 0.8, 1.0)}
    assert by_alpha[0.5] < plain / 20
    assert by_alpha[0.5] < by_alpha[0.8] < plain
    # alpha = 1 moves all of the outliers' range into weight columns an int8 row scale then drowns
    assert by_alpha[1.0] > plain
    assert fn.activation_noise("fp8-e4m3", 0.8) == fn.activation_noise("fp8-e4m3")
    assert fn.activation_noise("bf16", 0.8) == 0.0


def test_a_strength_the_table_lacks_is_measured_live():
    fn.activation_noise.cache_clear()
    assert "int8|sq0.5" not in fn._table()["activation"]
    assert fn.activation_noise("int8", 0.5) == pytest.approx(fn.measure_activation_noise("int8", 0.5))


@pytest.mark.parametrize("fmt", ["int8", "fp8-e5m2", "int4-g64"])
def test_kv_entries_match_live_quantisation(fmt):
    assert fn._table()["kv"][fmt] == pytest.approx(fn.measure_kv_noise(fmt), rel=1e-6)


def test_missing_key_is_measured_live():
    fn.weight_noise.cache_clear()
    assert "int8|unstructured:0.3" not in fn._table()["weight"]
    assert fn.weight_noise("int8", "unstructured:0.3") == pytest.approx(
        fn.measure_weight_noise("int8", "unstructured:0.3"))


def test_table_from_other_reference_is_ignored(tmp_path, monkeypatch):
    bad = {"reference": {**fn.REFERENCE, "seed": 1}, "weight": {"int8|dense": 123.0}, "activation": {}, "kv": {}}
    path = tmp_path / "t.json"
    path.write_text(json.dumps(bad))
    monkeypatch.setattr(fn, "TABLE_PATH", path)
    fn._table.cache_clear()
    try:
        assert fn._table()["weight"] == {}
    finally:
        fn._table.cache_clear()


def test_prior_uses_no_torch_for_tabled_formats():
    import subprocess
    import sys

    code = ("import sys; from planner.format_noise import weight_noise, activation_noise, kv_noise; "
            "weight_noise('int4-g128'); weight_noise('int8', '2:4'); activation_noise('int8'); "
            "activation_noise('int8', 0.8); kv_noise('fp8-e4m3'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
