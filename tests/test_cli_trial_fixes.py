"""What a trial of the command line found at the edges, each checked as the user met it."""

from __future__ import annotations

import json

import pytest

import planner


def test_a_bare_number_for_the_memory_budget_is_refused_with_the_unit_it_probably_meant(cli):
    # `--max-memory-per-device 60` was 60 bytes: "needs 2.7 GB ... with a 0.0 GB budget", and no change offered
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--max-memory-per-device", "60")
    assert r.code == 2 and "--max-memory-per-device" in r.err and "60GB or 60GiB" in r.err and "got '60'" in r.err
    with pytest.raises(planner.TierwiseError) as exc:
        planner.plan("llama-3.2-1b", "l4", max_memory_per_device=60)
    assert "'max_memory_per_device'" in str(exc.value)
    # bytes stay bytes, and a small size with its unit is the user's to give
    assert planner.plan("llama-3.2-1b", "l4", max_memory_per_device=24e9).predicted.fits


def test_a_budget_that_binds_on_a_device_with_room_is_offered_as_the_change(cli):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--max-memory-per-device", "2GB")
    assert r.code == 3
    first = r.err.split("cheapest changes:")[1].strip().splitlines()[0]
    assert first.startswith("1. --max-memory-per-device 2.7GB: the budget is what binds; the l4 holds 24.0 GB"), r.err
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--max-memory-per-device", "2.7GB")
    assert r.code == 0, r.err


def test_a_model_folder_named_without_a_slash(cli, tmp_path, monkeypatch):
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256,
        "max_position_embeddings": 8192}))
    monkeypatch.chdir(tmp_path)
    a = json.loads(cli("estimate", "--model", "hf", "--hardware", "l4", "--json").out)
    b = json.loads(cli("estimate", "--model", "hf/", "--hardware", "l4", "--json").out)
    assert a["ttft_s"] == b["ttft_s"] and a["memory"] == b["memory"]
    # a catalog id keeps its meaning even beside a folder of that name
    (tmp_path / "llama-3.2-1b").mkdir()
    (tmp_path / "llama-3.2-1b" / "config.json").write_text((folder / "config.json").read_text())
    c = json.loads(cli("estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--json").out)
    assert a["model"] == "hf" and c["model"] == "llama-3.2-1b"
    r = cli("estimate", "--model", "nothere", "--hardware", "l4")
    assert r.code == 2 and "unknown model id 'nothere'" in r.err


def test_messages_that_contradicted_themselves(cli, tmp_path):
    with pytest.raises(planner.TierwiseError) as exc:
        planner.estimate("llama-3.1-8b", "h100-sxm", batch="8")
    assert "(the number 8, not the text '8')" in str(exc.value)
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": 2048.0, "intermediate_size": 8192,
        "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256}))
    r = cli("estimate", "--model", f"{folder}/", "--hardware", "l4", "--json")
    assert r.code == 0, r.err  # 2048.0 is the integer 2048 (it said "must be a positive integer; got 2048")
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("2048.0", "2048.5"))
    r = cli("estimate", "--model", f"{folder}/", "--hardware", "l4")
    assert r.code == 2 and "'hidden_size' must be a positive integer; got 2048.5" in r.err
    r = cli("capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--prompt", "100",
            "--gen", "10", "--ttft-slo", "1", "--tpot-slo", "0.1", "--percentile", "0")
    assert r.code == 2 and "--percentile must be a fraction in [0.5, 1) or a percentage in [50, 100); got 0" in r.err


def test_plan_file_arguments_are_named_as_help_shows_them(cli, tmp_path):
    r = cli("plan", "diff", tmp_path / "a.yaml")
    assert r.code == 2 and "missing PLAN_B" in r.err
    r = cli("plan", "show", tmp_path)
    assert r.code == 2 and "is a folder; expected a plan file (.yaml, .yml or .json)" in r.err


def test_time_limits_take_durations_as_the_slo_flags_do(cli):
    """--ttft-slo 500ms was accepted and --time-limit 1h refused; the limit takes seconds or a duration."""
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limit", "1min", "--json")
    assert r.code == 0, r.err
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limit", "2d")
    assert r.code == 2 and "--time-limit must be a duration like 0.5, 500ms, 50us, 5min or 1h; got '2d'" in r.err
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--time-limit", "25h")
    assert r.code == 2 and "--time-limit must be a number > 0 and <= 86400; got 90000" in r.err
    r = cli("capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--prompt", "100", "--gen",
            "10", "--ttft-slo", "1", "--tpot-slo", "0.1", "--time-limit", "5ms")
    assert r.code == 3 and "--time-limit 0.005 s" in r.err
