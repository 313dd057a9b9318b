"""Engines run only the model families they declare (vLLM runs no CNN): every catalog model ×
every catalog device gets a default engine that runs the model's family or a clear refusal
naming ``engine``; an engine named for a family it does not run is refused, on the command
line (exit 2, ``--engine``) and over REST (422, ``'engine'``)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from hwmodels import list_devices, load_device
from hwmodels.errors import ProfileError
from planner.arch import list_models, load_arch
from planner.archspec import FAMILIES
from planner.engines import (
    FALLBACK_ORDER,
    EngineSupportError,
    default_engine,
    engines_for,
    list_engines,
    load_engine,
    load_engine_from_dict,
)

HARDWARE = list_devices()
MODELS = list_models()
#: One model per family, for the command-line and REST walks.
REPRESENTATIVES = {"decoder": "llama-3.2-1b", "encoder": "bert-base", "encoder_decoder": "t5-3b", "cnn": "resnet-50",
                   "vit": "vit-h"}


def _raw(engine_id: str) -> dict:
    from importlib import resources

    return yaml.safe_load((resources.files("profiles") / "engines" / f"{engine_id}.yaml").read_text())


def test_every_engine_declares_its_families_from_the_architecture_vocabulary_with_a_source():
    for engine_id in list_engines():
        spec = load_engine(engine_id)
        assert spec.families and set(spec.families) <= set(FAMILIES), engine_id
        for key in _raw(engine_id)["models"]["source"]:
            assert "http" in spec.sources[key], (engine_id, key)
    assert "cnn" not in load_engine("vllm").families and "encoder" in load_engine("vllm").families
    assert load_engine("vitis-ai").families == ("cnn",)
    assert set(load_engine("hf-transformers").families) == set(FAMILIES) == set(load_engine("fsdp").families)


@pytest.mark.parametrize("models, key", [
    ({"families": ["cnn", "rnn"], "source": ["V-HW"]}, "models.families"),
    ({"families": [], "source": ["V-HW"]}, "models.families"),
    ({"families": "decoder,encoder", "source": ["V-HW"]}, "models.families"),
    ({"families": ["decoder"], "source": ["NOPE"]}, "models.source"),
    ({"families": ["decoder"], "sorce": ["V-HW"]}, "models.sorce"),
    (["decoder"], "models"),
    (None, "models"),
])
def test_a_bad_models_block_is_a_profile_error_naming_its_key(models, key):
    data = _raw("vllm")
    if models is None:
        del data["models"]
    else:
        data["models"] = models
    with pytest.raises(ProfileError) as err:
        load_engine_from_dict(data, "vllm-custom.yaml")
    assert key in str(err.value)


@pytest.mark.parametrize("training", [False, True], ids=["serving", "training"])
def test_every_model_on_every_device_gets_an_engine_that_runs_its_family_or_a_clear_refusal(training):
    families = {m: load_arch(m).family for m in MODELS}
    answered = 0
    for hw in HARDWARE:
        dev = load_device(hw)
        for model, family in families.items():
            try:
                spec = default_engine(dev, training=training, kind=family)
            except EngineSupportError as exc:
                # no engine of this mode runs on the device at all: the hardware is what must change
                named = "engine" if engines_for(dev, training=training) else "hardware"
                assert exc.field == named and f"--{named}" in exc.render("cli"), (hw, model)
                assert not engines_for(dev, training=training, family=family), (hw, model)
                continue
            answered += 1
            assert family in spec.families, (hw, model, spec.id)
            assert spec.support(dev) is not None and (spec.kind == "training") == training, (hw, model, spec.id)
    assert answered >= len(HARDWARE) * len(MODELS) // 2


def test_the_class_default_is_kept_when_it_runs_the_family_and_the_fallback_order_otherwise():
    h100, phone, fpga = load_device("h100-sxm"), load_device("iphone-15-pro"), load_device("zcu102")
    assert default_engine(h100, kind="decoder").id == "vllm" == default_engine(h100, kind="encoder").id
    assert default_engine(h100, kind="cnn").id == FALLBACK_ORDER[0] == "hf-transformers"
    assert default_engine(h100, kind="encoder_decoder").id == "hf-transformers"
    assert default_engine(h100, training=True, kind="cnn").id == "fsdp"
    assert default_engine(h100, training=True, kind="decoder").id == "megatron-core"
    assert default_engine(phone, kind="cnn").id == "executorch"
    assert default_engine(fpga, kind="cnn").id == "vitis-ai"
    with pytest.raises(EngineSupportError) as err:
        default_engine(fpga, kind="decoder")
    assert err.value.field == "engine" and "decoder" in str(err.value)
    assert default_engine(h100).id == "vllm"  # no family given: the class default, as before


def _engine_of(text: str) -> str:
    return json.loads(text)["engine"]


@pytest.mark.parametrize("family", sorted(REPRESENTATIVES))
def test_cli_default_engine_runs_the_family_on_every_device(cli, family):
    model = REPRESENTATIVES[family]
    for hw in HARDWARE:
        r = cli("estimate", "--model", model, "--hardware", hw, "--batch", "1", "--prompt", "64", "--gen", "8",
                "--json")
        text = r.out + r.err
        assert r.code in (0, 2, 3) and "Traceback" not in text, (model, hw, text[-800:])
        if r.code == 0:
            assert family in load_engine(_engine_of(r.out)).families, (model, hw, r.out[-300:])
        elif "engine" in text:
            assert "--engine" in text, (model, hw, text)


@pytest.mark.parametrize("model, hw, engine", [
    ("resnet-50", "h100-sxm", "vllm"), ("mobilenet-v2", "l4", "trtllm"), ("t5-3b", "a100-80gb-sxm", "vllm"),
    ("vit-h", "h100-sxm", "sglang"), ("bert-base", "iphone-15-pro", "mlc-llm"), ("llama-3.2-1b", "zcu102", "vitis-ai"),
    ("resnet-50", "m2-max", "llamacpp"),
])
def test_cli_explicit_engine_that_does_not_run_the_family_is_refused(cli, model, hw, engine):
    family = load_arch(model).family
    r = cli("estimate", "--model", model, "--hardware", hw, "--engine", engine)
    assert r.code == 2, r.out + r.err
    assert "--engine" in r.err and family in r.err and engine in r.err, r.err
    for fit in engines_for(load_device(hw), training=False, family=family):
        assert fit in r.err


def test_cli_training_with_a_training_engine_that_does_not_run_cnns_is_refused(cli):
    r = cli("estimate", "--mode", "training", "--model", "resnet-50", "--hardware", "h100-sxm", "--engine",
            "megatron-core")
    assert r.code == 2 and "--engine" in r.err and "cnn" in r.err and "fsdp" in r.err, r.err


def test_docs_family_table_matches_the_profiles():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs/engines.md").read_text(encoding="utf-8")
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and re.fullmatch(r"`[a-z0-9-]+`", cells[0]):
            table[cells[0].strip("`")] = tuple(c.strip() for c in cells[1].split(","))
    assert {e: table.get(e) for e in list_engines()} == {e: load_engine(e).families for e in list_engines()}


def test_capacity_serve_default_runs_the_family_and_a_mismatch_is_refused(cli):
    args = ("capacity", "serve", "--model", "t5-3b", "--hardware", "h100-sxm", "--qps", "1", "--ttft-slo", "2",
            "--tpot-slo", "0.1")
    r = cli(*args, "--json")
    assert r.code == 0, r.err
    engines = {row["engine"] for row in json.loads(r.out)["hardware"]}
    assert engines and all("encoder_decoder" in load_engine(e).families for e in engines), engines
    r = cli(*args, "--engine", "vllm")
    assert r.code == 2 and "--engine" in r.err and "encoder_decoder" in r.err and "trtllm" in r.err, r.err


def test_the_default_engine_prefilter_agrees_with_parsing_every_profile():
    """default_engine reads only the files whose default_for line names the class; the answer
    is the one a scan of every parsed profile gives, for every catalog device and both modes."""
    from hwmodels import list_devices, load_device
    from planner.engines import _default_candidates, default_engine, list_engines, load_engine

    for hw in list_devices():
        dev = load_device(hw)
        for training, key in ((False, "default_for"), (True, "default_for_training")):
            full = [e for e in list_engines() if dev.device_class in getattr(load_engine(e), key)]
            assert [e for e in _default_candidates(key, dev.device_class) if e in full] == full, (hw, key)
            first = next((e for e in full if load_engine(e).support(dev) is not None), None)
            if first is not None:
                assert default_engine(dev, training=training).id == first, (hw, training)
