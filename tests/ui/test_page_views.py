"""The page's answers to the faults of issue 14 and its practitioner views, each driven in
headless Chromium against the live ``tierwise serve`` at a desktop (1440×900) and a phone
(390×844) window. Numbers are checked against the same request sent to the REST API.

Screenshots go to ``$TIERWISE_UI_SCREENSHOT_DIR`` when it is set (``docs/img``), else to
a temporary folder. Skips, saying why, without Playwright or a system Chromium.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed (pip install playwright)")

from livepage import ROOT, Recorder, Server, open_page, poll_job, post_result, screenshot_dir, shared_browser  # noqa: E402
from playwright.sync_api import expect  # noqa: E402

expect.set_options(timeout=30_000)

SOLVE_TIMEOUT_MS = 180_000
VIEWPORTS = {"desktop": (1440, 900), "phone": (390, 844)}
PLAN_BODY = {"model": "llama-3.2-1b", "hardware": "l4", "max_memory_per_device": "3.1GB", "formats": ["bf16", "int8", "int4-g128"],
             "kv": "bf16", "tp": 1, "pp": 1, "dp": 1}


@pytest.fixture(scope="module")
def browser():
    b = shared_browser()
    if b is None:
        where = os.environ.get("TIERWISE_CHROMIUM") or "chromium on PATH or /usr/bin/chromium"
        pytest.skip(f"no system Chromium at {where} (apt-get install chromium); the browser tests never download one")
    return b


@pytest.fixture(scope="module")
def server(tmp_path_factory, browser):
    # sync_wait_s = 1.5: a solve is held that long before the server answers with a job,
    # which is what the elapsed-time display must count through.
    s = Server(tmp_path_factory.mktemp("ui-views"), env={"TIERWISE_SYNC_WAIT_S": "1.5"}).start()
    try:
        with s.client() as c:
            for path in ("/v1/hardware", "/v1/models", "/v1/formats"):
                c.get(path).raise_for_status()
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return screenshot_dir(tmp_path_factory, "ui-view-shots")


@pytest.fixture(params=list(VIEWPORTS), ids=list(VIEWPORTS))
def vp(request):
    return request.param


@pytest.fixture
def page(browser, server, vp):
    rec = Recorder()
    ctx, pg = open_page(browser, server.base, rec, viewport=VIEWPORTS[vp])
    pg.recorder = rec
    yield pg
    ctx.close()
    assert rec.foreign(server.base) == [], f"requests outside {server.base}: {rec.foreign(server.base)}"
    assert rec.errors == [], f"script errors in the page: {rec.errors}"


def ready(page, hash_: str = "") -> None:
    page.goto("/" + hash_)
    expect(page.locator("body")).to_have_attribute("data-restored", "true", timeout=120_000)


def estimated(page, hash_: str) -> None:
    """Open an Estimate link and wait for its first result (the view's result count reaches 1)."""
    ready(page, hash_)
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1", timeout=SOLVE_TIMEOUT_MS)


def solve_in_plan_view(page, server, model: str, hardware: str, fields: dict | None = None):
    """Solve a plan in the Plan view as a user does (pickers, form fields, Solve): its summary and the stored plan."""
    ready(page, "#plan")
    page.select_option("#model", model)
    page.select_option("#hardware", hardware)
    for sel, value in (fields or {}).items():
        page.fill(sel, value)
    page.click("#plan-run")
    summary = page.locator("#plan-summary")
    expect(summary).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    with server.client() as c:
        plan = c.get(f"/v1/plans/{summary.get_attribute('data-plan-id')}").json()["plan"]
    return summary, plan


def sig3(x: float) -> str:
    return f"{float(f'{x:.3g}'):g}"


def si_bytes(b: float) -> str:
    """The page's byte rendering: SI prefixes, 3 significant digits (1 GB = 1e9 B)."""
    for scale, unit in ((1e12, "TB"), (1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if b >= scale:
            return f"{sig3(b / scale)} {unit}"
    return f"{sig3(b)} B"


def fmt_time(s: float) -> str:
    if s < 1e-3:
        return f"{sig3(s * 1e6)} µs"
    if s < 1:
        return f"{sig3(s * 1e3)} ms"
    return f"{sig3(s)} s"


def fits_in_window(page, selector: str) -> list[str]:
    """Elements matched by selector that stick out of the window sideways."""
    return page.locator(selector).evaluate_all(
        "es => es.filter(e => e.getClientRects().length).filter(e => { const r = e.getBoundingClientRect();"
        " return r.left < -1 || r.right > window.innerWidth + 1; }).map(e => e.outerHTML.slice(0, 80))")


def no_null(page) -> None:
    text = page.locator("main").inner_text()
    assert not re.search(r"\bnull\b", text), "the page shows a literal 'null'"


def chart_text_px(page, selector: str) -> float:
    """The smallest rendered font size (CSS px) of the chart's text."""
    return page.locator(f"{selector} svg text").evaluate_all(
        "ts => Math.min(...ts.filter(t => t.textContent.trim()).map(t => t.getBoundingClientRect().height))")


def shot(page, shots: Path, name: str, vp: str) -> None:
    page.screenshot(path=str(shots / f"ui-{name}{'-phone' if vp == 'phone' else ''}.png"), full_page=True)


# ------------------------------------------------------------------------------ estimate


def test_estimate_shows_communication_decode_rate_memory_split_and_nothing_when_it_does_not_fit(page, server, shots, vp):
    ready(page, "#estimate?model=llama-3.1-70b&hardware=h100-sxm&devices=4&tp=4&batch=8")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1")
    body = {"model": "llama-3.1-70b", "hardware": "h100-sxm", "devices": 4, "tp": 4, "batch": 8}
    with server.client() as c:
        est = c.post("/v1/estimate", json=body).json()
    cards = page.locator("#estimate-result .card")
    comm = cards.filter(has_text="Communication")
    assert est["prefill"]["comm_s"] > 0.1 * est["ttft_s"], "TP4 prefill should spend a real share in communication"
    expect(comm).to_contain_text(fmt_time(est["prefill"]["comm_s"]))
    share = 100 * est["prefill"]["comm_s"] / est["ttft_s"]
    expect(comm).to_contain_text(f"{float(f'{share:.2g}'):g} %")
    expect(cards.filter(has_text="Decode tokens/s")).to_contain_text(f"{sig3(est['decode_tokens_per_s'])} tok/s")
    dev = next(t for t in est["memory"]["tiers"].values() if t["role"] == "device")
    expect(cards.filter(has_text="Weights per device")).to_contain_text(f"{sig3(dev['weights_bytes'] / 1e9)} GB")
    expect(cards.filter(has_text="KV cache per device")).to_contain_text(si_bytes(dev["kv_cache_bytes"]))
    # the tier counts the engine's runtime context with the activations; the card shows the two apart
    act = cards.filter(has_text="Activations per device")
    expect(act).to_contain_text(si_bytes(est["memory"]["activations_bytes"]))
    expect(act).to_contain_text(f"+ {si_bytes(dev['activations_bytes'] - est['memory']['activations_bytes'])} engine runtime context")
    no_null(page)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, shots, "estimate", vp)

    # 405B on one L4: it does not fit, so no TTFT, no throughput and no price are shown.
    page.select_option("#model", "llama-3.1-405b")
    page.select_option("#hardware", "l4")
    page.fill("#est-devices", "1")
    page.fill("#est-tp", "1")
    page.fill("#est-batch", "1")
    page.click("#estimate-run")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "2")

    def card(name):
        return page.locator(f'#estimate-result .card[data-card="{name}"]')

    expect(card("Does not fit")).to_have_count(1)
    expect(card("Memory per device")).to_have_class(re.compile(r"\bbad\b"))
    for hidden in ("Time to first token", "Time per output token", "Communication", "Decode tokens/s", "Cost", "Throughput", "Energy"):
        expect(card(hidden)).to_have_count(0)
    assert "$" not in page.locator("#estimate-result .cards").inner_text()


def test_memory_beyond_the_device_tier_says_where_the_rest_lives(page, server, vp):
    # an iPhone streaming weights from flash read "6.64 GB, fits in 6.00 GB"
    if vp == "phone":
        pytest.skip("one viewport is enough for one card's text")
    ready(page, "#estimate?model=llama-3.2-3b&hardware=iphone-15-pro&batch=1&weights=fp16&activations=fp16&kv=fp16")
    if page.locator("#estimate-result").get_attribute("data-count") is None:
        page.click("#estimate-run")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", re.compile(r"\d+"))
    mem = page.locator('#estimate-result .card[data-card="Memory per device"]')
    expect(mem).to_contain_text("on the device")
    expect(mem).to_contain_text("in slower tiers")
    expect(mem).not_to_contain_text("fits in")


def test_cli_command_and_curl_give_the_numbers_the_page_shows(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough to run the commands")
    ready(page, "#estimate?model=llama-3.2-1b&hardware=l4&batch=4&gen=64")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1")
    ttft = page.locator("#estimate-result .card", has_text="Time to first token").locator(".v").inner_text()
    page.click("#estimate-result .commands summary")
    cli = page.locator("#estimate-result .cmd-cli").inner_text()
    curl = page.locator("#estimate-result .cmd-curl").inner_text()
    assert cli.startswith("tierwise estimate ") and "--batch 4" in cli and "--gen 64" in cli and "per-op" not in cli
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=False, timeout=60)
    assert out.returncode == 0, out.stderr
    assert fmt_time(json.loads(out.stdout)["ttft_s"]) == ttft
    argv = shlex.split(cli)[2:] + ["--json"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-c", "from planner.cli import run; run()", "estimate", *argv], capture_output=True, text=True, check=False,
                         timeout=300, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr[-2000:]
    assert fmt_time(json.loads(run.stdout)["ttft_s"]) == ttft


def test_estimate_shows_the_error_bars_the_api_gives(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough for the ranges")
    ready(page, "#estimate?model=llama-3.2-1b&hardware=l4&batch=4&gen=64")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1")
    page.click("#estimate-result .commands summary")
    curl = page.locator("#estimate-result .cmd-curl").inner_text()
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=False, timeout=60)
    u = json.loads(out.stdout)["uncertainty"]
    for name, key in (("Time to first token", "ttft_s"), ("Time per output token", "tpot_s"), ("Request latency", "latency_s")):
        i = u["intervals"][key]
        want = f"p10–p90 {fmt_time(i['p10'])} – {fmt_time(i['p90'])}{'' if i['validated'] else '*'}"
        expect(page.locator(f'#estimate-result .card[data-card="{name}"] .range')).to_have_text(want)
    notes = page.locator("#estimate-result .band-notes")
    expect(notes).to_contain_text("out-of-sample error")
    for n in u["notes"]:
        expect(notes).to_contain_text(n)


# ------------------------------------------------------------------------------ roofline


def test_roofline_points_all_reachable_readable_names_and_only_the_devices_roofs(page, server, shots, vp):
    ready(page, "#roofline?model=llama-3.1-8b&hardware=h100-sxm&batch=8")
    chart = page.locator("#roofline-chart")
    expect(chart.locator(".pt").first).to_be_visible()
    with server.client() as c:
        roofs = c.get("/v1/hardware/h100-sxm/roofs").json()
    # H100 has no int4 or fp4 tensor cores: no roof is labelled with them
    assert not any({"int4", "fp4"} & set(r["precisions"]) for r in roofs["compute"])
    labels = chart.locator("text.roof-label").all_text_contents()
    assert labels and not any(re.search(r"\b(int4|fp4)\b", t) for t in labels)
    # every point is the topmost element at its centre: none hidden under another
    hidden = chart.locator(".pt").evaluate_all("""ps => ps.filter(p => { p.scrollIntoView({ block: "center" });
        const r = p.getBoundingClientRect();
        const e = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2); return e !== p; })
        .map(p => p.dataset.phase + " " + p.dataset.op)""")
    assert hidden == []
    # the points hold every operator exactly once
    total = sum(int(n) for n in chart.locator(".pt").evaluate_all("ps => ps.map(p => p.dataset.count)"))
    assert str(total) == chart.get_attribute("data-points")
    # readable names: no raw '{i}' layer template in labels, tooltips or the table
    assert not any("{i}" in a for a in chart.locator(".pt").evaluate_all("ps => ps.map(p => p.getAttribute('aria-label'))"))
    chart.locator(".pt").first.focus()
    expect(page.locator("#tooltip")).to_be_visible()
    assert "{i}" not in page.locator("#tooltip").inner_text()
    # roof labels: inside the chart and not overlapping one another
    boxes = chart.locator("svg text.roof-label").evaluate_all("ts => ts.map(t => { const r = t.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; })")
    svg_box = chart.locator("svg").bounding_box()
    for i, (l1, t1, r1, b1) in enumerate(boxes):
        assert l1 >= svg_box["x"] - 1 and r1 <= svg_box["x"] + svg_box["width"] + 1, "a roof label is clipped"
        for l2, t2, r2, b2 in boxes[i + 1:]:
            assert r1 <= l2 or r2 <= l1 or b1 <= t2 or b2 <= t1, "two roof labels overlap"
    # readable at phone width: chart text at least 10 px, nothing sideways
    assert chart_text_px(page, "#roofline-chart") >= 10
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    # CSV of the operator table: one row per operator, raw numbers
    page.click("#roofline-table-box summary")
    with page.expect_download() as dl:
        page.click("#roofline-table button.csv")
    rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    assert rows[0][:3] == ["phase", "operator", "kind"] and len(rows) - 1 == int(chart.get_attribute("data-points"))
    float(rows[1][4])  # FLOPs as a number, not "1.2 GFLOP"
    shot(page, shots, "roofline", vp)


# ------------------------------------------------------------------------------ plan


def test_open_restores_the_form_and_the_sweep_solves_the_same_problem(page, server, shots, vp):
    pid = f"ui-open-{vp}"
    base = server.solve({**PLAN_BODY, "id": pid})
    server.solve({**PLAN_BODY, "id": f"ui-other-{vp}", "batch": 2})  # another problem: not on this frontier
    ready(page, "#plans")
    page.fill("#plans-search", pid)
    page.get_by_role("button", name=f"open plan {pid}").click()
    expect(page.locator("#plan-summary")).to_have_attribute("data-plan-id", pid)
    expect(page.locator("#model")).to_have_value("llama-3.2-1b")
    expect(page.locator("#hardware")).to_have_value("l4")
    expect(page.locator("#plan-devices")).to_have_value("1")
    expect(page.locator("#plan-mem")).to_have_value("3.1GB")
    chosen = {c["weights"] for c in base["plan"]["choices"].values()}
    assert set(page.input_value("#plan-formats").split(", ")) == chosen
    expect(page.locator("#pareto-scope")).to_contain_text(re.compile(r"\d+ other stored plans? of this model and hardware solve a different problem"))
    before = set(page.locator("#plan-pareto circle.pp").evaluate_all("cs => cs.map(c => c.dataset.planId)"))
    assert pid in before and not any(i.startswith("ui-other-") for i in before)
    # the sensitivity has a scale and says what 0 means
    sens = page.locator("#plan-summary .card", has_text="Sensitivity")
    expect(sens).to_contain_text("0 = every group at 16 bits")
    expect(sens.locator("#sens-scale")).not_to_be_empty()

    sent = []
    page.on("request", lambda r: sent.append(r.post_data_json) if r.method == "POST" and r.url.endswith("/v1/plans") else None)
    page.click("#pareto-sweep")
    expect(page.locator("#pareto-status")).to_contain_text("solved", timeout=3 * SOLVE_TIMEOUT_MS)
    assert sent, "the sweep sent no solve"
    for req in sent:
        assert req["devices"] == 1 and req["tp"] == 1 and req["model"] == "llama-3.2-1b" and req["batch"] == 1
        assert set(req["formats"]) == chosen
        assert req["max_memory_per_device"] < 3.1e9
    # the frontier holds this problem's plans only
    with server.client() as c:
        same = [i for i in c.get("/v1/plans", params={"model": "llama-3.2-1b", "hardware": "l4", "limit": 100}).json()["items"]]
    drawn = set(page.locator("#plan-pareto circle.pp").evaluate_all("cs => cs.map(c => c.dataset.planId)"))
    assert not any(i.startswith("ui-other-") for i in drawn) and pid in drawn and len(drawn) > len(before) and len(same) > len(drawn)
    assert chart_text_px(page, "#plan-pareto") >= 10
    no_null(page)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, shots, "plan", vp)
    # the link restores the view: the same plan, the same form
    url = page.url
    assert "plan=" + pid in url
    page.goto("about:blank")
    page.goto(url)
    expect(page.locator("#plan-summary")).to_have_attribute("data-plan-id", pid)
    expect(page.locator("#plan-mem")).to_have_value("3.1GB")


def test_offload_reads_against_the_device_and_a_diagnosis_change_is_for_one_solve(page, server, shots, vp):
    ready(page, "#plan")
    page.select_option("#model", "llama-3.2-1b")
    page.select_option("#hardware", "l4")
    for sel, value in {"#plan-mem": "2.2GB", "#plan-formats": "bf16, int8, int4-g128", "#plan-kv": "bf16", "#plan-tp": "1",
                       "#plan-pp": "1", "#plan-dp": "1"}.items():
        page.fill(sel, value)
    page.click("#plan-run")
    diag = page.locator("#plan-diagnosis")
    expect(diag).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    # the diagnosis speaks the form's language, not CLI flags
    assert "--" not in diag.inner_text()
    offload = diag.locator("li", has_text="Allow offload")
    expect(offload).to_have_count(1)
    shot(page, shots, "infeasible", vp)
    offload.get_by_role("button", name="Use this change").click()
    assert page.is_checked("#plan-offload")
    page.click("#plan-run")
    summary = page.locator("#plan-summary")
    expect(summary).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    # the change applied to that solve only
    expect(page.locator("#plan-oneshot")).to_contain_text("Allow offload")
    assert not page.is_checked("#plan-offload")
    plan = server.client().get(f"/v1/plans/{summary.get_attribute('data-plan-id')}").json()["plan"]
    assert plan["constraints"]["allow_offload"] is True
    dev = next(t for t in plan["predicted"]["tiers"].values() if t["role"] == "device")
    off = [n for n, t in plan["predicted"]["tiers"].items() if t["role"] != "device" and t["used_bytes"] > 0]
    assert off, "0.6 GB beside vLLM's 1.6 GB runtime context for a 2.5 GB model must offload"
    mem = page.locator("#plan-summary .card", has_text="Memory on the device")
    expect(mem).to_contain_text(f"{sig3(dev['used_bytes'] / 1e9)} GB")
    expect(mem).to_contain_text("within the 2.2 GB budget")
    expect(mem).to_contain_text(f"offloaded to {off[0]}")
    expect(mem).to_have_class(re.compile(r"\bgood\b"))
    no_null(page)


def test_diagnosis_without_a_binding_constraint_shows_no_null(page, server, vp):
    """A server whose diagnosis names no binding constraint and no change (the job's error
    as the planner can send it): nothing reads 'null'."""
    def failed_job(route):
        route.fulfill(status=200, content_type="application/json", body=json.dumps({
            "id": "j1", "kind": "plan", "status": "failed", "url": "/v1/jobs/j1", "plan_id": None, "plan_url": None, "solve_s": 0.1,
            "created_at": "2026-01-01T00:00:00+00:00", "updated_at": "2026-01-01T00:00:00+00:00",
            "error": {"code": "infeasible", "message": "nothing fits", "field": None, "details": {"message": "nothing fits", "binding": None, "changes": []}}}))

    def accepted(route):
        route.fulfill(status=202, content_type="application/json", body=json.dumps({"id": "j1", "status": "queued", "url": "/v1/jobs/j1"}))

    page.route("**/v1/jobs/j1", failed_job)
    page.route("**/v1/plans", lambda r: accepted(r) if r.request.method == "POST" else r.continue_())
    ready(page, "#plan")
    page.click("#plan-run")
    diag = page.locator("#plan-diagnosis")
    expect(diag).to_be_visible()
    expect(diag).to_contain_text("nothing fits")
    assert not re.search(r"\bnull\b", diag.inner_text())
    expect(diag.locator("text=binding")).to_have_count(0)


# ------------------------------------------------------------------------------ capacity


def test_capacity_ranks_only_what_meets_the_slos_and_reads_on_a_phone(page, server, shots, vp):
    with server.client() as c:
        if "/v1/capacity" not in c.get("/openapi.json").json()["paths"]:
            pytest.skip("this build of the service has no POST /v1/capacity")
    ready(page, "#capacity?model=llama-3.1-8b&hardware=l4,h100-sxm,a100-80gb-sxm&qps=10&ttft_slo_s=0.5&tpot_slo_s=0.03")
    rows = page.locator("#capacity-table tbody tr, #capacity-miss tbody tr")
    expect(rows).to_have_count(3, timeout=SOLVE_TIMEOUT_MS)
    with server.client() as c:
        ans = post_result(c, "/v1/capacity", {"model": "llama-3.1-8b", "hardware": ["l4", "h100-sxm", "a100-80gb-sxm"], "qps": 10,
                                              "ttft_slo_s": 0.5, "tpot_slo_s": 0.03})
    meets = sorted((h for h in ans["hardware"] if h["meets_slo"] and h["best"]), key=lambda h: h["best"]["usd_per_hour"])
    expect(page.locator("#capacity-table tbody tr td:nth-child(2)")).to_have_text([h["hardware"] for h in meets])
    misses = [h["hardware"] for h in ans["hardware"] if not (h["meets_slo"] and h["best"])]
    assert sorted(page.locator("#capacity-miss tbody tr td:nth-child(2)").all_text_contents()) == sorted(misses)
    # the cost-against-load axis: 2.5–40 QPS gets ticks between the powers of ten
    plot = page.locator("#capacity-plot")
    expect(plot).to_have_attribute("data-series", str(len(meets)), timeout=SOLVE_TIMEOUT_MS)
    ticks = plot.locator("svg g.axis > text").all_text_contents()
    assert {"5", "10", "20"} <= set(ticks), ticks
    assert chart_text_px(page, "#capacity-plot") >= 10
    # price columns and every cell on screen, no sideways scrolling
    assert fits_in_window(page, "#capacity-result td") == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    with page.expect_download() as dl:
        page.click("#capacity-result button.csv")
    table = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text())))
    assert [r[1] for r in table[1:]] == [h["hardware"] for h in meets]
    assert float(table[1][3]) == pytest.approx(meets[0]["best"]["usd_per_hour"])
    curl = page.locator("#capacity-result .cmd-curl").text_content()
    out = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, check=False, timeout=300)
    assert out.returncode == 0 and out.stdout, (curl, out.stderr)
    got = json.loads(out.stdout)
    if "hardware" not in got:  # 202: the search runs as a job; follow it as the note beside the command says
        assert got["url"] == f"/v1/jobs/{got['id']}", got
        with server.client() as c:
            got = poll_job(c, got)
    assert [h["hardware"] for h in got["hardware"]] == [h["hardware"] for h in ans["hardware"]]
    assert page.locator("#capacity-result .cmd-cli").text_content().startswith("tierwise capacity serve --model llama-3.1-8b")
    shot(page, shots, "capacity", vp)

    # 405B cannot fit on one device of any of them: no price, no timing, nothing ranked
    page.goto("/#capacity?model=llama-3.1-405b&hardware=l4&qps=1&max_devices=1")
    expect(page.locator("body")).to_have_attribute("data-restored", "true", timeout=120_000)
    expect(page.locator("#capacity-none")).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    nofit = page.locator("#capacity-miss tbody tr")
    expect(nofit).to_have_count(1)
    expect(nofit).to_contain_text("does not fit")
    assert not re.search(r"\$|\d+(\.\d+)? ?(ms|µs|s)\b", nofit.inner_text().replace("does not fit", ""))
    # the API's reason for the pair, not a generic line: the largest replica --max-devices allows
    expect(nofit).to_contain_text("tp 1 × pp 1 = 1 × 24.0 GB")
    expect(nofit).to_contain_text("devices ≤ 'max_devices' 1")


