"""Ids the catalog does not know: a clear exit-2 error naming the flag they came through, whatever
their length (a 300-character id used to reach the filesystem and end as an internal error)."""

from __future__ import annotations

import pytest

LONG = "a" * 300


@pytest.mark.parametrize(("args", "flag"), [
    (["estimate", "-m", LONG, "-H", "h100-sxm"], "--model"),
    (["estimate", "-m", "llama-3.1-8b", "-H", LONG], "--hardware"),
    (["estimate", "-m", f"/tmp/{LONG}.json", "-H", "h100-sxm"], "--model"),
    (["estimate", "-m", "llama-3.1-8b", "-H", f"/tmp/{LONG}.yaml"], "--hardware"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", f"{LONG}.yaml"], "--engine"),
    (["capacity", "serve", "--model", LONG, "--hardware", "h100-sxm", "--qps", "1", "--ttft-slo", "1", "--tpot-slo", "0.1"],
     "--model"),
    (["plan", "--model", "llama-3.1-8b", "--hardware", LONG], "--hardware"),
])
def test_a_too_long_id_is_bad_input(cli, args, flag):
    r = cli(*args)
    assert r.code == 2, r.err
    assert "internal error" not in r.err and r.err.startswith(f"error: {flag}"), r.err


def test_an_unknown_id_names_its_flag_but_not_for_a_positional_id(cli):
    r = cli("estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--engine", "vlm")
    assert r.code == 2 and r.err.startswith("error: --engine: unknown engine id 'vlm'; did you mean vllm"), r.err
    r = cli("estimate", "-m", "llama-3.1-8bb", "-H", "h100-sxm")
    assert r.code == 2 and r.err.startswith("error: --model: unknown model id 'llama-3.1-8bb'"), r.err
    r = cli("models", "show", "llama-3.1-8bb")
    assert r.code == 2 and r.err.startswith("error: unknown model id 'llama-3.1-8bb'"), r.err
    r = cli("engines", "show", "vllm", "--hardware", "h100-sxmm")
    assert r.code == 2 and r.err.startswith("error: --hardware: unknown hardware id"), r.err


def test_the_ray_install_hint_copies_as_written(cli):
    try:
        import ray  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("Ray is installed")
    for extra in ([], ["--json"]):
        r = cli("capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--qps", "2", "--ttft-slo", "2",
                "--tpot-slo", "0.1", "--executor", "ray", *extra)
        assert r.code == 2 and "pip install 'tierwise[ray]'" in (r.err + r.out) and "\\[" not in r.err + r.out, r.err


def test_an_unknown_id_in_a_list_of_models_names_that_list(cli):
    r = cli("capacity", "serve", "--models", "llama-3.1-8b,llama-3.2-1bb", "--hardware", "h100-sxm", "--qps", "1",
            "--ttft-slo", "1", "--tpot-slo", "0.1")
    assert r.code == 2 and r.err.startswith("error: --models: unknown model id 'llama-3.2-1bb'"), r.err
    r = cli("capacity", "serve", "--model", "resnet-50", "--hardware", "h100-sxm", "--qps", "1", "--ttft-slo", "1",
            "--tpot-slo", "0.1")
    assert r.code == 2 and "`tierwise estimate`" in r.err, r.err


@pytest.mark.parametrize(("args", "words"), [
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--kv-evicted", "int2-g32"], "without --kv-budget it changes nothing"),
    (["estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--kv-budget", "10", "--kv-evicted", "fp32"], "eviction would grow the cache"),
    (["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--qps", "1", "--ttft-slo", "1", "--tpot-slo",
      "0.1", "--kv-link", "scale_out"], "unless --serving is disaggregated"),
])
def test_a_flag_that_would_change_nothing_is_refused(cli, args, words):
    r = cli(*args)
    assert r.code == 2 and words in r.err, r.err


def test_serving_replicas_need_no_engine_support(cli):
    """Capacity answers 'tp1·pp1 × 9' for Transformers on L4s: the estimate reproduces it with --dp 9
    (nine separate engine instances); splitting one instance still needs the engine."""
    import json

    one = json.loads(cli("estimate", "-m", "llama-3.1-8b", "-H", "l4", "--engine", "hf-transformers", "--json").out)
    r = cli("estimate", "-m", "llama-3.1-8b", "-H", "l4", "--engine", "hf-transformers", "--dp", "9", "--json")
    assert r.code == 0, r.err
    nine = json.loads(r.out)
    assert nine["output_tokens_per_s"] == pytest.approx(9 * one["output_tokens_per_s"], rel=1e-6)
    r = cli("estimate", "-m", "llama-3.1-8b", "-H", "cpu-host", "--engine", "llamacpp", "--ep", "2")
    assert r.code == 2 and "--ep" in r.err, r.err


def test_an_eager_only_engine_refuses_graph_launch(cli):
    r = cli("estimate", "-m", "llama-3.2-1b", "-H", "h100-sxm", "--engine", "torch", "--runtime", "graph")
    assert r.code == 2 and "--runtime must be eager; got 'graph'" in r.err and "with a graph mode:" in r.err, r.err
    assert cli("estimate", "-m", "llama-3.2-1b", "-H", "h100-sxm", "--engine", "torch").code == 0


def test_no_fuzzy_matching_for_input_longer_than_any_name():
    """Suggestions cost time in the input's length: a 900,000-character format name took 14 s to refuse."""
    from hwmodels.errors import close_ids
    from planner.formats import FormatError, get_format

    assert close_ids("h100-sxmm", ["h100-sxm", "h200"]) == ["h100-sxm"]
    assert close_ids("h" * 5000, ["h100-sxm", "h200"]) == []
    with pytest.raises(FormatError, match="did you mean int4"):
        get_format("int5")
    with pytest.raises(FormatError) as err:
        get_format("a" * 100_000)
    assert "did you mean" not in str(err.value)
