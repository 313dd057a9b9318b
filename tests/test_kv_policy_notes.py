"""--kv-budget and --kv-share are priced as what-ifs: no engine profile runs a KV token budget or
shared KV layers, and the answer says so (it used to read like what vLLM would do)."""

from __future__ import annotations

import json

import pytest

from tests.frontdoors import app_client, run

BASE = ("estimate", "-m", "llama-3.1-8b", "-H", "h100-sxm", "--json")


def _what_if(notes):
    return [n for n in notes if n.startswith("what-if:")]


@pytest.mark.parametrize("flags, words", [
    (("--kv-budget", "1024"), ["KV token budget (1024 tokens", "int4-g32", "MiKV"]),
    (("--kv-share", "2"), ["shared by 2 adjacent layers", "SwiftKV"]),
    (("--kv-budget", "512", "--kv-evicted", "int2-g32", "--kv-share", "4"), ["512 tokens", "int2-g32", "4 adjacent"]),
])
def test_a_kv_policy_is_marked_as_a_what_if(capsys, flags, words):
    code, out, err = run(capsys, *BASE, *flags)
    assert code == 0, err
    notes = _what_if(json.loads(out)["notes"])
    assert len(notes) == 1 and notes[0].startswith("what-if: vllm keeps every token's K/V in every layer")
    assert all(w in notes[0] for w in words), notes[0]


def test_no_what_if_without_a_kv_policy(capsys):
    code, out, err = run(capsys, *BASE)
    assert code == 0, err
    assert _what_if(json.loads(out)["notes"]) == []
    code, out, err = run(capsys, *BASE, "--kv-share", "1")  # one layer per cache is the ordinary cache
    assert code == 0 and _what_if(json.loads(out)["notes"]) == []


def test_the_what_if_reaches_rest(tmp_path):
    with app_client(tmp_path) as c:
        r = c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "engine": "trtllm",
                                         "kv_share": 2})
    assert r.status_code == 200, r.text
    notes = _what_if(r.json()["notes"])
    assert len(notes) == 1 and notes[0].startswith("what-if: trtllm keeps")
