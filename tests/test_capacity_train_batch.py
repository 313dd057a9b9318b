"""`capacity train` keeps the global batch asked for.

It rounded the batch up to one micro-batch per data rank whatever that took: the 405B model on 15T tokens in
60 days was answered with 16,384 data-parallel GPUs and a 134M-token step, 32× the 4M tokens asked for,
and the 8B model on 1e13 tokens in 5 days with 4×. A layout whose one micro-batch per data rank overshoots
the batch is not searched now; more devices need TP or PP, and when that is too slow the error says the
batch is what caps data parallelism.
"""

from __future__ import annotations

import planner


def test_every_layout_searched_keeps_the_batch_asked_for():
    fleet = planner.capacity_train("llama-3.1-8b", ["h100-sxm"], tokens=1e13, days=5)
    target = 4 * 1024 * 1024 / 4096  # the default --global-batch-tokens over the default --seq
    rows = [o for a in fleet for o in a.frontier]
    assert rows
    for o in rows:
        # rounded to a multiple of micro-batch × dp: within half a unit of the target, never one unit over it
        assert o.global_batch <= target + o.micro_batch * o.dp / 2, o
        assert o.micro_batch * o.dp <= target, o


def test_when_the_batch_caps_the_devices_the_error_says_so(cli):
    r = cli("capacity", "train", "-m", "llama-3.1-405b", "-H", "h100-sxm", "--tokens", "1.5e13", "--days", "60")
    assert r.code == 3, r.err
    assert "caps data parallelism" in r.err and "--global-batch-tokens" in r.err
    bigger = cli("capacity", "train", "-m", "llama-3.1-405b", "-H", "h100-sxm", "--tokens", "1.5e13", "--days", "60",
                 "--global-batch-tokens", "16e6", "--json")
    assert bigger.code == 0, bigger.err