# ------------------------------------------------------------------------------ stored plans


def test_stored_plans_fit_a_phone_and_an_empty_diff_says_so(page, server, shots, vp):
    a, b = f"ui-same-{vp}-a", f"ui-same-{vp}-b"
    server.solve({**PLAN_BODY, "id": a})
    server.solve({**PLAN_BODY, "id": b})
    ready(page, f"#plans?q=ui-same-{vp}-")
    rows = page.locator("#plans-table tbody tr")
    expect(rows).to_have_count(2)
    assert fits_in_window(page, "#plans-table button") == []
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.get_by_label(f"select plan {a} for diff").check()
    page.get_by_label(f"select plan {b} for diff").check()
    page.click("#plans-diff")
    expect(page.locator("#diff-summary")).to_contain_text("0 of")
    expect(page.locator("#diff-none")).to_be_visible()
    no_null(page)
    shot(page, shots, "plans", vp)


# ------------------------------------------------------------------------------ new views


def test_throughput_against_latency_over_a_batch_sweep(page, server, shots, vp):
    ready(page, "#throughput?model=llama-3.1-8b&hardware=l4&batches=1,4,16,64,1024")
    chart = page.locator("#throughput-chart")
    expect(chart).to_have_attribute("data-points", re.compile(r"\d+"), timeout=60_000)
    pts = {}
    with server.client() as c:
        for b in (1, 4, 16, 64, 1024):
            res = c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "l4", "batch": b})
            assert res.status_code in (200, 422), res.text
            if res.status_code == 422:  # does not fit: 422 infeasible with the estimate in its details
                assert res.json()["error"]["code"] == "infeasible"
            pts[b] = res.json() if res.status_code == 200 else res.json()["error"]["details"]["estimate"]
    fit = [b for b, d in pts.items() if d["memory"]["fits"]]
    assert 1 in fit and 1024 not in fit, "the sweep should cross the memory limit"
    expect(chart).to_have_attribute("data-points", str(len(fit)))
    expect(chart.locator("circle.tp")).to_have_count(len(fit))
    expect(page.locator("#throughput-nofit")).to_contain_text("1024")
    row = page.locator("#throughput-table tbody tr", has=page.locator("td:first-child", has_text=re.compile(r"^16$")))
    cells = row.locator("td").all_text_contents()
    assert cells[2] == sig3(1 / pts[16]["tpot_s"]) and cells[3] == sig3(pts[16]["output_tokens_per_s"] / pts[16]["devices"])
    # more batch: more tokens/s per device, fewer per user
    per_dev = [float(x) for x in chart.locator("circle.tp").evaluate_all("cs => cs.map(c => c.getAttribute('cy'))")]
    assert per_dev == sorted(per_dev, reverse=True)
    assert chart_text_px(page, "#throughput-chart") >= 10
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    q = parse_qs(urlsplit(page.url).fragment.split("?", 1)[1])
    assert q["batches"] == ["1,4,16,64,1024"] and q["model"] == ["llama-3.1-8b"]
    shot(page, shots, "throughput", vp)


