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


def test_engines_show_names_the_hardware_option_not_an_engine_option(capsys):
    """The engine is the command's argument; the device the caller asked about is the field. The message
    lists both what the engine runs on and the engines that run on the device."""
    code, _, err = _run(["engines", "show", "vllm", "--hardware", "zcu102"], capsys)
    assert code == 2 and "--engine" not in err and "--hardware" in err and "zcu102" in err and "vitis-ai" in err
    assert "h100-sxm" in err  # hardware vLLM does run on
    code, out, _ = _run(["engines", "show", "vllm", "--hardware", "zcu102", "--json"], capsys)
    err = json.loads(out)["error"]
    assert code == 2 and "--engine" not in err["message"] and err["field"] == "hardware"


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


SERVE = ["capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--ttft-slo", "2", "--tpot-slo", "0.2",
         "--max-devices", "1", "--executor", "serial"]
TRAIN = ["capacity", "train", "--model", "llama-3.2-1b", "--hardware", "h100-sxm", "--executor", "serial"]
PLAN = ["plan", "--model", "llama-3.2-1b", "--hardware", "l4"]


@pytest.mark.parametrize("argv, flag, said", [
    ([*SERVE, "--qps", "5,5"], "--qps", "lists 5 more than once"),
    ([*SERVE, "--qps", "5, 5.0"], "--qps", "lists '5' and '5.0', both 5"),
    ([*PLAN, "--sparsity", "2:4,2:4"], "--sparsity", "'2:4' more than once"),
    ([*PLAN, "--sparsity", "unstructured:0.5,unstructured:0.50"], "--sparsity", "both 'unstructured:0.5'"),
    ([*PLAN, "--low-rank", "256,256"], "--low-rank", "lists 256 more than once"),
    ([*PLAN, "--pin", "model.lm_head=bf16", "--pin", "model.lm_head=int8"], "--pin", "'model.lm_head' more than once"),
    ([*PLAN, "--objective", "weighted", "--objective-weights", "accuracy=1,accuracy=2"], "--objective-weights",
     "'accuracy' more than once"),
])
def test_a_list_option_refuses_a_repeated_item(capsys, argv, flag, said):
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith(f"error: {flag} ") and said in err and "give each once" in err, err


@pytest.mark.parametrize("argv, flag, shown", [
    ([*SERVE, "--qps", "5", "--qps", "5"], "--qps", "('5', '5'); give it once, with several values comma separated: "
                                                     "--qps 5,5"),
    ([*SERVE, "--qps", "5", "--qps=10"], "--qps", "('5', '10'); give it once, with several values comma separated: "
                                                  "--qps 5,10"),
    ([*TRAIN, "--tokens", "1e9", "--days", "1", "--days", "2"], "--days", "('1', '2'); give it once"),
    ([*PLAN, "--hardware", "h100-sxm"], "--hardware", "('l4', 'h100-sxm'); give it once"),
    (["estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--kv", "fp8", "--kv", "bf16"], "--kv",
     "('fp8', 'bf16'); give it once"),
])
def test_an_option_of_one_value_given_twice_is_refused_not_the_last_kept(capsys, argv, flag, shown):
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith(f"error: {flag} is given more than once {shown}"), err
    code, out, _ = _run([*argv, "--json"], capsys)
    assert code == 2 and json.loads(out)["error"]["field"] == flag.lstrip("-").replace("-", "_")


def test_an_unknown_kv_format_lists_kv_formats_only_with_the_closest(capsys):
    from planner.formats import list_formats

    code, _, err = _run([*SERVE, "--qps", "1", "--kv", "bf61"], capsys)
    kv = [f.name for f in list_formats(role="kv")]
    assert code == 2 and err.startswith("error: --kv: unknown format 'bf61' (did you mean bf16"), err
    listed = err.split("expected one of the formats for the KV cache: ", 1)[1].split(", ")
    assert listed == kv and "cb4" not in err and "nf4" not in err, err
    code, _, err = _run(["estimate", "--model", "llama-3.2-1b", "--hardware", "l4", "--weights", "cb5"], capsys)
    assert code == 2 and "cb4" in err and "(did you mean" in err, err  # a weight format lists the codebooks


@pytest.mark.parametrize("argv, said", [
    ([*TRAIN, "--tokens", "abc", "--days", "1"], "--tokens expects a number such as 2e12; got 'abc'"),
    ([*TRAIN, "--tokens", "1e9", "--days", "one"], "--days expects a number such as 8, 0.5 or 2e12; got 'one'"),
    ([*TRAIN, "--tokens", "1e9", "--days", "1", "--seq", "1.5"], "--seq expects a whole number such as 8; got '1.5'"),
    ([*TRAIN, "--tokens", "1e9", "--days", "1", "--workers", "0"], "--workers must be at least 1; got '0'"),
    ([*SERVE, "--qps", "1", "--percentile", "high"], "--percentile expects a number such as 8, 0.5 or 2e12; got 'high'"),
    ([*PLAN, "--band-low", "2"], "--band-low must be at most 1.0; got '2'"),
])
def test_a_number_option_given_text_says_so_in_plain_words(capsys, argv, said):
    code, _, err = _run(argv, capsys)
    assert code == 2 and err.startswith(f"error: {said}"), err
    assert "Input should be" not in err and "unable to parse" not in err and "Invalid value" not in err, err


def test_a_short_training_time_is_printed_in_seconds_not_zero_days(capsys):
    from planner.training_capacity import days_text

    assert [days_text(d) for d in (45.25, 1.0, 0.25, 1e-2, 1e-5, 250.4)] == [
        "45.2 days", "1.0 days", "6.0 h", "14.4 min", "0.864 s", "250 days"]
    # (8.64 s: at 0.864 s the 4M-token batch caps the data-parallel ranks below the rate it needs)
    code, out, err = _run([*TRAIN, "--tokens", "1e9", "--days", "1e-4"], capsys)
    text = " ".join(out.split())
    assert code == 0, err
    assert "0.0 (" not in text and "0.0 days" not in text and "time to train" in text, text
    assert "0.0001 days = 8.64 s" in text and " s (" in text, text


def test_a_directory_as_model_or_hardware_is_called_a_directory(tmp_path, capsys):
    code, _, err = _run(["estimate", "--model", str(tmp_path), "--hardware", "l4"], capsys)
    assert code == 2 and err.startswith(f"error: --model {tmp_path}:") and "no such file" not in err, err
    assert "a directory without config.json" in err and "catalog model id" in err, err
    code, _, err = _run(["estimate", "--model", "llama-3.2-1b", "--hardware", str(tmp_path)], capsys)
    assert code == 2 and err.startswith(f"error: --hardware {tmp_path}:") and "'a directory'" in err, err
