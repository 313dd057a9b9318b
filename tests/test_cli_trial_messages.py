"""Command-line messages a user trial found misleading: each names the argument or option the
user actually gave."""

from __future__ import annotations

import json

import pytest

from planner.cli import main


def _run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())


def test_engines_show_names_the_engine_argument_not_an_engine_option(capsys):
    code, _, err = _run(["engines", "show", "vllm", "--hardware", "zcu102"], capsys)
    assert code == 2 and "--engine" not in err and "ENGINE_ID" in err and "zcu102" in err and "vitis-ai" in err
    code, out, _ = _run(["engines", "show", "vllm", "--hardware", "zcu102", "--json"], capsys)
    err = json.loads(out)["error"]
    assert code == 2 and "--engine" not in err["message"] and err["field"] == "engine"


@pytest.mark.parametrize("content,field", [
    ('{"id": "ok", "memory": [', "hardware"),                # not JSON at all
    ('{"id": "ok", "name": "x", "memory": []}', "sources"),  # a profile missing a field
    ("[1, 2]", "hardware"),                                   # not a mapping
])
@pytest.mark.parametrize("command", [
    ["estimate", "--model", "llama-3.2-1b"],
    ["plan", "--model", "llama-3.2-1b"],
    ["capacity", "train", "--model", "llama-3.2-1b", "--tokens", "1e9", "--days", "1"],
    ["engines", "show", "vllm"],
])
def test_a_malformed_hardware_file_is_named_by_the_hardware_option(tmp_path, capsys, content, field, command):
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "ok.json").write_text(content)
    path = str(cfg / "ok.json")
    code, _, err = _run([*command, "--hardware", path], capsys)
    assert code == 2 and f"--hardware {path}:" in err, err
    code, out, _ = _run([*command, "--hardware", path, "--json"], capsys)
    body = json.loads(out)["error"]
    assert code == 2 and body["message"].startswith(f"--hardware {path}:") and body["field"] == field


def test_capacity_train_help_offers_training_engines_only(capsys):
    assert main(["capacity", "train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "Serving or training engine" not in text and "Training engine (megatron-core, fsdp" in text
    assert "vllm" not in text.split("--engine", 1)[1].split("--json", 1)[0]