def test_compare_two_estimates_side_by_side_and_by_link(page, server, shots, vp):
    ready(page, "#estimate")
    page.select_option("#model", "llama-3.1-8b")
    page.select_option("#hardware", "h100-sxm")
    page.fill("#est-batch", "1")
    page.click("#estimate-run")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1")
    page.click("#compare-set-a")
    page.fill("#est-weights", "fp8")
    page.fill("#est-batch", "16")
    page.click("#estimate-run")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "2")
    page.click("#compare-set-b")
    expect(page.locator("#view-compare")).to_be_visible()
    with server.client() as c:
        a = c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 1}).json()
        b = c.post("/v1/estimate", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "batch": 16, "weights": "fp8"}).json()
    tpot = page.locator("#compare-table tr", has=page.locator("th", has_text=re.compile("^TPOT$"))).locator("td")
    expect(tpot.nth(0)).to_have_text(fmt_time(a["tpot_s"]))
    expect(tpot.nth(1)).to_have_text(fmt_time(b["tpot_s"]))
    assert sorted(page.locator("#compare-inputs tr.differs th").all_text_contents()) == ["batch", "weights"]
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth + 1")
    shot(page, shots, "compare", vp)
    url = page.url
    assert url.split("#")[1].startswith("compare?a=")
    page.goto("about:blank")
    page.goto(url)
    expect(page.locator("#compare-table")).to_be_visible()
    expect(page.locator("#compare-table tr", has=page.locator("th", has_text=re.compile("^TPOT$"))).locator("td").nth(1)).to_have_text(fmt_time(b["tpot_s"]))


