"""A key given twice in one mapping is refused, naming the key and where, in every file and body a
user writes: hardware and engine profiles, model configs, plan files, sensitivity tables, and YAML
sent to the REST service (tests/api/test_safeyaml.py). PyYAML and ``json`` keep the last silently, so a profile edited at its
first ``memory_fraction`` would otherwise be read at its second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwmodels.safeyaml import UnsafeYamlError, load_untrusted
from planner.fileio import DuplicateKeyError, parse_document

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure-python"])
@pytest.mark.parametrize("text, key, line", [
    ("a: 1\nb: 2\na: 3\n", "a", 3),
    ("outer:\n  x: 1\n  y: 2\n  x: 1\n", "x", 4),       # the same value twice is still refused
    ("- {k: 1, k: 2}\n", "k", 1),
    ("a:\n  - b: {c: 1}\n    b: 2\n", "b", 3),
])
def test_untrusted_yaml_refuses_a_key_given_twice(monkeypatch, libyaml, text, key, line):
    if libyaml and not getattr(yaml, "__with_libyaml__", False):
        pytest.skip("PyYAML built without libyaml")
    monkeypatch.setattr(yaml, "__with_libyaml__", libyaml)
    with pytest.raises(UnsafeYamlError) as e:
        load_untrusted(text, field="hardware")
    msg = str(e.value)
    assert e.value.field == "hardware" and e.value.code == "invalid_yaml"
    assert f"key {key!r} is given twice (again at line {line}," in msg and "give each key once" in msg, msg


def test_distinct_keys_that_look_alike_are_kept():
    # YAML's 1 and '1' are different keys; so are keys in different mappings
    assert load_untrusted("a: {1: x, '1': y}\nb: {a: 1}\n") == {"a": {1: "x", "1": "y"}, "b": {"a": 1}}
    assert parse_document('{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}', "json") == {"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}


def test_parse_document_refuses_duplicates_in_json_and_yaml():
    with pytest.raises(DuplicateKeyError, match="key 'engine' is given twice in one object"):
        parse_document('{"engine": "vllm", "x": {"y": 1}, "engine": "sglang"}', "json")
    with pytest.raises(DuplicateKeyError, match=r"key 'y' is given twice \(again at line 3, column 3\)"):
        parse_document("x:\n  y: 1\n  y: 2\n", "yaml")
    with pytest.raises(json.JSONDecodeError):  # a syntax error is still the parser's own
        parse_document('{"a": ', "json")


@pytest.fixture(scope="module")
def plan_files(tmp_path_factory):
    from planner.cli import main

    d = tmp_path_factory.mktemp("plans")
    for name in ("p.yaml", "p.json"):
        assert main(["plan", "--model", "llama-3.2-1b", "--hardware", "a100-80gb-sxm", "--out", str(d / name)]) == 0
    return d


def test_plan_file_with_a_key_given_twice_exits_2(cli, plan_files, tmp_path):
    text = (plan_files / "p.yaml").read_text()
    assert "\nengine: vllm\n" in text
    bad = tmp_path / "twice.yaml"
    bad.write_text(text.replace("\nengine: vllm\n", "\nengine: vllm\nengine: sglang\n", 1))
    code, out, err = cli("plan", "show", bad)
    assert code == 2 and "Traceback" not in err
    assert "twice.yaml: key 'engine' is given twice (again at line" in err, err

    bad_json = tmp_path / "twice.json"
    bad_json.write_text((plan_files / "p.json").read_text().replace("{\n", '{\n  "engine": "sglang",\n', 1))
    code, out, err = cli("export", bad_json, "--format", "vllm", "--out", tmp_path / "out")
    assert code == 2 and "twice.json: key 'engine' is given twice in one object" in err, err
    assert not (tmp_path / "out").exists()


def test_profile_files_with_a_key_given_twice_name_their_flag(cli, tmp_path):
    engine = (ROOT / "profiles/engines/vllm.yaml").read_text()
    assert "  memory_fraction: 0.9\n" in engine
    (tmp_path / "eng.yaml").write_text(engine.replace("  memory_fraction: 0.9\n",
                                                      "  memory_fraction: 0.9\n  memory_fraction: 0.5\n", 1))
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "a100-80gb-sxm", "--engine", tmp_path / "eng.yaml")
    assert code == 2 and err.startswith(f"error: --engine {tmp_path / 'eng.yaml'}: key 'memory_fraction' is given twice"), err

    hw = yaml.safe_load((ROOT / "profiles/hardware/a100-80gb-sxm.yaml").read_text())
    text = yaml.safe_dump(hw, sort_keys=False)
    first = text.splitlines()[0]
    (tmp_path / "hw.yaml").write_text(text + first + "\n")
    code, _, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", tmp_path / "hw.yaml")
    assert code == 2 and "--hardware" in err and "expected each key given once in a mapping" in err, err
    assert f"{first.split(':')[0]!r} twice (again at line" in err, err
    assert f"got {first.split(':')[0]!r} twice" in err and '"' not in err, err  # worded, not quoted again


def test_sensitivity_file_with_a_key_given_twice(cli, tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("version: 1\ngroups: {}\nversion: 1\n")
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "a100-80gb-sxm", "--sensitivity", f)
    assert code == 2 and "--sensitivity s.yaml: key 'version' is given twice" in err, err


def test_estimate_notes_name_the_engine_profile_file_given(cli, tmp_path):
    f = tmp_path / "my-vllm.yaml"
    f.write_text((ROOT / "profiles/engines/vllm.yaml").read_text())
    code, out, err = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "a100-80gb-sxm", "--engine", f, "--json")
    assert code == 0, err
    d = json.loads(out)
    assert d["engine_assumptions"]["source"] == str(f)
    assert any(f"engine vllm ({f})" in n for n in d["notes"]), d["notes"]
    code, out, _ = cli("estimate", "--model", "llama-3.2-1b", "--hardware", "a100-80gb-sxm", "--engine", "vllm", "--json")
    assert json.loads(out)["engine_assumptions"]["source"] == "profiles/engines/vllm.yaml"


def test_model_config_json_with_a_key_given_twice(cli, tmp_path):
    text = (ROOT / "profiles/models/llama-3.1-8b.json").read_text()
    assert '"hidden_size": 4096' in text
    (tmp_path / "m.json").write_text(text.replace('"hidden_size": 4096', '"hidden_size": 4096, "hidden_size": 2048', 1))
    code, _, err = cli("estimate", "--model", tmp_path / "m.json", "--hardware", "l4")
    assert code == 2 and "expected each key given once in an object; got 'hidden_size' twice" in err, err


def test_an_explicit_key_overrides_a_merged_one():
    """YAML's merge key: an explicit key beside ``<<`` overrides the merged value; only keys written twice in the
    mapping itself are refused."""
    assert parse_document("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\n", "yaml")["other"] == {"x": 3, "y": 2}
    with pytest.raises(DuplicateKeyError):
        parse_document("base: &b {x: 1}\nother:\n  <<: *b\n  y: 3\n  y: 4\n", "yaml")


@pytest.mark.parametrize("body, says", [
    ("groups:\n  model.layers.0.mlp.down_proj: {fp8: 0.5, fp8-e4m3: 0.001}\n",
     "groups.model.layers.0.mlp.down_proj: fp8 and fp8-e4m3 are both the option 'fp8-e4m3'"),
    ("groups:\n  model.layers.0.mlp.down_proj: {int8@r0512: 0.2, int8@r512: 0.1}\n", "are both the option 'int8@r512'"),
    ("groups:\n  model.lm_head: [{weights: int8, score: 0.9}, {weights: int8, score: 0.1}]\n",
     "entry [0] and entry [1] are both the option 'int8'"),
    ("groups:\n  model.lm_head: {int8: 0.1}\nkv: {fp8: 0.1, FP8-E4M3: 0.3}\n", "kv: fp8 and FP8-E4M3 are both the option"),
])
def test_two_spellings_of_one_option_in_a_sensitivity_file(cli, tmp_path, body, says):
    f = tmp_path / "s.yaml"
    f.write_text("version: 1\n" + body)
    code, _, err = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--sensitivity", f)
    assert code == 2 and says in err and "give each option one score" in err, err


def test_an_unquoted_n_m_sparsity_in_yaml_says_to_quote_it(tmp_path):
    # YAML 1.1 (PyYAML) reads an unquoted 2:4 as the base-60 integer 124; the error said "got int 124"
    from planner.engines import load_engine
    from planner.errors import TierwiseError
    from planner.formats import parse_sparsity

    with pytest.raises(TierwiseError) as e:
        parse_sparsity(yaml.safe_load("s: 2:4")["s"])
    assert "unquoted 2:4 as the base-60 number 124: quote it, '2:4'" in str(e.value)
    src = Path(__file__).resolve().parent.parent / "profiles" / "engines" / "hf-transformers.yaml"
    text = src.read_text().replace("    sparsity: [dense]\n", "    sparsity: [dense, 2:4]\n").replace(
        "id: hf-transformers", "id: hf-custom")
    path = tmp_path / "eng.yaml"
    path.write_text(text)
    with pytest.raises(TierwiseError) as e:
        load_engine(str(path))
    assert "quote it, '2:4'" in str(e.value)
