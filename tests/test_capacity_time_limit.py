"""A capacity search stopped by its time limit says what it did not search: rows whose pair had only
some formats searched are marked partial, pairs never reached are listed, and the searches go pair
by pair so a short limit still answers for every pair."""

from __future__ import annotations

import pytest

import planner.capacity as capacity
from hwmodels import load_device
from planner.arch import load_arch
from planner.capacity import DEFAULT_FORMATS, ServeTarget, plan_serving, serve_infeasible_message
from planner.deadline import Deadline, DeadlineExceeded
from planner.request.capacity import serve_pairs

HW = ("l4", "h100-sxm", "a100-80gb-sxm")
TARGET = ServeTarget(qps=5, prompt=512, gen=128, ttft_slo_s=1.0, tpot_slo_s=0.05)
_REAL = capacity.run_serve_task


def _pairs():
    return serve_pairs(("vllm",), [load_device(h) for h in HW], DEFAULT_FORMATS, "bf16", given_formats=False,
                       given_kv=False, runtime=None)


def _limited(monkeypatch, searches: int):
    """Let ``searches`` (engine, hardware, format) searches finish, then run out of time."""
    real = _REAL
    done = []

    def run(task, deadline=None):
        if len(done) >= searches:
            raise DeadlineExceeded("the capacity search ran out of time")
        done.append((task.engine, task.device.id))
        return real(task, deadline)

    monkeypatch.setattr(capacity, "run_serve_task", run)
    return done


def test_a_short_limit_reaches_every_pair_first(monkeypatch):
    done = _limited(monkeypatch, len(HW))
    ans = plan_serving([load_arch("llama-3.1-8b")], _pairs(), TARGET, deadline=Deadline(600))
    assert sorted(h for _, h in done) == sorted(HW)  # one search per pair before any pair's second
    assert not ans.complete and not ans.not_searched
    assert {h.hardware for h in ans.ranked} == set(HW)
    assert all(not h.complete for h in ans.ranked)  # each has more formats than the one searched
    d = ans.to_dict()
    assert d["status"] == "time_limit" and all(row["complete"] is False for row in d["hardware"])


def test_unsearched_pairs_are_listed_not_dropped(monkeypatch):
    _limited(monkeypatch, 1)
    ans = plan_serving([load_arch("llama-3.1-8b")], _pairs(), TARGET, deadline=Deadline(600))
    assert [h.hardware for h in ans.ranked] == [HW[0]] and not ans.ranked[0].complete
    assert ans.not_searched == tuple(("vllm", h) for h in HW[1:])
    assert ans.to_dict()["not_searched"] == [{"engine": "vllm", "hardware": h} for h in HW[1:]]


def test_a_complete_search_is_unchanged():
    full = plan_serving([load_arch("llama-3.1-8b")], _pairs(), TARGET)
    timed = plan_serving([load_arch("llama-3.1-8b")], _pairs(), TARGET, deadline=Deadline(600))
    assert timed.complete and full.to_dict() == timed.to_dict()
    assert all(row["complete"] for row in full.to_dict()["hardware"])


def test_infeasible_answer_cut_short_says_so(monkeypatch):
    _limited(monkeypatch, 1)
    hard = ServeTarget(qps=5, prompt=512, gen=128, ttft_slo_s=1.0, tpot_slo_s=0.0001)
    ans = plan_serving([load_arch("llama-3.1-8b")], _pairs(), hard, deadline=Deadline(600))
    assert not ans.feasible
    msg, payload = serve_infeasible_message(ans)
    assert "time limit stopped the search" in msg and "{@time_limit_s}" in msg
    assert payload["complete"] is False and len(payload["not_searched"]) == 2


def test_infeasible_cut_short_is_the_time_limit_not_a_proof(monkeypatch):
    """Over the request layer (CLI --json, REST, Python) an answer with nothing found because the
    time limit stopped the search carries code ``time_limit``; a complete search's ``infeasible``."""
    from hwmodels.errors import TierwiseError
    from planner.request.capacity import CapacityServeRequest, run_capacity_serve

    req = CapacityServeRequest(model="llama-3.1-8b", hardware=list(HW), qps=5, prompt=512, gen=128,
                               ttft_slo_s=1.0, tpot_slo_s=0.0001, engine="vllm")
    with pytest.raises(TierwiseError) as full:
        run_capacity_serve(req)
    assert full.value.code == "infeasible" and "time limit" not in full.value.render("rest")
    _limited(monkeypatch, 1)
    with pytest.raises(TierwiseError) as cut:
        run_capacity_serve(req, deadline=Deadline(600))
    assert cut.value.kind == "infeasible" and cut.value.code == "time_limit", cut.value.code
    assert "time limit stopped the search" in cut.value.render("rest")


@pytest.mark.parametrize("limit", [1])
def test_cli_marks_partial_rows(cli, monkeypatch, limit):
    import json

    _limited(monkeypatch, limit)
    r = cli("capacity", "serve", "--model", "llama-3.1-8b", "--hardware", ",".join(HW), "--engine", "vllm", "--qps", "5",
            "--prompt", "512", "--gen", "128", "--ttft-slo", "1", "--tpot-slo", "0.05", "--time-limit", "600", "--json")
    assert r.code == 0, r.err
    d = json.loads(r.out)
    assert d["status"] == "time_limit" and [x["hardware"] for x in d["not_searched"]] == list(HW[1:])
    _limited(monkeypatch, limit)
    r = cli("capacity", "serve", "--model", "llama-3.1-8b", "--hardware", ",".join(HW), "--engine", "vllm", "--qps", "5",
            "--prompt", "512", "--gen", "128", "--ttft-slo", "1", "--tpot-slo", "0.05", "--time-limit", "600")
    assert r.code == 0 and "(partial)" in r.out and "not searched: vllm on h100-sxm" in r.out


@pytest.mark.parametrize("json_out", [True, False])
def test_cli_infeasible_cut_short_is_the_time_limit_naming_the_flag(cli, monkeypatch, json_out):
    """The command line answers as REST does: nothing meeting the SLOs because the time limit stopped
    the search is code time_limit (exit 3), and the message names --time-limit (not --time-limit-s)."""
    import json

    args = ["capacity", "serve", "--model", "llama-3.1-8b", "--hardware", ",".join(HW), "--engine", "vllm", "--qps", "5",
            "--prompt", "512", "--gen", "128", "--ttft-slo", "1", "--tpot-slo", "0.0001", "--time-limit", "600"]
    _limited(monkeypatch, 1)
    r = cli(*args, *(["--json"] if json_out else []))
    assert r.code == 3, r.err
    text = " ".join(r.err.split())
    assert "a longer --time-limit may find an answer" in text and "--time-limit-s" not in text, text
    if json_out:
        err = json.loads(r.out)["error"]
        assert err["code"] == "time_limit" and err["details"]["complete"] is False, err
    monkeypatch.setattr(capacity, "run_serve_task", _REAL)
    r = cli(*args, "--json")  # searched to the end: a proof, code infeasible
    assert r.code == 3 and json.loads(r.out)["error"]["code"] == "infeasible"