def test_error_messages_name_the_form_field_not_the_cli_flag(page, server, vp):
    ready(page, "#plan")
    page.fill("#plan-time", "-3")
    page.click("#plan-run")
    with server.client() as c:
        err = c.post("/v1/plans", json={"model": "llama-3.1-8b", "hardware": "h100-sxm", "devices": 1, "time_limit_s": -3}).json()["error"]
    box = page.locator('#plan-form [data-field="time_limit_s"] .field-error')
    expect(box).to_be_visible()
    expect(page.locator("#plan-time")).to_have_attribute("aria-invalid", "true")
    text = box.inner_text()
    assert "--time-limit" not in text and "'time_limit_s'" not in text
    assert "Solver time limit" in text or err["message"].split(": ", 1)[-1] in text


# Last: on a server that cannot cancel, the abandoned solve keeps running to the end.
def test_solve_timer_counts_from_the_click_and_cancel(page, server, vp):
    if vp == "phone":
        pytest.skip("the timer and Cancel do not depend on the window")
    ready(page, "#plan")
    # A search long enough to still be running when Cancel is clicked (405B over 64 devices).
    page.select_option("#model", "llama-3.1-405b")
    page.select_option("#hardware", "h100-sxm")
    page.fill("#plan-devices", "64")
    page.fill("#plan-time", "60")
    page.click("#plan-run")
    text = page.locator("#plan-progress .progress-text")
    # The server holds the POST for its 1.5 s sync wait: the time counts through it, so the
    # first time the job's status shows, at least 1.5 s have passed (not a fresh 0.0 s).
    expect(text).to_have_text(re.compile(r"^submitted, \d+\.\d s$"))
    expect(text).to_have_text(re.compile(r"^solving: \w+, \d+\.\d s$"), timeout=60_000)
    first = float(re.search(r"(\d+\.\d) s", text.inner_text()).group(1))
    assert first >= 1.5, f"the timer restarted when the job came back: {first} s"
    with server.client() as c:
        can_cancel = "delete" in c.get("/openapi.json").json()["paths"].get("/v1/jobs/{job_id}", {})
    page.click("#plan-cancel")
    note = page.locator("#plan-cancelled")
    expect(note).to_be_visible()
    if can_cancel:
        expect(note).to_contain_text("Cancelled")
    else:
        expect(note).to_contain_text(re.compile(r"cannot cancel a running solve \(DELETE /v1/jobs/\S+ answered 40[45]\)"))
    expect(page.locator("#plan-progress")).to_be_hidden()
    expect(page.locator("#plan-run")).to_be_enabled()


