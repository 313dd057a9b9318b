"""Numbers written as text take ASCII digits in every field. Python's ``float`` also reads other
scripts' digits ("١٠" is 10), which ``--qps`` and ``--objective-weights`` accepted while
``--ttft-slo``, sizes and the integer flags refused them. And a load factor far beyond 1 is
written in three significant digits, not hundreds of them."""

from __future__ import annotations

import pytest

from planner.queueing import times

SERVE = ("capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--ttft-slo", "1", "--tpot-slo", "0.1")


@pytest.mark.parametrize("text", ["١٠", "٢.٥", "１"])  # Arabic-Indic, and a fullwidth digit
def test_qps_in_other_scripts_digits_is_refused_as_ttft_slo_is(cli, text):
    r = cli(*SERVE, "--qps", text)
    assert r.code == 2 and f"--qps must be numbers (separated by commas on the command line); got {text!r}" in r.err
    r = cli("capacity", "serve", "--model", "llama-3.2-1b", "--hardware", "l4", "--qps", "1", "--ttft-slo", text,
            "--tpot-slo", "0.1")
    assert r.code == 2 and "--ttft-slo" in r.err


def test_objective_weights_in_other_digits_are_refused(cli):
    r = cli("plan", "--model", "llama-3.2-1b", "--hardware", "l4", "--objective", "weighted",
            "--objective-weights", "accuracy=١")
    assert r.code == 2 and "--objective-weights must be a number >= 0 for accuracy; got '١'" in r.err, r.err


def test_ascii_text_numbers_still_read():
    import planner

    out = planner.capacity_serve("llama-3.2-1b", hardware="l4", qps=" 2.5 ", ttft_slo_s=1, tpot_slo_s=0.1)
    assert out is not None


def test_a_huge_load_factor_is_three_digits():
    assert times(1.234) == "1.23×" and times(999_999.0) == "999999.00×"
    assert times(2.35e298) == "2.35e+298×"


def test_an_absurd_qps_names_its_factor_briefly(cli):
    r = cli(*SERVE, "--qps", "1e300")
    assert r.code == 3 and "e+29" in r.err and len(r.err) < 2000, r.err
