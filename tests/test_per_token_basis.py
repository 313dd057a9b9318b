"""What a per-token energy and cost count is said alongside them: generated tokens when the request
generates, else what one forward pass reads (prompt tokens with --gen 0, images for a CNN). The
table, ``--json``, REST and a plan file agree."""

from __future__ import annotations

import json

import pytest

from tests.frontdoors import app_client


@pytest.fixture
def client(tmp_path):
    with app_client(tmp_path) as c:
        yield c


def test_prefill_only_estimate_prices_prompt_tokens_and_says_so(cli):
    # Was: "0.01778 USD / M tokens" and "energy per token", which read as per generated token.
    args = ("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gen", "0")
    r = cli(*args)
    assert r.code == 0, r.err
    assert "USD / M prompt tokens" in r.out and "energy per prompt token" in r.out
    assert "USD / M tokens" not in r.out and "output token" not in r.out
    r = cli(*args, "--json")
    d = json.loads(r.out)
    assert d["per_token_basis"] == "prompt_tokens"
    # the price is the hourly rate over the prompt tokens read per second
    assert d["usd_per_million_tokens"] == pytest.approx(d["usd_per_hour"] / 3600 / d["prefill_tokens_per_s"] * 1e6)


def test_generating_estimate_prices_output_tokens(cli):
    r = cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gen", "64")
    assert r.code == 0 and "USD / M output tokens" in r.out and "energy per output token" in r.out
    d = json.loads(cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gen", "64", "--json").out)
    assert d["per_token_basis"] == "output_tokens"
    assert d["usd_per_million_tokens"] == pytest.approx(d["usd_per_hour"] / 3600 / d["output_tokens_per_s"] * 1e6)


def test_a_cnn_is_priced_per_image(cli):
    r = cli("estimate", "--model", "resnet-50", "--hardware", "h100-sxm")
    assert r.code == 0 and "USD / M images" in r.out and "energy per image" in r.out
    d = json.loads(cli("estimate", "--model", "resnet-50", "--hardware", "h100-sxm", "--json").out)
    assert d["per_token_basis"] == "images"
    assert d["usd_per_million_tokens"] == pytest.approx(d["usd_per_hour"] / 3600 / d["samples_per_s"] * 1e6)


def test_rest_says_the_same_as_the_command_line(cli, client):
    body = {"model": "llama-3.1-8b", "hardware": "h100-sxm", "gen": 0}
    rest = client.post("/v1/estimate", json=body)
    assert rest.status_code == 200, rest.text
    local = json.loads(cli("estimate", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gen", "0", "--json").out)
    assert rest.json()["per_token_basis"] == local["per_token_basis"] == "prompt_tokens"
    assert rest.json()["usd_per_million_tokens"] == pytest.approx(local["usd_per_million_tokens"])


def test_a_prefill_only_plan_says_what_its_cost_counts(cli, tmp_path):
    out_file = tmp_path / "p.json"
    r = cli("plan", "--model", "llama-3.1-8b", "--hardware", "h100-sxm", "--gen", "0", "--out", out_file)
    assert r.code == 0, r.err
    assert "USD / M prompt tokens" in r.out
    assert json.loads(out_file.read_text())["predicted"]["per_token_basis"] == "prompt_tokens"
    shown = cli("plan", "show", out_file)
    assert shown.code == 0 and "USD / M prompt tokens" in shown.out
