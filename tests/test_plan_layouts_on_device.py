"""A plan over several devices visits only the layouts the device's links and the engine run. When
none is left the request is refused before the search, naming the degree the caller gave (else
--devices), saying why and what would run, instead of failing mid-search with an unrelated
"--formats: no option is left for model.embed_tokens"."""

from __future__ import annotations

import pytest

from tests.frontdoors import app_client

NO_LINK = "m2-max has no link to another device in its profile"


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


@pytest.mark.parametrize("degrees, named", [
    (("--devices", "4", "--pp", "2"), "--pp 2"),  # was: --formats: no option is left for model.embed_tokens
    (("--devices", "4", "--tp", "2"), "--tp 2"),  # was the same
    (("--devices", "2", "--pp", "2"), "--pp 2"),
])
def test_a_split_over_devices_without_links_names_the_degree_given(cli, degrees, named):
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "m2-max", *degrees)
    assert r.code == 2 and not r.out
    assert r.err.startswith(f"error: {named} cannot run: {NO_LINK}"), r.err
    assert "llamacpp runs no data parallelism" in r.err and f"plan --devices 1 without {named.split()[0]}" in r.err
    assert "--formats" not in r.err and "embed_tokens" not in r.err


def test_devices_alone_are_named_when_no_degree_was_given(cli):
    # Was: "--pp 2 needs point-to-point sends ..." although no --pp was given.
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "m2-max", "--devices", "2")
    assert r.code == 2 and r.err.startswith(f"error: --devices 2 cannot run: {NO_LINK}"), r.err
    assert "--pp" not in r.err


def test_an_engine_without_parallelism_says_so(cli):
    # Was: "no parallel layout of 2 device(s) for llama-3.1-70b has  (tp×pp×dp must equal --devices ...)".
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "iphone-15-pro", "--devices", "2")
    assert r.code == 2
    assert "executorch on iphone-15-pro runs on a single device only" in r.err and "--devices 1" in r.err, r.err


def test_a_group_beyond_the_nodes_links_lists_what_runs(cli):
    # sn40l: 16 devices per node, no inter-node link; serving replicas need no link
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "sn40l", "--devices", "32", "--tp", "32")
    assert r.code == 2 and r.err.startswith("error: a collective over --tp 32 spans 2 nodes"), r.err
    # nearest the degree asked for first: --tp 16 over two replicas, not 32 single-device replicas
    assert "what runs on sn40l with --devices 32: --tp 16 --pp 1 --dp 2; --tp 8 --pp 1 --dp 4" in r.err, r.err
    assert "(and 7 more)" in r.err
    r = cli("plan", "--model", "llama-3.1-405b", "--hardware", "sn40l", "--devices", "32", "--pp", "32")
    assert r.code == 2 and "what runs on sn40l with --devices 32: --tp 1 --pp 16 --dp 2;" in r.err, r.err


@pytest.mark.parametrize("degrees, pp", [(("--devices", "2", "--pp", "2"), 2), (("--devices", "2"), None)])
def test_a_device_with_a_link_still_plans_over_several(cli, tmp_path, degrees, pp):
    out_file = tmp_path / "p.json"
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "jetson-agx-orin", *degrees, "--out", out_file)
    assert r.code == 0, r.err
    if pp is not None:
        assert f"pp={pp}" in r.out


def test_rest_refuses_at_once_with_its_field(client):
    r = client.post("/v1/plans", json={"model": "llama-3.1-70b", "hardware": "m2-max", "devices": 4, "pp": 2})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == "pp" and err["message"].startswith("'pp' 2 cannot run: m2-max has no link")
    assert "--" not in err["message"]


def test_a_pipeline_longer_than_a_node_needs_an_inter_node_link(cli):
    # Was: planned, every stage's send priced on the node's own link although stage 16 is on the next node.
    r = cli("plan", "--model", "llama-3.1-70b", "--hardware", "sn40l", "--devices", "32", "--pp", "32")
    assert r.code == 2, r.out
    assert r.err.startswith("error: --pp 32 × tp 1 = 32 devices per replica span 2 nodes but sn40l has no inter-node link")
    # two replicas of a 16-stage pipeline, one per node, need none
    ok = cli("plan", "--model", "llama-3.1-70b", "--hardware", "sn40l", "--devices", "32", "--pp", "16")
    assert ok.code == 0 and "pp=16 dp=2" in ok.out, ok.err
