"""Command-line usage errors and display faults, as a user meets them.

Every kind of usage error exits 2 with a message naming the flag (never "internal error",
which is what the installed typer's vendored click made of them before typer was pinned
and its exception classes were caught)."""

from __future__ import annotations

import json
import re

import pytest

from hwmodels.errors import TierwiseError

EST = ["estimate", "--model", "llama-2-7b", "--hardware", "h100-sxm"]


def usage_error(result, *names: str) -> str:
    assert result.code == 2, (result.code, result.err)
    assert "internal error" not in result.err and "Traceback" not in result.err
    for name in names:
        assert name in result.err, (name, result.err)
    return result.err


def test_no_arguments_shows_help_and_exits_2(cli):
    r = cli()
    usage_error(r)
    assert "estimate" in r.out + r.err and "plan" in r.out + r.err  # the command list


def test_subcommand_group_alone_shows_help(cli):
    r = cli("capacity")
    usage_error(r)
    assert "serve" in r.out + r.err and "train" in r.out + r.err


def test_unknown_command_suggests_the_closest(cli):
    err = usage_error(cli("estimat"), "estimat")
    assert "did you mean 'estimate'" in err.lower()


def test_unknown_option_suggests_the_closest(cli):
    err = usage_error(cli(*EST, "--bach", "4"), "--bach")
    assert re.search(r"did you mean --batch\b", err)


def test_unknown_option_without_a_close_one(cli):
    err = usage_error(cli(*EST, "--zzzzzz"), "--zzzzzz")
    assert "did you mean" not in err


def test_bad_type_names_flag_and_value(cli):
    usage_error(cli(*EST, "--tp", "two"), "--tp", "'two'")
    usage_error(cli(*EST, "--tp=two"), "--tp", "'two'")


def test_out_of_range_names_flag_and_value(cli):
    usage_error(cli(*EST, "--prompt", "-5"), "--prompt", "-5")


def test_bad_choice_names_flag_and_choices(cli):
    usage_error(cli(*EST, "--mode", "train"), "--mode", "'train'", "inference", "training")


def test_missing_required_option_names_it(cli):
    usage_error(cli("estimate", "--model", "llama-2-7b"), "--hardware")


def test_option_without_its_value(cli):
    usage_error(cli(*EST, "--tp"), "--tp")


def test_extra_argument(cli):
    usage_error(cli(*EST, "surplus"), "surplus")


def test_usage_error_as_json(cli):
    r = cli(*EST, "--tp", "two", "--json")
    usage_error(r, "--tp")
    body = json.loads(r.out)["error"]
    assert body["code"] == "usage" and body["field"] == "tp" and body["exit_code"] == 2
    assert "--tp" in body["message"]


def test_user_error_as_json_carries_code_field_details(cli):
    r = cli("estimate", "--model", "llama-2-7", "--hardware", "h100-sxm", "--json")
    assert r.code == 2
    body = json.loads(r.out)["error"]
    assert body["code"] == "not_found" and body["field"] == "model" and "llama-2-7b" in body["details"]["suggestions"]
    assert "tierwise models list" in body["message"]  # the CLI names its own listing command


def test_unexpected_exception_stays_internal_error(cli, monkeypatch):
    # A genuine bug (an ordinary Python exception) is still reported as one, with the hint.
    from planner.cli import app

    def boom() -> None:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(app, "registered_commands", [*app.registered_commands])
    app.command("boom")(boom)
    r = cli("boom")
    assert r.code == 1 and "internal error" in r.err and "ZeroDivisionError" in r.err and "TIERWISE_DEBUG" in r.err


def test_every_user_facing_error_class_is_a_tierwise_error():
    from api.db import DuplicateIdError
    from api.errors import ApiError
    from planner import errors
    from planner.arch import ModelConfigError
    from planner.capacity import InfeasibleError as CapacityInfeasible
    from planner.cli.common import CliError
    from planner.costmodel import EstimateError
    from planner.diagnose import NoFeasiblePlanError
    from planner.execution.errors import CalibrationError, ModelLoadError, PlanApplyError
    from planner.export import ExportError
    from planner.formats import FormatError, NumericsError, SparsityError
    from planner.options import OptionError
    from planner.plan import PlanError
    from planner.sensitivity import SensitivityError
    from planner.solver import InfeasibleError as SolverInfeasible, SolverError

    for cls in (DuplicateIdError, ApiError, ModelConfigError, CliError, EstimateError, NoFeasiblePlanError,
                CalibrationError, ModelLoadError, PlanApplyError, ExportError, FormatError, NumericsError,
                SparsityError, OptionError, PlanError, SensitivityError, SolverError):
        assert issubclass(cls, TierwiseError), cls
    assert CapacityInfeasible is SolverInfeasible is errors.InfeasibleError
    assert issubclass(NoFeasiblePlanError, errors.InfeasibleError)
    e = NoFeasiblePlanError("no plan", diagnosis=None)
    assert (e.kind, e.code, e.exit_code, e.http_status, e.field) == ("infeasible", "infeasible", 3, 422, "constraints")
    d = DuplicateIdError("plan", "p1")
    assert (d.kind, d.code, d.http_status, d.field, d.catalog) == ("conflict", "duplicate_id", 409, "id", "plan")
    assert CliError("x", 3).exit_code == 3 and CliError("x").exit_code == 2