def test_capacity_lists_a_format_left_out_as_such_not_as_a_pair_that_does_not_run(page, server, vp):
    """vLLM runs NVFP4 weights in NVFP4 on B200 but not FP8 ones: the FP8 entry under unsupported
    reads 'left out' with its weights and activations, while the pair itself is ranked."""
    ready(page, "#capacity?model=llama-3.1-8b&hardware=b200&engine=vllm&qps=5&ttft_slo_s=1&tpot_slo_s=0.05"
                "&formats=nvfp4,fp8&activations=nvfp4")
    expect(page.locator("#capacity-table tbody tr")).to_have_count(1, timeout=SOLVE_TIMEOUT_MS)
    miss = page.locator("#capacity-miss tbody tr")
    expect(miss).to_have_count(1)
    expect(miss).to_contain_text("vllm on b200 leaves out fp8 weights with nvfp4 activations")
    expect(miss).to_contain_text("left out")
    expect(miss).not_to_contain_text("does not run on b200")


def test_a_plan_shows_the_error_bars_the_api_stores(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough for the ranges")
    _, plan = solve_in_plan_view(page, server, "llama-3.2-1b", "l4")
    u = plan["predicted"]["uncertainty"]
    for name, key in (("Time to first token", "ttft_s"), ("Time per output token", "tpot_s")):
        i = u["intervals"][key]
        want = f"p10–p90 {fmt_time(i['p10'])} – {fmt_time(i['p90'])}{'' if i['validated'] else '*'}"
        expect(page.locator(f'#plan-summary .card[data-card="{name}"] .range')).to_have_text(want)
    notes = page.locator("#plan-summary .band-notes")
    expect(notes).to_contain_text("out-of-sample error")
    for n in u["notes"]:
        expect(notes).to_contain_text(n)


def test_capacity_with_nothing_that_fits_lists_every_engine_and_hardware_pair(page, server, vp):
    """Several engines and nothing fits (a 422): the page built one row per hardware, keyed by hardware, so
    TensorRT-LLM's l4 row and its own reason (212 GB against vLLM's 216 GB) and the pair it does not run were lost."""
    ready(page, "#capacity?model=llama-3.1-405b&hardware=l4,mi300x&engine=vllm,trtllm&qps=1&ttft_slo_s=2"
                "&tpot_slo_s=0.1&max_devices=1")
    rows = page.locator("#capacity-miss tbody tr")
    expect(rows).to_have_count(4, timeout=SOLVE_TIMEOUT_MS)
    expect(rows.filter(has_text="trtllm").filter(has_text="212 GB in int4-g128")).to_have_count(1)
    expect(rows.filter(has_text="vllm").filter(has_text="216 GB in int4-g128")).to_have_count(1)
    expect(rows.filter(has_text="does not run on mi300x")).to_have_count(1)
    # the reason's own label at phone width, not the devices column's
    expect(rows.first.locator('td[data-label="why"]')).to_have_count(1)
    expect(page.locator('button[data-csv$="-not-ranked.csv"]')).to_have_count(1)


def test_capacity_shows_the_disaggregated_pools_the_api_gives(page, server, vp):
    body = {"model": "llama-3.2-1b", "hardware": ["h100-sxm", "l4", "snapdragon-8-gen-3"], "qps": 20, "ttft_slo_s": 1,
            "tpot_slo_s": 0.05, "serving": "disaggregated"}
    ready(page, "#capacity?model=llama-3.2-1b&hardware=h100-sxm,l4,snapdragon-8-gen-3&qps=20&ttft_slo_s=1&tpot_slo_s=0.05"
                "&serving=disaggregated")
    rows = page.locator("#capacity-disagg-table tbody tr")
    with server.client() as c:
        ans = post_result(c, "/v1/capacity", body)
    pairs = [h for h in ans["hardware"] if h.get("disaggregated")]
    assert pairs, "the API should size disaggregated pools for these pairs"
    expect(rows).to_have_count(len(pairs), timeout=SOLVE_TIMEOUT_MS)
    for h in pairs:
        d = h["disaggregated"]
        o = d["best"] or d["closest"]
        if o is None:  # no pools at all: the row says why, as the API does (a phone has no link for the KV cache)
            row = page.locator("#capacity-disagg-table tbody tr.nofit", has_text=h["hardware"])
            expect(row).to_contain_text(d["reason"])
            continue
        row = page.locator(f'#capacity-disagg-table tbody tr[data-hardware="{o["hardware"]}"]')
        expect(row.locator('td[data-label="prefill pool"]')).to_have_text(
            f"tp{o['prefill']['tp']}·pp{o['prefill']['pp']} × {o['prefill']['replicas']}")
        expect(row.locator('td[data-label="decode pool"]')).to_have_text(
            f"tp{o['decode']['tp']}·pp{o['decode']['pp']} × {o['decode']['replicas']}")
        expect(row.locator('td[data-label="devices (aggregated)"]')).to_have_text(
            f"{o['devices']} ({d['vs_aggregated']['aggregated_devices']})")
        expect(row.locator('td[data-label="winner"]')).to_have_text(d["vs_aggregated"]["winner"])
        i = o["uncertainty"]["intervals"]["tpot_s"]
        want = f"{fmt_time(o['tpot_p50_s'])} / {fmt_time(o['tpot_s'])} ({fmt_time(i['p10'])} – {fmt_time(i['p90'])}{'' if i['validated'] else '*'})"
        expect(row.locator("td").nth(7)).to_have_text(want)
    assert any(not (h["disaggregated"]["best"] or h["disaggregated"]["closest"]) for h in pairs), "a pair without pools"
    expect(page.locator("#capacity-disagg-bands")).to_contain_text("p10–p90")
    assert fits_in_window(page, "#capacity-disagg td") == []


def test_capacity_sends_only_what_the_user_changed(page, server, vp):
    """The form shows the server's defaults but sends none of them: given, a default is an explicit choice (kv bf16
    refuses an engine whose cache is fp16; runtime graph prices hf-transformers, an eager engine, as compiled)."""
    if vp == "phone":
        pytest.skip("one viewport is enough for the request body")
    ready(page, "#capacity?model=llama-3.2-1b&hardware=l4&qps=2&ttft_slo_s=2&tpot_slo_s=0.1")
    expect(page.locator("#capacity-table tbody tr, #capacity-miss tbody tr")).not_to_have_count(0, timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#cap-runtime")).to_have_value("")
    expect(page.locator("#cap-kv")).to_have_value("bf16")  # shown, not sent
    page.click("#capacity-result .commands summary")
    curl = page.locator("#capacity-result .cmd-curl").inner_text()
    body = json.loads(curl.split("-d '", 1)[1].rsplit("'", 1)[0])
    assert body == {"model": "llama-3.2-1b", "qps": 2, "ttft_slo_s": 2, "tpot_slo_s": 0.1, "hardware": ["l4"]}, body
    assert page.locator("#capacity-result .cmd-cli").inner_text() == \
        "tierwise capacity serve --model llama-3.2-1b --qps 2 --ttft-slo 2 --tpot-slo 0.1 --hardware l4"
    page.select_option("#cap-runtime", "eager")
    page.click("#capacity-run")
    expect(page.locator("#capacity-result .cmd-cli")).to_contain_text("--runtime eager", timeout=SOLVE_TIMEOUT_MS)


def test_a_link_without_formats_takes_the_hardwares_defaults(page, server, vp):
    """A hand-written link naming a phone and no formats: the formats are the engine's defaults there (fp16), as
    after picking the phone by hand; before, the form's bf16 stayed and ExecuTorch refused it."""
    if vp == "phone":
        pytest.skip("one viewport is enough for the restored form")
    with server.client() as c:
        want = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "snapdragon-8-gen-3"}).json()
    assert want["weights"] == "fp16", want
    estimated(page, "#estimate?model=llama-3.2-1b&hardware=snapdragon-8-gen-3")
    for f in ("weights", "activations", "kv"):
        expect(page.locator(f"#est-{f}")).to_have_value(want[f])
    expect(page.locator("#estimate-result .card[data-card='Time per output token'] .v")).to_have_text(fmt_time(want["tpot_s"]))
    # a link that names its formats keeps them
    page.goto("/#estimate?model=llama-3.2-1b&hardware=snapdragon-8-gen-3&weights=int4-g32")
    expect(page.locator("body")).to_have_attribute("data-restored", "true", timeout=120_000)
    expect(page.locator("#est-weights")).to_have_value("int4-g32")
    expect(page.locator("#est-kv")).to_have_value("fp16")
    # the throughput sweep of the same link runs too
    page.goto("/#throughput?model=llama-3.2-1b&hardware=snapdragon-8-gen-3&batches=1,2")
    expect(page.locator("#throughput-result table tbody tr")).to_have_count(2, timeout=SOLVE_TIMEOUT_MS)


