"""Ids are bare names, by one rule (hwmodels.ids) on every front door.

A model's ``_id`` becomes file names (``<model>.pte``, ``<model>-tierwise/``) and lines of the scripts an
export writes (``# vLLM server for plan of <model>``). The CLI and Python took any ``_id``: one with a newline
wrote its second line into serve.sh as a shell command, and ``../../x`` named files outside the export folder.
REST already held its ids to the pattern.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwmodels.ids import ID_RE, id_from_name, is_id
from planner.arch import load_arch
from planner.archspec import ModelConfigError

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "profiles" / "models" / "llama-3.2-1b.json"


def _config(tmp_path: Path, name: str, **changes) -> Path:
    cfg = json.loads(MODEL.read_text(encoding="utf-8"))
    cfg.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        cfg.pop(key)
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


@pytest.mark.parametrize("bad", ["evil\ntouch /tmp/x", "../../etc/passwd", "a b", "x" * 65, "-lead", "zero\u200bwidth",
                                 "ok\n", 7])
def test_a_models_own_id_that_is_not_a_bare_name_is_refused_naming_it(tmp_path, bad):
    path = _config(tmp_path, "m.json", _id=bad)
    with pytest.raises(ModelConfigError) as exc:
        load_arch(str(path))
    assert exc.value.field == "_id"


def test_the_cli_refuses_it_with_exit_2_before_writing_any_plan(cli, tmp_path):
    path = _config(tmp_path, "inj.json", _id="evil\ntouch /tmp/tierwise-pwned")
    out = tmp_path / "p.yaml"
    r = cli("plan", "--model", path, "--hardware", "l40s", "--engine", "vllm", "--out", out)
    assert r.code == 2, r.err
    assert "'_id'" in r.err and "Traceback" not in r.err
    assert not out.exists()


def test_an_id_made_from_a_folder_or_file_name_is_a_bare_name(tmp_path):
    folder = _config(tmp_path, "my model (v2)/config.json", _id=None).parent
    assert load_arch(str(folder)).id == "my-model-v2"
    assert load_arch(str(_config(tmp_path, "Llama-3.1-8B.json", _id=None))).id == "Llama-3.1-8B"
    assert id_from_name("\n\n") == "model" and id_from_name("a/../b") == "a-..-b" and is_id(id_from_name("x" * 200))


def test_an_exported_plan_whose_ids_are_not_bare_names_is_refused(tmp_path):
    import planner
    from planner.export.core import ExportError, plan_view
    from planner.plan import plan_to_dict

    d = plan_to_dict(planner.plan("llama-3.2-1b", "l40s", engine="vllm", batch=1, prompt=16, gen=4))
    assert plan_view(d).model == "llama-3.2-1b"
    for key, bad in (("model", "evil\nrm -rf ~"), ("model", "../up"), ("hardware", "l40s\n")):
        with pytest.raises(ExportError) as exc:
            plan_view({**d, key: bad})
        assert exc.value.field == key


def test_engine_and_hardware_ids_follow_the_rule(tmp_path):
    from hwmodels.errors import ProfileError
    from planner.engines import load_engine

    text = (REPO / "profiles" / "engines" / "vllm.yaml").read_text(encoding="utf-8")
    bad = tmp_path / "odd.yaml"
    bad.write_text(text.replace("id: vllm", "id: \"vllm\\u200b\"", 1), encoding="utf-8")
    with pytest.raises(ProfileError) as exc:
        load_engine(str(bad))
    assert "id" in str(exc.value)
    from dataclasses import replace

    from hwmodels import load_device

    with pytest.raises(Exception) as exc2:
        replace(load_device("l40s"), id="l40s\n")
    assert "id" in str(exc2.value)
    assert ID_RE.fullmatch("l40s\n") is None


def test_a_model_config_with_an_integer_past_4300_digits_is_refused_naming_the_key(cli, tmp_path):
    """It was "internal error: ValueError: Exceeds the limit (4300 digits)" with exit 1."""
    path = _config(tmp_path, "big.json", vocab_size=1)
    path.write_text(path.read_text(encoding="utf-8").replace('"vocab_size": 1', '"vocab_size": ' + "9" * 5000), encoding="utf-8")
    r = cli("estimate", "--model", path, "--hardware", "l40s")
    assert r.code == 2 and "'vocab_size'" in r.err and "5000 digits" in r.err and "internal error" not in r.err, r.err