def test_errors_survive_pickling():
    # Capacity searches run in process pools: an error raised in a worker must come back whole.
    import pickle

    from planner.costmodel import EstimateError
    from planner.errors import InfeasibleError

    e = pickle.loads(pickle.dumps(EstimateError("tp", "{@tp} 3 must divide 32")))
    assert isinstance(e, EstimateError) and e.field == "tp" and e.render("cli") == "--tp 3 must divide 32"
    i = pickle.loads(pickle.dumps(InfeasibleError("none", {"best": 1}, backend="highs")))
    assert i.details == {"best": 1} and i.backend == "highs" and i.exit_code == 3


# -- display faults -----------------------------------------------------------------------


def _row(text: str, label: str) -> str:
    line = next(line for line in text.splitlines() if label in line)
    return line.split("│")[-2].strip()


def test_kv_cache_total_is_the_whole_cache_and_per_device_its_share(cli):
    # llama-3-8b has 8 KV heads: at tp 2 each device holds half the cache, the total is unchanged.
    one = cli("estimate", "-m", "llama-3-8b", "-H", "h100-sxm", "--batch", "8", "--json")
    two = cli("estimate", "-m", "llama-3-8b", "-H", "h100-sxm", "--batch", "8", "--tp", "2", "--json")
    kv1 = json.loads(one.out)["memory"]["kv_cache_bytes"]
    kv2 = json.loads(two.out)["memory"]["kv_cache_bytes"]
    assert kv2 == pytest.approx(kv1, rel=1e-9)
    text = cli("estimate", "-m", "llama-3-8b", "-H", "h100-sxm", "--batch", "8", "--tp", "2").out
    assert _row(text, "KV cache (total)") == "671.09 MB"
    assert _row(text, "KV cache (per device)") == "335.54 MB"


def test_kv_cache_total_counts_no_replicas_beyond_the_kv_heads(cli):
    # tp 16 > 8 KV heads: ranks hold replicas; the cache itself is the same size.
    base = json.loads(cli("estimate", "-m", "llama-3-8b", "-H", "h100-sxm", "--batch", "8", "--json").out)
    wide = json.loads(cli("estimate", "-m", "llama-3-8b", "-H", "h100-sxm", "--batch", "8", "--tp", "8",
                          "--json").out)
    assert wide["memory"]["kv_cache_bytes"] == pytest.approx(base["memory"]["kv_cache_bytes"], rel=1e-9)


def test_bound_label_is_printed(cli):
    text = cli(*EST, "--batch", "1").out
    assert re.search(r"\[(memory|compute)-bound\]", _row(text, "TTFT")), text
    assert "[memory-bound]" in _row(text, "TPOT")


def test_band_low_help_is_readable(cli):
    text = cli("plan", "--help").out
    block = text[text.index("--band-low"):][:600]
    assert "the band is ." not in block and "BAND_LOW" in block and "--max-degradation" in block


def test_rest_maps_on_the_error_base_alone():
    from api.errors import map_exception
    from planner.errors import TierwiseError

    class Clash(TierwiseError):
        kind = "conflict"
        code = "clash"

    e = map_exception(Clash("{@kv_budget} clashes with {@layout.tp}", field="kv_budget", details={"x": 1}))
    assert (e.http_status, e.code, e.field, e.details) == (409, "clash", "kv_budget", {"x": 1})
    assert e.message == "'kv_budget' clashes with 'layout.tp'"
    assert map_exception(ValueError("a bug")) is None  # unexpected errors stay 500s


def test_cli_renders_the_same_error_as_flags(cli, monkeypatch):
    from planner.cli import app
    from planner.errors import TierwiseError

    def clash() -> None:
        raise TierwiseError("{@kv_budget} clashes with {@layout.tp}", field="kv_budget", kind="infeasible")

    monkeypatch.setattr(app, "registered_commands", [*app.registered_commands])
    app.command("clash")(clash)
    r = cli("clash")
    assert r.code == 3 and "--kv-budget clashes with --tp" in r.err


def test_nothing_feasible_is_not_blamed_on_one_flag():
    from planner.diagnose import NoFeasiblePlanError

    e = NoFeasiblePlanError("needs at least 35 GB per device; try --allow-offload", diagnosis=None)
    assert e.render("cli").startswith("needs at least") and e.render("rest").startswith("needs at least")