def test_the_engine_picker_follows_the_models_family_as_the_api_does(page, server, vp):
    """ResNet-50 on a CPU: the API's default is hf-transformers (llama.cpp runs no CNN); the page picks the same, by
    link and by hand, and shows the API's figures."""
    if vp == "phone":
        pytest.skip("one viewport is enough for the picker")
    with server.client() as c:
        want = c.post("/v1/estimate", json={"model": "resnet-50", "hardware": "cpu-host", "batch": 8}).json()
    assert want["engine"] == "hf-transformers", want["engine"]
    estimated(page, "#estimate?model=resnet-50&hardware=cpu-host&batch=8")
    expect(page.locator("#engine")).to_have_value("hf-transformers")
    expect(page.locator("#estimate-result .card[data-card='Latency (one forward pass)'] .v")).to_have_text(fmt_time(want["latency_s"]))
    # the header of a model that generates nothing says so, not "gen null"
    head = page.locator("#estimate-result p.muted").first
    expect(head).to_contain_text("batch 8 images, one forward pass")
    assert "null" not in page.locator("#estimate-result").inner_text()
    # by hand: a decoder on the CPU takes llama.cpp, then ResNet-50 takes hf-transformers back
    page.select_option("#model", "llama-3.2-1b")
    expect(page.locator("#engine")).to_have_value("llamacpp")
    page.select_option("#model", "resnet-50")
    expect(page.locator("#engine")).to_have_value("hf-transformers")


def test_the_activations_card_is_the_apis_and_names_the_runtime_context(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough for the card")
    with server.client() as c:
        d = c.post("/v1/estimate", json={"model": "llama-3.2-1b", "hardware": "snapdragon-8-gen-3"}).json()
    ready(page, "#estimate?model=llama-3.2-1b&hardware=snapdragon-8-gen-3")
    card = page.locator("#estimate-result .card[data-card='Activations per device']")
    expect(card.locator(".v")).to_have_text(si_bytes(d["memory"]["activations_bytes"]))
    ctx = sum(t["activations_bytes"] for t in d["memory"]["tiers"].values()) - d["memory"]["activations_bytes"]
    assert ctx > 0
    expect(card.locator(".s")).to_have_text(f"+ {si_bytes(ctx)} engine runtime context")


def test_a_link_with_one_bad_field_keeps_the_others_and_an_engine_that_does_not_run_is_replaced(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough for the restored form")
    ready(page, "#estimate?model=llama-3.2-1bb&hardware=m2-max&batch=8")
    expect(page.locator("#hardware")).to_have_value("m2-max")
    expect(page.locator("#est-batch")).to_have_value("8")
    expect(page.locator("[data-field='model'] .field-error").first).to_contain_text("llama-3.2-1bb")
    # the same tab, another link: nothing of the first stays (its batch, its error)
    page.goto("/#estimate?model=llama-3.2-1b&hardware=snapdragon-8-gen-3&engine=vllm")
    expect(page.locator("#estimate-result")).to_have_attribute("data-count", "1", timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#est-batch")).to_have_value("1")
    expect(page.locator("#engine")).to_have_value("executorch")
    expect(page.locator("#est-weights")).to_have_value("fp16")
    expect(page.locator("#context")).to_contain_text("the link names engine 'vllm', which does not run on snapdragon-8-gen-3")
    expect(page.locator("[data-field='model'] .field-error").first).to_be_hidden()


def test_a_plan_link_with_an_unknown_id_says_so_in_the_plan_view(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#plan?plan=doesnotexist123")
    expect(page.locator("#plan-form .form-error")).to_contain_text("doesnotexist123")


def test_a_plan_says_the_limits_it_was_solved_within_and_which_are_defaults(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    summary, plan = solve_in_plan_view(page, server, "llama-3.2-1b", "snapdragon-8-gen-3", {"#plan-mem": "3GB"})
    tpot = plan["constraints"]["tpot_slo_s"]
    assert tpot, "a phone plan has the reading-speed TPOT limit by default"
    limits = page.locator("#plan-limits")
    expect(limits).to_contain_text(f"TPOT ≤ {fmt_time(tpot)} (default for this hardware)")
    expect(limits).to_contain_text("memory ≤ 3 GB per device")
    # opened by link in a fresh tab, the plan itself says the limit was the default, and re-solving takes it again
    assert plan["constraints"]["tpot_slo_default"] is True
    other = page.context.new_page()
    other.goto(f"/#plan?plan={summary.get_attribute('data-plan-id')}")
    expect(other.locator("#plan-limits")).to_contain_text("(default for this hardware)", timeout=120_000)
    expect(other.locator("#plan-tpot")).to_have_value("")
    other.close()


def test_a_compare_link_says_which_side_is_wrong(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#compare?a=model%3Dllama-3.2-1b%26hardware%3Dsnapdragon-8-gen-3&b=model%3Dbert-base%26hardware%3Dnope")
    expect(page.locator("#compare-error")).to_contain_text("B: the link names hardware 'nope'")
    page.goto("/#compare?a=model%3Dllama-3.2-1b%26hardware%3Dl4%26batch%3D0&b=model%3Dllama-3.2-1b%26hardware%3Dl4")
    expect(page.locator("#compare-error")).to_contain_text("A: ")
    expect(page.locator("#compare-error")).to_contain_text("Batch")


def test_an_engines_refusal_goes_when_the_hardware_changes_the_format(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#estimate")
    page.select_option("#model", "llama-3.2-1b")
    page.select_option("#hardware", "h100-sxm")
    expect(page.locator("body")).to_have_attribute("data-engine-ready", "true")
    page.fill("#est-weights", "int3")
    page.click("#estimate-run")
    err = page.locator("[data-field='weights'] .field-error").first
    expect(err).to_be_visible()
    page.select_option("#hardware", "alveo-u50")
    expect(page.locator("#est-weights")).not_to_have_value("int3")
    expect(err).to_be_hidden()


def test_the_throughput_sweep_of_a_cnn_is_latency_against_images_per_second(page, server, vp):
    """ResNet-50 generates no tokens: no tokens/s-per-user curve (it said 'no batch size fits' while every one did),
    but each batch's forward-pass latency and images/s, as the API gives them."""
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#throughput?model=resnet-50&hardware=zcu102&batches=1,2,4")
    rows = page.locator("#throughput-table tbody tr")
    expect(rows).to_have_count(3, timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#throughput-forward")).to_contain_text("generates no tokens")
    expect(page.locator("#throughput-table thead")).to_contain_text("images/s per device")
    with server.client() as c:
        for i, b in enumerate((1, 2, 4)):
            d = c.post("/v1/estimate", json={"model": "resnet-50", "hardware": "zcu102", "batch": b}).json()
            assert d["memory"]["fits"]
            cells = rows.nth(i).locator("td")
            expect(cells.nth(1)).to_have_text("yes")
            expect(cells.nth(2)).to_have_text(sig3(d["samples_per_s"] / d["devices"]))
            expect(cells.nth(3)).to_have_text(fmt_time(d["latency_s"]))
    assert "No batch size fits" not in page.locator("#throughput-result").inner_text()


def test_a_link_says_what_it_could_not_take(page, server, vp):
    """Misspelt keys, a choice the form does not offer, a key given twice and unknown hardware in a capacity link are
    said, not silently dropped; the rest of the link still runs."""
    if vp == "phone":
        pytest.skip("one viewport is enough")
    estimated(page, "#estimate?model=llama-3.2-1b&hardware=m2-max&batchh=4&weigths=int4-g128&batch=2&batch=8")
    expect(page.locator("#est-batch")).to_have_value("2")
    box = page.locator("#estimate-form .form-error")
    expect(box).to_contain_text("the link's 'batchh', 'weigths' are not fields of this view: ignored")
    expect(box).to_contain_text("the link gives “Batch” more than once: the first is used")
    page.goto("/#plan?model=llama-3.2-1b&hardware=l4&objective=fastest")
    expect(page.locator("body")).to_have_attribute("data-restored", "true", timeout=120_000)
    expect(page.locator("[data-field='objective'] .field-error").first).to_contain_text("the link's objective 'fastest' is not one of")
    page.goto("/#capacity?model=llama-3.2-1b&hardware=nope,l4&qps=2&ttft_slo_s=2&tpot_slo_s=0.1")
    expect(page.locator("#capacity-table tbody tr")).to_have_count(1, timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#capacity-form .form-error")).to_contain_text("the link names hardware 'nope'")


def test_compare_of_an_encoder_and_a_cnn_compares_like_with_like(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#compare?a=model%3Dbert-base%26hardware%3Diphone-15-pro&b=model%3Dresnet-50%26hardware%3Dzcu102")
    table = page.locator("#compare-table")
    expect(table).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    row = lambda name: table.locator("tr", has=page.locator("th", has_text=re.compile(f"^{re.escape(name)}$")))  # noqa: E731
    expect(row("samples/s (images for a CNN)")).to_have_count(1)
    expect(row("tokens/s per device")).to_have_count(0)  # neither generates tokens
    expect(row("energy J/token").locator("td").nth(2)).to_have_text("per prompt token vs per image")
    assert "NaN" not in table.inner_text() and "−–" not in table.inner_text()


def test_a_result_says_when_the_pickers_moved_on(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    estimated(page, "#estimate?model=llama-3.2-1b&hardware=l4")
    expect(page.locator("#estimate-result .stale-note")).to_have_count(0)
    page.select_option("#hardware", "h100-sxm")
    expect(page.locator("#estimate-result .stale-note")).to_contain_text("changed since this result")
    page.click("#estimate-run")
    expect(page.locator("#estimate-result .stale-note")).to_have_count(0, timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#estimate-result")).to_contain_text("h100-sxm")


def test_a_blocked_link_leaves_no_earlier_result_and_a_new_one_starts_from_the_defaults(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    estimated(page, "#estimate?model=llama-3.2-1b&hardware=snapdragon-8-gen-3")
    page.goto("/#estimate?model=nope-1b&hardware=snapdragon-8-gen-3&batch=4")
    expect(page.locator("[data-field='model'] .field-error").first).to_contain_text("nope-1b")
    expect(page.locator("#estimate-result .card")).to_have_count(0)
    # throughput: the batches of an earlier link do not stay
    page.goto("/#throughput?model=resnet-50&hardware=h100-sxm&batches=1,8")
    expect(page.locator("#throughput-table tbody tr")).to_have_count(2, timeout=SOLVE_TIMEOUT_MS)
    page.goto("/#throughput?model=bert-base&hardware=cpu-host")
    expect(page.locator("#tp-batches")).to_have_value("1, 2, 4, 8, 16, 32, 64, 128, 256", timeout=SOLVE_TIMEOUT_MS)
    # a plan id that cannot be one is refused as an unknown id, with no earlier plan under it
    page.goto("/#plan?plan=..%2F..%2Fv1%2Fhardware")
    expect(page.locator("#plan-form .form-error")).to_contain_text("unknown plan id")
    expect(page.locator("#plan-summary")).to_have_count(0)


def test_a_capacity_link_starts_from_the_defaults_and_refuses_an_unknown_model(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#capacity?model=llama-3.2-1b&hardware=l4&qps=2&ttft_slo_s=2&tpot_slo_s=0.2&serving=disaggregated")
    expect(page.locator("#capacity-table tbody tr")).to_have_count(1, timeout=SOLVE_TIMEOUT_MS)
    page.goto("/#capacity?model=llama-3.2-1b&hardware=l4&qps=2&ttft_slo_s=2&tpot_slo_s=0.1&engine=zzz,vllm")
    expect(page.locator("#capacity-form .form-error")).to_contain_text("engine 'zzz'", timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#cap-serving")).not_to_have_value("disaggregated")
    page.goto("/#capacity?model=nope&hardware=l4&qps=2&ttft_slo_s=2&tpot_slo_s=0.1")
    expect(page.locator("#capacity-form [data-field='model'] .field-error")).to_contain_text("the link names model 'nope'")
    expect(page.locator("#capacity-table")).to_have_count(0)


def test_a_compare_link_clears_an_earlier_error_and_reports_a_replaced_engine(page, server, vp):
    if vp == "phone":
        pytest.skip("one viewport is enough")
    ready(page, "#compare?a=model%3Dresnet-50%26hardware%3Dzzz&b=model%3Dresnet-50%26hardware%3Dh100-sxm")
    expect(page.locator("#compare-error")).to_contain_text("A: the link names hardware 'zzz'")
    expect(page.locator("#compare-table")).to_have_count(0)
    page.goto("/#compare?a=model%3Dresnet-50%26hardware%3Dh100-sxm&b=model%3Dresnet-50%26hardware%3Da100-80gb-sxm%26engine%3Dexecutorch")
    expect(page.locator("#compare-table")).to_be_visible(timeout=SOLVE_TIMEOUT_MS)
    expect(page.locator("#compare-error")).not_to_contain_text("zzz")
    expect(page.locator("#compare-error")).to_contain_text("B: the link names engine 'executorch'")
    # two CNNs: the rows say what they count
    expect(page.locator("#compare-table th", has_text="energy J/image")).to_have_count(1)
    expect(page.locator("#compare-table th", has_text=re.compile("^TTFT$"))).to_have_count(0)
