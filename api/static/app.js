// Tierwise planner page: talks to the REST API of the server that serves it (same origin only).
// Hand-written, no dependencies: charts are SVG drawn here. Every value from the server is
// put into the page as text (textContent / SVG attributes), never parsed as HTML.
"use strict";

(() => {
  const KEY_STORAGE = "tierwise.apiKey";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const POLL_MS = 500;

  const state = {
    models: [],
    hardware: [],
    formats: new Map(), // name -> {bits_per_value, ...}
    aliases: {},
    exportFormats: [],
    roofs: new Map(), // hardware id -> roofs
    estimate: null,
    plan: null, // PlanPublic {id, created_at, plan}
    planRequest: null,
    planCache: new Map(), // id -> PlanPublic (plans are immutable once stored)
    plansList: [],
    plansNext: 0,
    selected: new Set(),
    capacitySchema: null,
    timings: { estimates: [] },
  };

  // ------------------------------------------------------------------ small DOM helpers

  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }

  function setAttrs(node, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") node.setAttribute("class", v);
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function append(node, children) {
    for (const c of children.flat(Infinity)) {
      if (c === null || c === undefined || c === false) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r()));

  // ------------------------------------------------------------------ number formatting (SI, decimal)

  function sig(x, digits = 3) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (!Number.isFinite(x)) return x > 0 ? "∞" : "−∞";
    if (x === 0) return "0";
    const a = Math.abs(x);
    if (a >= 1e4) return Math.round(x).toLocaleString("en-US");
    return Number(x.toPrecision(digits)).toLocaleString("en-US", { maximumFractionDigits: 6 });
  }

  function siPrefix(x, unit, digits = 3) {
    if (x === null || x === undefined || !Number.isFinite(x)) return sig(x);
    const steps = [[1e15, "P"], [1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"]];
    const a = Math.abs(x);
    for (const [f, p] of steps) if (a >= f) return `${sig(x / f, digits)} ${p}${unit}`;
    return `${sig(x, digits)} ${unit}`;
  }

  const fmtBytes = (b) => siPrefix(b, "B"); // 1 GB = 1e9 B, as everywhere in Tierwise
  const fmtFlops = (f) => siPrefix(f, "FLOP");

  function fmtTime(s) {
    if (s === null || s === undefined || !Number.isFinite(s)) return sig(s);
    const a = Math.abs(s);
    if (a === 0) return "0 s";
    if (a < 1e-3) return `${sig(s * 1e6)} µs`;
    if (a < 1) return `${sig(s * 1e3)} ms`;
    return `${sig(s)} s`;
  }

  const fmtPct = (x) => (x === null || x === undefined ? "–" : `${sig(x * 100)} %`);
  const perMillion = (x) => (x === null || x === undefined ? "–" : `$${sig(x)} / M tokens`);

  // ------------------------------------------------------------------ API client

  class ApiError extends Error {
    constructor(status, error) {
      super(error.message || `HTTP ${status}`);
      this.status = status;
      this.code = error.code || `http_${status}`;
      this.field = error.field || null;
      this.details = error.details;
    }
  }

  function apiKey() {
    return sessionStorage.getItem(KEY_STORAGE) || "";
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    const key = apiKey();
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method, headers, cache: "no-store", credentials: "omit" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, { code: "network", message: `the server did not answer (${e.message}); is tierwise serve still running?` });
    }
    const text = res.status === 204 ? "" : await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!res.ok) {
      const err = new ApiError(res.status, (data && data.error) || { code: `http_${res.status}`, message: text || res.statusText });
      if (res.status === 401) askForKey(err.message);
      throw err;
    }
    return { status: res.status, data };
  }

  // ------------------------------------------------------------------ errors next to fields

  function fieldsIn(scopes) {
    return scopes.flatMap((s) => $$("[data-field]", s));
  }

  function clearErrors(...scopes) {
    for (const s of scopes) {
      for (const p of $$(".field-error, .form-error", s)) {
        if (p.id === "global-error") continue;
        p.textContent = "";
        p.hidden = true;
      }
      for (const i of $$("[aria-invalid]", s)) i.removeAttribute("aria-invalid");
      for (const c of $$("td.flag", s)) c.classList.remove("flag");
    }
    $("#global-error").hidden = true;
  }

  // Show an API error beside the control its `field` names (a dotted path such as
  // "formats.0" or "choices.model.layers.4.mlp.gate_up.weights" falls back to its
  // prefixes), else in the form's error box, else in the page banner.
  function showError(scopes, err) {
    const message = err.message || String(err);
    let field = err.field || "";
    const candidates = fieldsIn(scopes);
    while (field) {
      const f = field;
      const hit = candidates.find((c) => c.dataset.field.split(/\s+/).includes(f));
      if (hit) {
        const p = $(".field-error", hit);
        p.textContent = message;
        p.hidden = false;
        const control = $("input, select, textarea", hit);
        if (control) control.setAttribute("aria-invalid", "true");
        return hit;
      }
      field = field.includes(".") ? field.slice(0, field.lastIndexOf(".")) : "";
    }
    for (const s of scopes) {
      const box = $(".form-error", s) || (s.classList && s.classList.contains("form-error") ? s : null);
      if (box) {
        box.textContent = err.field ? `${err.field}: ${message}` : message;
        box.hidden = false;
        return box;
      }
    }
    const g = $("#global-error");
    g.textContent = message;
    g.hidden = false;
    return g;
  }

  // Wire every field's error paragraph to its control for screen readers.
  function describeErrors() {
    let n = 0;
    for (const f of $$(".field")) {
      const p = $(":scope > .field-error", f);
      const control = $(":scope > input, :scope > select, :scope > textarea", f);
      if (!p || !control) continue;
      if (!p.id) p.id = `err-${++n}-${control.id || "field"}`;
      const ids = (control.getAttribute("aria-describedby") || "").split(/\s+/).filter(Boolean);
      if (!ids.includes(p.id)) ids.push(p.id);
      control.setAttribute("aria-describedby", ids.join(" "));
    }
  }

  // ------------------------------------------------------------------ form values

  const INT_RE = /^[+-]?\d+$/;
  const FLOAT_RE = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

  // Values go to the API as typed when they are not numbers, so that the API's own
  // message ("Input should be a valid integer; got 'abc'") is what the user reads.
  function readForm(form) {
    const out = {};
    for (const c of $$("[name][data-type]", form)) {
      if (c.disabled || c.closest("fieldset[disabled]")) continue;
      const type = c.dataset.type;
      if (type === "bool") {
        out[c.name] = c.checked;
        continue;
      }
      const raw = c.value.trim();
      if (raw === "") continue;
      if (type === "int") out[c.name] = INT_RE.test(raw) ? parseInt(raw, 10) : raw;
      else if (type === "float") out[c.name] = FLOAT_RE.test(raw) ? parseFloat(raw) : raw;
      else if (type === "int-or-max") out[c.name] = raw === "max" ? "max" : INT_RE.test(raw) ? parseInt(raw, 10) : raw;
      else if (type === "size") out[c.name] = FLOAT_RE.test(raw) ? parseFloat(raw) : raw;
      else if (type === "list") out[c.name] = raw.split(",").map((s) => s.trim()).filter(Boolean);
      else out[c.name] = raw;
    }
    return out;
  }

  function setField(form, name, value) {
    const c = $(`[name="${name}"]`, form);
    if (!c) return;
    if (c.type === "checkbox") c.checked = Boolean(value);
    else c.value = value === null || value === undefined ? "" : Array.isArray(value) ? value.join(", ") : String(value);
  }

  function busy(button, on, label) {
    if (on) {
      button.dataset.label = button.textContent;
      button.textContent = label || "Working…";
      button.disabled = true;
      button.setAttribute("aria-busy", "true");
    } else {
      if (button.dataset.label) button.textContent = button.dataset.label;
      button.disabled = false;
      button.removeAttribute("aria-busy");
    }
  }

  // ------------------------------------------------------------------ tabs

  const VIEWS = ["estimate", "roofline", "plan", "capacity", "plans"];
  const CONTEXT_VIEWS = new Set(["estimate", "roofline", "plan"]);

  function showView(name, focusTab) {
    if (!VIEWS.includes(name)) name = "estimate";
    for (const v of VIEWS) {
      const tab = $(`#tab-${v}`);
      const on = v === name;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      $(`#view-${v}`).hidden = !on;
    }
    $("#context").hidden = !CONTEXT_VIEWS.has(name);
    if (focusTab) $(`#tab-${name}`).focus();
    if (location.hash !== `#${name}`) history.replaceState(null, "", `#${name}`);
    if (name === "plans") loadPlans(true).catch(() => {});
    if (name === "capacity" && state.models.length) prepareCapacity().catch((e) => showError([$("#capacity-form")], e));
    if (name === "roofline" && state.estimate) drawRoofline();
    hideTip();
  }

  function setupTabs() {
    const tabs = $$('[role="tab"]');
    for (const t of tabs) {
      t.addEventListener("click", () => showView(t.id.slice(4), false));
      t.addEventListener("keydown", (ev) => {
        const i = tabs.indexOf(t);
        let j = null;
        if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
        else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
        else if (ev.key === "Home") j = 0;
        else if (ev.key === "End") j = tabs.length - 1;
        if (j !== null) {
          ev.preventDefault();
          showView(tabs[j].id.slice(4), true);
        }
      });
    }
    window.addEventListener("hashchange", () => showView(location.hash.slice(1), false));
  }

  // ------------------------------------------------------------------ API key

  function askForKey(message) {
    const panel = $("#key-panel");
    panel.hidden = false;
    $("#key-toggle").setAttribute("aria-expanded", "true");
    const p = $("#api-key-error");
    p.textContent = message;
    p.hidden = false;
    $("#api-key").setAttribute("aria-invalid", "true");
    $("#api-key").focus();
  }

  function setupKey() {
    $("#key-toggle").addEventListener("click", () => {
      const panel = $("#key-panel");
      panel.hidden = !panel.hidden;
      $("#key-toggle").setAttribute("aria-expanded", String(!panel.hidden));
      if (!panel.hidden) $("#api-key").focus();
    });
    $("#key-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const key = $("#api-key").value.trim();
      if (key) sessionStorage.setItem(KEY_STORAGE, key);
      else sessionStorage.removeItem(KEY_STORAGE);
      $("#api-key").value = "";
      clearErrors($("#key-form"));
      try {
        await loadCatalog();
        $("#key-panel").hidden = true;
        $("#key-toggle").setAttribute("aria-expanded", "false");
        $("#key-toggle").textContent = apiKey() ? "API key ✓" : "API key";
        showView(location.hash.slice(1) || "estimate", false); // reload what the view shows
      } catch (e) {
        if (e.status !== 401) showError([$("#key-form")], e);
      }
    });
    $("#key-forget").addEventListener("click", () => {
      sessionStorage.removeItem(KEY_STORAGE);
      $("#key-toggle").textContent = "API key";
    });
    if (apiKey()) $("#key-toggle").textContent = "API key ✓";
  }

  // ------------------------------------------------------------------ catalog

  async function loadCatalog() {
    const [hw, models, formats] = await Promise.all([api("GET", "/v1/hardware"), api("GET", "/v1/models"), api("GET", "/v1/formats")]);
    state.hardware = hw.data.items;
    state.models = models.data.items;
    state.formats = new Map(formats.data.formats.map((f) => [f.name, f]));
    state.aliases = formats.data.aliases || {};
    state.exportFormats = formats.data.export_formats || [];
    fillSelect($("#model"), state.models, (m) => `${m.id} — ${sig(m.params / 1e9)} B params${m.custom ? " (custom)" : ""}`, "llama-3.1-8b");
    fillSelect($("#hardware"), state.hardware, (h) => `${h.name} (${h.id})${h.custom ? " — custom" : ""}`, "h100-sxm");
    fillDatalists(formats.data);
    fillCapacityHardware();
    describeContext();
    if (!$("#view-capacity").hidden) await prepareCapacity();
    document.body.dataset.ready = "true";
    performance.mark("tierwise-ready");
  }

  function fillSelect(select, items, label, preferred) {
    const keep = select.value;
    select.replaceChildren(...items.map((it) => el("option", { value: it.id, text: label(it) })));
    const want = items.some((i) => i.id === keep) ? keep : items.some((i) => i.id === preferred) ? preferred : items[0] && items[0].id;
    if (want) select.value = want;
  }

  function fillDatalists(data) {
    const opts = (role) => data.formats.filter((f) => f.roles.includes(role)).map((f) => el("option", { value: f.name, label: `${sig(f.bits_per_value, 4)} bits — ${f.description}` }));
    $("#formats-weight").replaceChildren(...opts("weight"));
    $("#formats-activation").replaceChildren(...opts("activation"));
    $("#formats-kv").replaceChildren(...opts("kv"));
    $("#sparsity-list").replaceChildren(...data.sparsity.map((s) => el("option", { value: s })));
  }

  function describeContext() {
    const m = state.models.find((x) => x.id === $("#model").value);
    const h = state.hardware.find((x) => x.id === $("#hardware").value);
    $("#model-info").textContent = m
      ? `${m.family}, ${m.num_layers} layers, hidden ${m.hidden_size}, ${sig(m.params / 1e9)} B params (${sig(m.active_params / 1e9)} B active)`
      : "";
    $("#hardware-info").textContent = h
      ? `${h.class}; ${fmtBytes(h.memory_capacity_bytes)} at ${fmtBytes(h.device_bandwidth_bytes_per_s)}/s; ${h.peak_bf16_flops_per_s ? fmtFlops(h.peak_bf16_flops_per_s) + "/s bf16" : "no bf16 peak"}${h.usd_per_hour != null ? `; $${sig(h.usd_per_hour)}/h` : ""}`
      : "";
  }

  function setupContext() {
    $("#model").addEventListener("change", () => {
      describeContext();
      clearErrors($("#context"));
    });
    $("#hardware").addEventListener("change", () => {
      describeContext();
      clearErrors($("#context"));
    });

    $("#model-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.currentTarget;
      clearErrors(form);
      const id = $("#custom-model-id").value.trim();
      const text = $("#custom-model-config").value;
      const body = { id };
      try {
        body.config = JSON.parse(text);
      } catch (_) {
        body.yaml = text; // not JSON: let the server read it as YAML (safe_load)
      }
      const btn = $('button[type="submit"]', form);
      busy(btn, true, "Registering…");
      try {
        const { data } = await api("POST", "/v1/models", body);
        const models = await api("GET", "/v1/models");
        state.models = models.data.items;
        fillSelect($("#model"), state.models, (m) => `${m.id} — ${sig(m.params / 1e9)} B params${m.custom ? " (custom)" : ""}`, data.id);
        $("#model").value = data.id;
        describeContext();
        form.closest("details").open = false;
      } catch (e) {
        showError([form], e);
      } finally {
        busy(btn, false);
      }
    });

    $("#hardware-copy").addEventListener("click", async () => {
      const form = $("#hardware-form");
      clearErrors(form);
      try {
        const { data } = await api("GET", `/v1/hardware/${encodeURIComponent($("#hardware").value)}`);
        const profile = Object.assign({}, data.profile);
        profile.id = `${data.id}-custom`;
        profile.name = `${data.name} (custom)`;
        $("#custom-hardware-profile").value = JSON.stringify(profile, null, 2);
        $("#custom-hardware-profile").focus();
      } catch (e) {
        showError([form], e);
      }
    });

    $("#hardware-form").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const form = ev.currentTarget;
      clearErrors(form);
      const btn = $('button[type="submit"]', form);
      busy(btn, true, "Registering…");
      try {
        // JSON is YAML, so one field takes both; the server parses it with yaml.safe_load.
        const { data } = await api("POST", "/v1/hardware", { yaml: $("#custom-hardware-profile").value });
        const hw = await api("GET", "/v1/hardware");
        state.hardware = hw.data.items;
        fillSelect($("#hardware"), state.hardware, (h) => `${h.name} (${h.id})${h.custom ? " — custom" : ""}`, data.id);
        $("#hardware").value = data.id;
        fillCapacityHardware();
        describeContext();
        form.closest("details").open = false;
      } catch (e) {
        showError([form], e);
      } finally {
        busy(btn, false);
      }
    });
  }

  // ------------------------------------------------------------------ estimate

  function setupEstimate() {
    const mode = $("#est-mode");
    const sync = () => {
      const training = mode.value === "training";
      $("#est-inference").hidden = training;
      $("#est-inference").disabled = training;
      $("#est-training").hidden = !training;
      $("#est-training").disabled = !training;
    };
    mode.addEventListener("change", sync);
    sync();
    $("#estimate-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      runEstimate().catch(() => {});
    });
    $("#roofline-run").addEventListener("click", () => runEstimate().catch(() => {}));
  }

  async function roofsFor(id) {
    if (!state.roofs.has(id)) {
      const { data } = await api("GET", `/v1/hardware/${encodeURIComponent(id)}/roofs`);
      state.roofs.set(id, data);
    }
    return state.roofs.get(id);
  }

  async function runEstimate() {
    const form = $("#estimate-form");
    const btn = $("#estimate-run");
    const t0 = performance.now();
    performance.mark("tierwise-estimate-start");
    clearErrors(form, $("#context"));
    const body = Object.assign(readForm(form), { model: $("#model").value, hardware: $("#hardware").value });
    if (body.mode !== "training") body.per_op = true;
    busy(btn, true, "Estimating…");
    try {
      const [res, roofs] = await Promise.all([api("POST", "/v1/estimate", body), roofsFor(body.hardware).catch(() => null)]);
      state.estimate = { data: res.data, roofs };
      renderEstimate(res.data);
      drawRoofline();
      await nextFrame();
      const ms = performance.now() - t0;
      performance.mark("tierwise-estimate-end");
      performance.measure("tierwise-estimate", "tierwise-estimate-start", "tierwise-estimate-end");
      state.timings.estimates.push(ms);
      const out = $("#estimate-result");
      out.dataset.renderMs = ms.toFixed(1);
      out.dataset.count = String(state.timings.estimates.length);
    } catch (e) {
      $("#estimate-result").replaceChildren();
      showError([form, $("#context")], e);
      throw e;
    } finally {
      busy(btn, false);
    }
  }

  function card(label, value, sub, cls) {
    return el("div", { class: `card${cls ? " " + cls : ""}` }, el("div", { class: "k", text: label }), el("div", { class: "v", text: value }), sub ? el("div", { class: "s", text: sub }) : null);
  }

  function renderEstimate(d) {
    const out = $("#estimate-result");
    const title = el("h2", { text: `${d.model} on ${d.hardware}` });
    if (d.mode === "training") {
      const m = d.memory || {};
      out.replaceChildren(
        el("div", { class: "panel" },
          title,
          el("p", { class: "muted", text: `training: global batch ${d.global_batch}, micro-batch ${d.micro_batch}, seq ${d.seq}, tp ${d.tp} · pp ${d.pp} · dp ${d.dp}, ZeRO ${d.zero}, ${d.optimizer}, ${d.finetune}` }),
          el("div", { class: "cards" },
            card("Step time", fmtTime(d.step_time_s)),
            card("Throughput", `${sig(d.tokens_per_s)} tok/s`, `${sig(d.tokens_per_s_per_device)} tok/s per device`),
            card("MFU", fmtPct(d.mfu), `HFU ${fmtPct(d.hfu)}`),
            card("Model FLOP/s per device", `${fmtFlops(d.model_flops_per_s_per_device)}/s`, `peak ${fmtFlops(d.peak_flops_per_s)}/s`),
            card("Memory per device", fmtBytes(m.per_device_bytes), m.fits ? `fits in ${fmtBytes(m.device_capacity_bytes)}` : `does not fit: ${fmtBytes(m.shortfall_bytes)} over ${fmtBytes(m.device_capacity_bytes)}`, m.fits ? "good" : "bad"),
            card("Cost", perMillion(d.usd_per_million_tokens), d.usd_per_hour != null ? `$${sig(d.usd_per_hour)}/h` : "no price in the profile"),
          ),
          el("h3", { text: "Memory per device" }),
          memoryBars([{ name: "device", capacity: m.device_capacity_bytes, parts: [["weights", m.weights_bytes], ["grad", m.gradients_bytes], ["opt", m.optimizer_bytes], ["act", m.activations_bytes], ["logits", m.logits_bytes]] }]),
          notes(d.notes),
        ),
      );
      return;
    }
    const m = d.memory || {};
    const tiers = Object.entries(m.tiers || {}).map(([name, t]) => ({
      name: `${name} (${t.role})`,
      capacity: t.capacity_bytes,
      parts: [["weights", t.weights_bytes], ["kv", t.kv_cache_bytes], ["act", t.activations_bytes]],
    }));
    out.replaceChildren(
      el("div", { class: "panel" },
        title,
        el("p", { class: "muted", text: `batch ${d.batch}, prompt ${d.prompt}, gen ${d.gen}; weights ${d.weights}, activations ${d.activations}, KV ${d.kv}, ${d.sparsity}; ${d.devices} device${d.devices === 1 ? "" : "s"} (tp ${d.tp} · pp ${d.pp} · dp ${d.dp} · ep ${d.ep})` }),
        el("div", { class: "cards" },
          card("Time to first token", fmtTime(d.ttft_s), `prefill ${sig(d.prefill_tokens_per_s)} tok/s`),
          card("Time per output token", fmtTime(d.tpot_s), d.decode && d.decode.bound ? `decode is ${d.decode.bound}-bound` : null),
          card("Throughput", `${sig(d.output_tokens_per_s)} tok/s`, `${sig(d.samples_per_s)} requests/s, whole system`),
          card("Request latency", fmtTime(d.latency_s)),
          card("Memory per device", fmtBytes(m.per_device_bytes), m.fits ? `fits in ${fmtBytes(m.device_capacity_bytes)}` : `does not fit: ${fmtBytes(m.shortfall_bytes)} short`, m.fits ? "good" : "bad"),
          card("Energy", `${sig(d.energy_j_per_token)} J/token`, d.energy_j_per_sample != null ? `${sig(d.energy_j_per_sample)} J per request` : null),
          card("Cost", perMillion(d.usd_per_million_tokens), d.usd_per_hour != null ? `$${sig(d.usd_per_hour)}/h` : "no price in the profile"),
        ),
        el("h3", { text: "Memory per device, by tier" }),
        memoryBars(tiers),
        notes(d.notes),
      ),
    );
  }

  function notes(list) {
    if (!list || !list.length) return null;
    return el("ul", { class: "notes" }, list.map((n) => el("li", { text: n })));
  }

  const SEGMENTS = {
    weights: ["seg-weights", "weights"],
    kv: ["seg-kv", "KV cache"],
    act: ["seg-act", "activations"],
    grad: ["seg-grad", "gradients"],
    opt: ["seg-opt", "optimizer state"],
    logits: ["seg-logits", "logits"],
  };

  // Stacked horizontal bars, one per memory tier: each part of the usage against the
  // tier's capacity (the grey track). Usage past the capacity shows as a red overflow.
  // HTML rather than SVG so that the labels stay readable on a narrow window.
  function memoryBars(rows) {
    const used = new Set();
    const bars = rows.map((r) => {
      const total = sum(r.parts);
      const scaleMax = Math.max(r.capacity || 0, total, 1);
      const track = el("div", { class: "mem-track" });
      for (const [kind, v] of r.parts) {
        if (!v) continue;
        used.add(kind);
        const seg = el("div", { class: `mem-seg seg-${kind}`, title: `${SEGMENTS[kind][1]}: ${fmtBytes(v)}` });
        seg.style.width = `${(100 * v) / scaleMax}%`;
        track.append(seg);
      }
      if (r.capacity && total > r.capacity) {
        track.classList.add("over");
        const cap = el("div", { class: "mem-cap", title: `capacity ${fmtBytes(r.capacity)}` });
        cap.style.left = `${(100 * r.capacity) / scaleMax}%`;
        track.append(cap);
      }
      return el("div", { class: "mem-row", role: "img", "aria-label": `${r.name}: ${fmtBytes(total)} used of ${r.capacity ? fmtBytes(r.capacity) : "unknown capacity"}; ${r.parts.filter(([, v]) => v).map(([k, v]) => `${SEGMENTS[k][1]} ${fmtBytes(v)}`).join(", ")}` },
        el("span", { class: "mem-name", text: r.name }), track,
        el("span", { class: "mem-total", text: r.capacity ? `${fmtBytes(total)} / ${fmtBytes(r.capacity)}` : fmtBytes(total) }));
    });
    const legend = el("div", { class: "legend" }, Array.from(used).map((k) => el("span", {}, el("span", { class: `sw seg-${k}` }), SEGMENTS[k][1])));
    return el("div", { class: "mem" }, legend, bars);
  }

  const sum = (parts) => parts.reduce((a, [, v]) => a + (v || 0), 0);

  // ------------------------------------------------------------------ log-scale charts

  function logTicks(lo, hi) {
    const out = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
      const v = 10 ** e;
      if (v >= lo * 0.999 && v <= hi * 1.001) out.push(v);
    }
    return out;
  }

  function tickLabel(v, unit) {
    if (unit === "FLOP/s") return siPrefix(v, "", 2).replace(" ", "");
    if (v >= 1e3 || v < 1e-2) return `1e${Math.round(Math.log10(v))}`;
    return sig(v, 2);
  }

  function axes(s, box, xs, ys, xlabel, ylabel, xunit, yunit) {
    const g = svg("g", { class: "axis" });
    const grid = svg("g", { class: "grid" });
    for (const v of logTicks(xs.lo, xs.hi)) {
      const x = xs.map(v);
      grid.append(svg("line", { x1: x, x2: x, y1: box.top, y2: box.bottom }));
      g.append(svg("text", { x, y: box.bottom + 16, "text-anchor": "middle", text: tickLabel(v, xunit) }));
    }
    for (const v of ys.ticks || logTicks(ys.lo, ys.hi)) {
      const y = ys.map(v);
      grid.append(svg("line", { x1: box.left, x2: box.right, y1: y, y2: y }));
      g.append(svg("text", { x: box.left - 6, y: y + 4, "text-anchor": "end", text: ys.label ? ys.label(v) : tickLabel(v, yunit) }));
    }
    g.append(svg("path", { d: `M${box.left},${box.top}V${box.bottom}H${box.right}`, fill: "none" }));
    g.append(svg("text", { x: (box.left + box.right) / 2, y: box.bottom + 34, "text-anchor": "middle", text: xlabel }));
    g.append(svg("text", { x: 14, y: (box.top + box.bottom) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(box.top + box.bottom) / 2})`, text: ylabel }));
    s.append(grid, g);
  }

  function logScale(lo, hi, a, b) {
    const l0 = Math.log10(lo), l1 = Math.log10(hi);
    return { lo, hi, map: (v) => a + ((Math.log10(v) - l0) / (l1 - l0)) * (b - a) };
  }

  function linScale(lo, hi, a, b) {
    const span = hi - lo || 1;
    return { lo, hi, map: (v) => a + ((v - lo) / span) * (b - a) };
  }

  // ------------------------------------------------------------------ tooltip

  let tipShown = null; // [target, title, rows] of the open tooltip

  function showTip(target, title, rows) {
    tipShown = [target, title, rows];
    const tip = $("#tooltip");
    tip.replaceChildren(el("b", { text: title }), el("dl", {}, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
    tip.hidden = false;
    const r = target.getBoundingClientRect();
    const tw = tip.offsetWidth, th = tip.offsetHeight;
    let x = r.right + 10, y = r.top - th / 2;
    if (x + tw > window.innerWidth - 4) x = r.left - tw - 10;
    if (x < 4) x = 4;
    y = Math.min(Math.max(4, y), window.innerHeight - th - 4);
    tip.style.left = `${x}px`;
    tip.style.top = `${y}px`;
  }

  function hideTip() {
    tipShown = null;
    $("#tooltip").hidden = true;
  }

  // Scrolling (including the scroll that focusing a point causes) moves the tooltip along.
  function followTip() {
    if (!tipShown) return;
    if (!tipShown[0].isConnected) hideTip();
    else showTip(...tipShown);
  }

  function tipOn(node, title, rows) {
    const show = () => showTip(node, title, rows);
    node.addEventListener("pointerenter", show);
    node.addEventListener("focus", show);
    node.addEventListener("pointerleave", hideTip);
    node.addEventListener("blur", hideTip);
  }

  // ------------------------------------------------------------------ roofline

  function roofPoints(d) {
    const pts = [];
    for (const phase of ["prefill", "decode"]) {
      const ph = d[phase];
      if (!ph || !ph.ops) continue;
      for (const o of ph.ops) {
        const bytes = (o.weight_bytes || 0) + (o.activation_bytes || 0) + (o.kv_bytes || 0);
        if (!(o.flops > 0 && bytes > 0 && o.time_s > 0)) continue;
        pts.push({ phase, op: o, bytes, intensity: o.flops / bytes, attained: o.flops / o.time_s });
      }
    }
    return pts;
  }

  const ROOF_PRECISIONS = ["fp32", "bf16", "fp8", "int8", "int4"];

  function drawRoofline() {
    const box = $("#roofline-chart");
    const tableBox = $("#roofline-table");
    if (!state.estimate) {
      box.replaceChildren(el("p", { class: "muted", text: "Run an estimate (Estimate view) to place its operators here." }));
      return;
    }
    const { data: d, roofs } = state.estimate;
    if (d.mode === "training") {
      box.replaceChildren(el("p", { class: "muted", text: "The roofline shows inference operators; switch the estimate to inference." }));
      tableBox.replaceChildren();
      return;
    }
    const all = roofPoints(d);
    const want = new Set([$("#roof-prefill").checked ? "prefill" : null, $("#roof-decode").checked ? "decode" : null]);
    const pts = all.filter((p) => want.has(p.phase));
    const bw = roofs ? roofs.device_bandwidth_bytes_per_s : null;
    if (!pts.length && !(roofs && roofs.compute.length)) {
      box.replaceChildren(el("p", { class: "muted", text: "No operator with both FLOPs and bytes to place, and no device roofs." }));
      tableBox.replaceChildren();
      return;
    }
    // Roofs of one compute unit — the one that runs the estimate's compute precision —
    // for the usual precisions; that precision's roof is drawn solid, the others dashed.
    const fmt = state.formats.get(d.activations) || state.formats.get(state.aliases[d.activations]);
    const hwPrec = fmt ? fmt.hw_precision : d.activations;
    const allRoofs = roofs ? roofs.compute : [];
    const activeRoof = allRoofs.find((r) => r.precisions.includes(hwPrec)) || allRoofs[0];
    const compute = allRoofs.filter((r) => r.unit === activeRoof.unit && (r === activeRoof || r.precisions.some((p) => ROOF_PRECISIONS.includes(p))));
    const peaks = compute.map((r) => r.peak_flops_per_s);
    const xsVals = pts.map((p) => p.intensity).concat(compute.map((r) => r.ridge_flop_per_byte).filter(Boolean));
    const ysVals = pts.map((p) => p.attained).concat(peaks);
    const xlo = 10 ** Math.floor(Math.log10(Math.max(Math.min(...xsVals, 1), 1e-3) / 2));
    const xhi = 10 ** Math.ceil(Math.log10(Math.max(...xsVals, 10) * 3));
    const ylo = 10 ** Math.floor(Math.log10(Math.max(Math.min(...ysVals) / 3, 1)));
    const yhi = 10 ** Math.ceil(Math.log10(Math.max(...ysVals) * 1.5));
    const W = 860, H = 470;
    const b = { left: 62, right: W - 215, top: 14, bottom: H - 48 };
    const xs = logScale(xlo, xhi, b.left, b.right);
    const ys = logScale(ylo, yhi, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Roofline of ${roofs ? roofs.name : d.hardware} with ${pts.length} operators of ${d.model}` });
    axes(s, b, xs, ys, "arithmetic intensity (FLOP / byte)", "attained FLOP/s (one device)", "", "FLOP/s");
    const clipY = (v) => Math.min(Math.max(v, ylo), yhi);
    if (bw) {
      const labels = [];
      compute.forEach((r) => {
        const peak = r.peak_flops_per_s;
        const ridge = peak / bw;
        const xa = Math.max(xlo, ylo / bw); // where the memory slope enters the plot
        let line;
        if (ridge <= xa) line = [[xlo, peak], [xhi, peak]];
        else if (ridge >= xhi) line = [[xa, xa * bw], [xhi, xhi * bw]];
        else line = [[xa, xa * bw], [ridge, peak], [xhi, peak]];
        s.append(svg("path", { class: `roof${r === activeRoof ? "" : " alt"}`, d: line.map(([x, y], j) => `${j ? "L" : "M"}${xs.map(x)},${ys.map(clipY(y))}`).join("") }));
        if (ridge > xlo && ridge < xhi) s.append(svg("line", { class: "ridge", x1: xs.map(ridge), x2: xs.map(ridge), y1: ys.map(peak), y2: b.bottom }));
        labels.push({ y: ys.map(clipY(peak)) + 4, text: `${r.precisions.join("/")} ${siPrefix(peak, "FLOP/s", 3)}`, active: r === activeRoof });
      });
      // Keep the roof labels at least one line apart (close peaks on a log axis).
      labels.sort((p, q) => p.y - q.y);
      for (let i = 1; i < labels.length; i++) labels[i].y = Math.max(labels[i].y, labels[i - 1].y + 13);
      for (const l of labels) s.append(svg("text", { x: b.right + 6, y: l.y, "font-weight": l.active ? "bold" : null, text: l.text }));
      const xl = Math.max(xlo, ylo / bw) * 4;
      if (xl < xhi) s.append(svg("text", { x: xs.map(xl) - 4, y: ys.map(clipY(xl * bw)) - 10, "text-anchor": "end", text: `${roofs.device_tier} ${fmtBytes(bw)}/s` }));
    }
    const g = svg("g", { "aria-label": "operators" });
    for (const p of pts) {
      const cx = xs.map(p.intensity), cy = ys.map(Math.min(Math.max(p.attained, ylo), yhi));
      const label = `${p.phase} ${p.op.name}`;
      const shape = p.phase === "prefill"
        ? svg("circle", { class: "pt prefill", cx, cy, r: 5.5, tabindex: 0, role: "img", "aria-label": `${label}: ${sig(p.intensity)} FLOP/byte, ${p.op.bound}-bound` })
        : svg("rect", { class: "pt decode", x: cx - 5, y: cy - 5, width: 10, height: 10, tabindex: 0, role: "img", "aria-label": `${label}: ${sig(p.intensity)} FLOP/byte, ${p.op.bound}-bound` });
      shape.dataset.op = p.op.name;
      shape.dataset.phase = p.phase;
      tipOn(shape, p.op.name, [
        ["phase", `${p.phase}${p.op.count > 1 ? ` (×${p.op.count})` : ""}`],
        ["kind", `${p.op.kind}, ${p.op.precision}`],
        ["FLOPs", fmtFlops(p.op.flops)],
        ["bytes", fmtBytes(p.bytes)],
        ["intensity", `${sig(p.intensity)} FLOP/B`],
        ["attained", `${fmtFlops(p.attained)}/s`],
        ["time", fmtTime(p.op.time_s)],
        ["bound", p.op.bound],
      ]);
      g.append(shape);
    }
    s.append(g);
    const legend = el("div", { class: "legend" },
      el("span", {}, el("span", { class: "sw sw-prefill" }), "prefill operators"),
      el("span", {}, el("span", { class: "sw sw-decode" }), "decode operators"),
      el("span", { class: "muted", text: roofs ? `${roofs.name}: roofs per precision (${activeRoof ? activeRoof.unit : "no compute unit"}) and ${roofs.device_tier} bandwidth` : "device roofs unavailable" }));
    $(".sw-prefill", legend).style.background = "var(--c-prefill)";
    $(".sw-decode", legend).style.background = "var(--c-decode)";
    box.replaceChildren(legend, s);
    box.dataset.points = String(pts.length);
    tableBox.replaceChildren(opTable(pts));
  }

  function opTable(pts) {
    const head = el("tr", {}, ["phase", "operator", "kind", "count", "FLOPs", "bytes", "FLOP/B", "time", "bound"].map((h, i) => el("th", { scope: "col", class: i >= 3 && i <= 7 ? "num" : null, text: h })));
    const rows = pts.map((p) => el("tr", {},
      el("td", { text: p.phase }), el("td", { text: p.op.name }), el("td", { text: p.op.kind }),
      el("td", { class: "num", text: p.op.count }), el("td", { class: "num", text: fmtFlops(p.op.flops) }), el("td", { class: "num", text: fmtBytes(p.bytes) }),
      el("td", { class: "num", text: sig(p.intensity) }), el("td", { class: "num", text: fmtTime(p.op.time_s) }), el("td", { text: p.op.bound })));
    return el("table", {}, el("caption", { class: "sr-only", text: "Operators of the last estimate" }), el("thead", {}, head), el("tbody", {}, rows));
  }

  // ------------------------------------------------------------------ plan

  function setupPlan() {
    $("#plan-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      const body = Object.assign(readForm(ev.currentTarget), { model: $("#model").value, hardware: $("#hardware").value });
      solve(body).catch(() => {});
    });
    $("#pareto-sweep").addEventListener("click", () => sweepBudgets().catch(() => {}));
  }

  async function submitPlan(body, onProgress) {
    const res = await api("POST", "/v1/plans", body);
    if (res.status !== 202) return res.data;
    let job = res.data;
    const t0 = performance.now();
    for (;;) {
      onProgress(`solving: ${job.status}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      if (job.status === "succeeded") return (await api("GET", job.plan_url)).data;
      if (job.status === "failed") throw new ApiError(422, job.error || { message: "the solve failed" });
      await sleep(POLL_MS);
      job = (await api("GET", job.url)).data;
    }
  }

  async function solve(body) {
    const form = $("#plan-form");
    const btn = $("#plan-run");
    const prog = $("#plan-progress");
    clearErrors(form, $("#context"), $("#plan-result"));
    $("#plan-diagnosis").hidden = true;
    busy(btn, true, "Solving…");
    prog.hidden = false;
    $(".progress-text", prog).textContent = "submitting";
    state.planRequest = body;
    try {
      const plan = await submitPlan(body, (t) => ($(".progress-text", prog).textContent = t));
      state.planCache.set(plan.id, plan);
      renderPlan(plan);
      await refreshPareto();
    } catch (e) {
      if (e.code === "infeasible") renderDiagnosis(e);
      else showError([form, $("#context")], e);
      throw e;
    } finally {
      busy(btn, false);
      prog.hidden = true;
    }
  }

  const FLAG_FIELDS = { "allow-offload": "allow_offload", devices: "devices", prompt: "prompt", gen: "gen", batch: "batch", "ttft-slo": "ttft_slo_s", "tpot-slo": "tpot_slo_s" };

  // The diagnosis names changes as CLI flags ("--devices 2", "--allow-offload"); each one
  // that maps onto this form gets a button that fills the form in.
  function renderDiagnosis(err) {
    const box = $("#plan-diagnosis");
    const det = err.details || {};
    const lines = String(det.message || err.message).split("\n");
    const items = (det.changes || []).map((c) => {
      const sets = {};
      for (const m of c.description.matchAll(/--([a-z-]+)(?:\s+([0-9][0-9.e+-]*))?/g)) {
        const f = FLAG_FIELDS[m[1]];
        if (!f) continue;
        sets[f] = f === "allow_offload" ? true : m[2];
      }
      if (c.kind === "formats" && /^search the default/.test(c.description)) sets.formats = "";
      if (c.kind === "devices") Object.assign(sets, { tp: "", pp: "", dp: "" });
      const apply = Object.keys(sets).length
        ? el("button", { type: "button", class: "secondary", text: "Use this change", onclick: () => {
          for (const [k, v] of Object.entries(sets)) setField($("#plan-form"), k, v);
          $("#plan-run").focus();
        } })
        : null;
      const p = c.predicted || {};
      const facts = [p.per_device_bytes != null ? `${fmtBytes(p.per_device_bytes)} per device` : null, p.tpot_s ? `TPOT ${fmtTime(p.tpot_s)}` : null, p.avg_weight_bits ? `${sig(p.avg_weight_bits)} bits` : null].filter(Boolean).join(", ");
      return el("li", {}, el("span", { text: c.description }), facts ? el("span", { class: "muted small", text: ` (${facts}) ` }) : null, apply);
    });
    box.replaceChildren(
      el("h3", { text: "Nothing fits" }),
      el("p", { text: lines[0] }),
      det.binding ? el("p", { class: "muted", text: `binding: ${det.binding.join(", ")}` }) : null,
      items.length ? el("div", {}, el("p", { text: "Cheapest changes:" }), el("ol", {}, items)) : el("pre", { text: lines.slice(1).join("\n") }),
    );
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  function renderPlan(pub) {
    state.plan = pub;
    const p = pub.plan;
    const pr = p.predicted || {};
    const s = p.solver || {};
    const lay = p.layout || {};
    const tiers = Object.entries(pr.tiers || {}).map(([name, t]) => ({ name: `${name} (${t.role})`, capacity: t.capacity_bytes, parts: [["weights", t.weights_bytes], ["kv", t.kv_cache_bytes], ["act", t.activations_bytes]] }));
    const exports = el("div", { class: "exports", role: "group", "aria-label": "Export" }, state.exportFormats.map((f) => el("button", { type: "button", class: "secondary", "data-format": f, text: f, onclick: (ev) => exportPlan(pub.id, f, ev.currentTarget).catch(() => {}) })));
    $("#plan-result").replaceChildren(
      el("div", { class: "panel", id: "plan-summary", dataset: { planId: pub.id } },
        el("h2", { text: `Plan ${pub.id}` }),
        el("p", { class: "muted", text: `${p.model} on ${p.devices} × ${p.hardware} (tp ${lay.tp} · pp ${lay.pp} · dp ${lay.dp} · ep ${lay.ep}); objective ${p.objective}; KV ${p.kv}; solver ${s.backend} ${s.status} in ${fmtTime(s.time_s)}${s.gap ? `, gap ${sig(s.gap)}` : ""}; ${Object.keys(p.choices || {}).length} groups` }),
        el("div", { class: "cards" },
          card("Time to first token", fmtTime(pr.ttft_s)),
          card("Time per output token", fmtTime(pr.tpot_s), pr.decode_bound ? `decode is ${pr.decode_bound}-bound` : null),
          card("Throughput", `${sig(pr.output_tokens_per_s)} tok/s`),
          card("Memory per device", fmtBytes(pr.per_device_bytes), p.constraints && p.constraints.max_memory_per_device_bytes ? `budget ${fmtBytes(p.constraints.max_memory_per_device_bytes)}` : null, pr.fits === false ? "bad" : null),
          card("Average weight bits", sig(pr.avg_weight_bits)),
          card("Sensitivity", sig(pr.sensitivity), `accuracy proxy (${p.sensitivity_source})`),
          card("Energy", `${sig(pr.energy_j_per_token)} J/token`),
          card("Cost", perMillion(pr.usd_per_million_tokens)),
        ),
        el("h3", { text: "Memory per device, by tier" }),
        memoryBars(tiers),
        el("h3", { text: "Per-layer choices" }),
        heatMap(p.choices || {}),
        el("h3", { id: "export-title", text: "Export" }),
        exports,
        el("p", { class: "form-error", id: "export-error", role: "alert", hidden: true }),
        el("div", { id: "export-out" }),
        notes(pr.notes),
      ),
    );
    markParetoCurrent();
  }

  // -------------------------------------------------------------- heat map

  function bitsOf(name) {
    const f = state.formats.get(name) || state.formats.get(state.aliases[name]);
    return f ? f.bits_per_value : null;
  }

  // Bits on a log2 scale through the viridis colour map (perceptually ordered, readable
  // with colour-vision deficiencies): 2 bits light yellow … 32 bits dark purple.
  const VIRIDIS = [[1, "#fde725"], [1.585, "#a0da39"], [2, "#4ac16d"], [2.585, "#1fa187"], [3, "#277f8e"], [4, "#365c8d"], [5, "#46327e"]];

  function bitsColour(bits) {
    if (!bits) return "#eeeeee";
    const x = Math.min(Math.max(Math.log2(bits), 1), 5);
    for (let i = 1; i < VIRIDIS.length; i++) {
      const [x1, c1] = VIRIDIS[i];
      if (x <= x1) {
        const [x0, c0] = VIRIDIS[i - 1];
        return mix(c0, c1, (x - x0) / (x1 - x0));
      }
    }
    return VIRIDIS[VIRIDIS.length - 1][1];
  }

  function mix(a, b, t) {
    const p = (h) => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
    const [ca, cb] = [p(a), p(b)];
    return `rgb(${ca.map((v, i) => Math.round(v + (cb[i] - v) * t)).join(", ")})`;
  }

  function sparsityColour(sp) {
    if (!sp || sp === "dense") return "#f1f3f5";
    if (sp === "2:4") return "hsl(28, 85%, 62%)";
    const m = /unstructured:([0-9.]+)/.exec(sp);
    const r = m ? parseFloat(m[1]) : 0.5;
    return `hsl(330, 60%, ${88 - r * 45}%)`;
  }

  const TIER_COLOURS = ["#cfe8d8", "#ffd8a8", "#e5dbff", "#ffc9c9", "#c5f6fa"];

  function splitGroup(name) {
    const m = /^(.*?(?:layers|blocks|h|layer|block)\.\d+)\.(.+)$/.exec(name);
    return m ? [m[1], m[2]] : [name, "·"];
  }

  function heatMap(choices) {
    const rows = new Map();
    const groups = [];
    const tiers = [];
    for (const [name, c] of Object.entries(choices)) {
      const [layer, group] = splitGroup(name);
      if (!rows.has(layer)) rows.set(layer, new Map());
      rows.get(layer).set(group, { name, c });
      if (!groups.includes(group)) groups.push(group);
      if (c.tier && !tiers.includes(c.tier)) tiers.push(c.tier);
    }
    const shortRow = (l) => l.replace(/^model\./, "").replace(/^transformer\./, "");
    const kinds = [
      ["precision", (c) => c.weights || "", (c) => bitsColour(bitsOf(c.weights)), (c) => `${c.weights}${bitsOf(c.weights) ? ` (${sig(bitsOf(c.weights), 4)} bits)` : ""}`],
      ["sparsity", (c) => (c.sparsity === "dense" ? "–" : (c.sparsity || "").replace("unstructured:", "u")), (c) => sparsityColour(c.sparsity), (c) => c.sparsity || "dense"],
      ["tier", (c) => c.tier || "", (c) => TIER_COLOURS[tiers.indexOf(c.tier) % TIER_COLOURS.length] || "#eee", (c) => c.tier || ""],
    ];
    const head1 = el("tr", {}, el("th", { scope: "col", rowspan: 2, text: "layer" }), kinds.map(([k]) => el("th", { scope: "colgroup", colspan: groups.length, class: "gsep", text: k })));
    // Column heads name the group by its last part (q/k/v → "qkv"); the full name is the title.
    const head2 = el("tr", {}, kinds.flatMap(() => groups.map((g, i) => el("th", { scope: "col", class: i === 0 ? "gsep" : null, title: g, text: g.split(".").pop() }))));
    const body = [];
    for (const [layer, cells] of rows) {
      const tr = el("tr", {}, el("th", { scope: "row", text: shortRow(layer) }));
      kinds.forEach(([kind, text, colour, title]) => {
        groups.forEach((g, i) => {
          const hit = cells.get(g);
          const cls = [i === 0 ? "gsep" : null, hit ? null : "empty"].filter(Boolean).join(" ") || null;
          if (!hit) {
            tr.append(el("td", { class: cls }));
            return;
          }
          const td = el("td", { class: cls, title: `${hit.name}: ${kind} ${title(hit.c)}`, dataset: { group: hit.name, kind }, text: text(hit.c) });
          td.style.background = colour(hit.c);
          const bits = bitsOf(hit.c.weights);
          if (kind === "precision" && bits && bits >= 6) td.style.color = "#fff";
          tr.append(td);
        });
      });
      body.push(tr);
    }
    const legendBits = [2, 3, 4, 6, 8, 16, 32].map((b) => {
      const sw = el("span", { class: "sw" });
      sw.style.background = bitsColour(b);
      return el("span", {}, sw, `${b} bits`);
    });
    const legendTiers = tiers.map((t, i) => {
      const sw = el("span", { class: "sw" });
      sw.style.background = TIER_COLOURS[i % TIER_COLOURS.length];
      return el("span", {}, sw, t);
    });
    return el("div", {},
      el("div", { class: "legend" }, el("span", { class: "muted", text: "precision:" }), legendBits, el("span", { class: "muted", text: "tier:" }), legendTiers),
      el("div", { class: "heat-wrap", id: "heatmap" }, el("table", { class: "heat" }, el("caption", { class: "sr-only", text: "Per-layer choices: weight precision, sparsity and memory tier of each group" }), el("thead", {}, head1, head2), el("tbody", {}, body))));
  }

  // -------------------------------------------------------------- export

  async function exportPlan(id, format, button) {
    const err = $("#export-error");
    err.hidden = true;
    for (const c of $$("#heatmap td.flag")) c.classList.remove("flag");
    busy(button, true, `${format}…`);
    try {
      const { data } = await api("GET", `/v1/plans/${encodeURIComponent(id)}/export?format=${encodeURIComponent(format)}`);
      for (const f of data.files) download(f.path.split("/").pop(), f.content, f.media_type);
      $("#export-out").replaceChildren(
        el("p", { text: `${format}: downloaded ${data.files.map((f) => f.path).join(", ")}` }),
        data.next_command ? el("pre", { text: data.next_command }) : null,
        notes(data.notes),
      );
    } catch (e) {
      err.textContent = `${format}: ${e.message}`;
      err.hidden = false;
      // An export that cannot express a choice names it (choices.<group>.weights): mark it.
      const m = /^choices\.(.+)\.(weights|sparsity|activations|tier)$/.exec(e.field || "");
      if (m) {
        const kind = m[2] === "weights" ? "precision" : m[2] === "tier" ? "tier" : "sparsity";
        const cell = $$("#heatmap td").find((td) => td.dataset.group === m[1] && td.dataset.kind === kind);
        if (cell) cell.classList.add("flag");
      }
    } finally {
      busy(button, false);
    }
  }

  function download(name, content, type) {
    const url = URL.createObjectURL(new Blob([content], { type: type || "text/plain" }));
    const a = el("a", { href: url, download: name || "export.txt" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
  }

  // -------------------------------------------------------------- Pareto frontier

  async function plansFor(model, hardware) {
    const { data } = await api("GET", `/v1/plans?model=${encodeURIComponent(model)}&hardware=${encodeURIComponent(hardware)}&limit=60`);
    const missing = data.items.filter((i) => !state.planCache.has(i.id));
    const got = await Promise.all(missing.map((i) => api("GET", `/v1/plans/${encodeURIComponent(i.id)}`).then((r) => r.data).catch(() => null)));
    for (const g of got) if (g) state.planCache.set(g.id, g);
    return data.items.map((i) => state.planCache.get(i.id)).filter(Boolean);
  }

  const metrics = (pub) => {
    const p = pub.plan.predicted || {};
    return [p.per_device_bytes, p.sensitivity || 0, p.tpot_s || p.latency_s || 0];
  };

  function dominates(a, b) {
    return a.every((v, i) => v <= b[i]) && a.some((v, i) => v < b[i]);
  }

  async function refreshPareto() {
    const panel = $("#plan-pareto-panel");
    if (!state.plan) {
      panel.hidden = true;
      return;
    }
    const { model, hardware } = state.plan.plan;
    const plans = await plansFor(model, hardware);
    panel.hidden = false;
    drawPareto(plans);
  }

  function drawPareto(plans) {
    const box = $("#plan-pareto");
    const pts = plans.map((pub) => ({ pub, m: metrics(pub) })).filter((p) => p.m[0] > 0);
    if (!pts.length) {
      box.replaceChildren(el("p", { class: "muted", text: "No stored plan of this model on this hardware has predicted memory." }));
      return;
    }
    for (const p of pts) p.nd = !pts.some((q) => q !== p && dominates(q.m, p.m));
    const W = 760, H = 340;
    const b = { left: 78, right: W - 24, top: 14, bottom: H - 48 };
    const xv = pts.map((p) => p.m[0]);
    const yv = pts.map((p) => p.m[1]);
    const xpad = (Math.max(...xv) - Math.min(...xv)) * 0.08 || Math.max(...xv) * 0.1;
    const ymax = Math.max(...yv, 1e-9);
    const xs = linScale(Math.max(0, Math.min(...xv) - xpad), Math.max(...xv) + xpad, b.left, b.right);
    const ys = linScale(0, ymax * 1.1, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "group", "aria-label": `Pareto frontier: ${pts.length} stored plans` });
    const g = svg("g", { class: "axis" });
    const grid = svg("g", { class: "grid" });
    for (let i = 0; i <= 5; i++) {
      const xv0 = xs.lo + ((xs.hi - xs.lo) * i) / 5, yv0 = ys.lo + ((ys.hi - ys.lo) * i) / 5;
      grid.append(svg("line", { x1: xs.map(xv0), x2: xs.map(xv0), y1: b.top, y2: b.bottom }), svg("line", { x1: b.left, x2: b.right, y1: ys.map(yv0), y2: ys.map(yv0) }));
      g.append(svg("text", { x: xs.map(xv0), y: b.bottom + 16, "text-anchor": "middle", text: fmtBytes(xv0) }));
      g.append(svg("text", { x: b.left - 6, y: ys.map(yv0) + 4, "text-anchor": "end", text: sig(yv0, 2) }));
    }
    g.append(svg("path", { d: `M${b.left},${b.top}V${b.bottom}H${b.right}`, fill: "none" }));
    g.append(svg("text", { x: (b.left + b.right) / 2, y: b.bottom + 34, "text-anchor": "middle", text: "memory per device" }));
    g.append(svg("text", { x: 14, y: (b.top + b.bottom) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(b.top + b.bottom) / 2})`, text: "sensitivity (lower is more accurate)" }));
    s.append(grid, g);
    // Staircase through the points not dominated in (memory, sensitivity).
    const front2 = pts.filter((p) => !pts.some((q) => q !== p && q.m[0] <= p.m[0] && q.m[1] <= p.m[1] && (q.m[0] < p.m[0] || q.m[1] < p.m[1]))).sort((a, c) => a.m[0] - c.m[0]);
    if (front2.length > 1) {
      let d = `M${xs.map(front2[0].m[0])},${ys.map(front2[0].m[1])}`;
      for (const p of front2.slice(1)) d += `H${xs.map(p.m[0])}V${ys.map(p.m[1])}`;
      s.append(svg("path", { class: "front", d }));
    }
    for (const p of pts) {
      const pr = p.pub.plan.predicted || {};
      const c = svg("circle", { class: `pp${p.nd ? " nd" : ""}`, cx: xs.map(p.m[0]), cy: ys.map(p.m[1]), r: 7, tabindex: 0, role: "button", "aria-label": `plan ${p.pub.id}: ${fmtBytes(p.m[0])}, sensitivity ${sig(p.m[1])}${p.nd ? ", not dominated" : ""}; load it`, dataset: { planId: p.pub.id } });
      tipOn(c, `plan ${p.pub.id}`, [["memory", fmtBytes(p.m[0])], ["sensitivity", sig(p.m[1])], ["TPOT", fmtTime(pr.tpot_s)], ["avg bits", sig(pr.avg_weight_bits)], ["objective", p.pub.plan.objective], ["Pareto", p.nd ? "not dominated" : "dominated"]]);
      const load = () => {
        hideTip();
        renderPlan(p.pub);
        $("#plan-summary").scrollIntoView({ block: "start" });
      };
      c.addEventListener("click", load);
      c.addEventListener("keydown", (ev) => {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          load();
        }
      });
      s.append(c);
    }
    box.replaceChildren(s);
    box.dataset.points = String(pts.length);
    markParetoCurrent();
  }

  function markParetoCurrent() {
    for (const c of $$("#plan-pareto circle.pp")) c.classList.toggle("current", Boolean(state.plan) && c.dataset.planId === state.plan.id);
  }

  // Fill the frontier: solve the same request at smaller memory budgets (each solve is a
  // stored plan, so the points stay for the next visit).
  async function sweepBudgets() {
    if (!state.plan) return;
    const btn = $("#pareto-sweep");
    const status = $("#pareto-status");
    const base = Object.assign({}, state.planRequest || { model: state.plan.plan.model, hardware: state.plan.plan.hardware });
    delete base.id;
    const mem = state.plan.plan.predicted.per_device_bytes;
    busy(btn, true, "Solving…");
    let ok = 0;
    try {
      for (const f of [0.85, 0.7, 0.55]) {
        const req = Object.assign({}, base, { max_memory_per_device: Math.floor(mem * f) });
        status.textContent = `budget ${fmtBytes(req.max_memory_per_device)}…`;
        try {
          const pub = await submitPlan(req, (t) => (status.textContent = `budget ${fmtBytes(req.max_memory_per_device)}: ${t}`));
          state.planCache.set(pub.id, pub);
          ok++;
        } catch (e) {
          if (e.code !== "infeasible") throw e;
          status.textContent = `nothing fits in ${fmtBytes(req.max_memory_per_device)}`;
          break;
        }
      }
      status.textContent = `${ok} more plan${ok === 1 ? "" : "s"} solved`;
      await refreshPareto();
    } catch (e) {
      status.textContent = e.message;
    } finally {
      busy(btn, false);
    }
  }

  // ------------------------------------------------------------------ stored plans

  function setupPlans() {
    $("#plans-search").addEventListener("input", renderPlansList);
    $("#plans-refresh").addEventListener("click", () => loadPlans(true).catch(() => {}));
    $("#plans-more").addEventListener("click", () => loadPlans(false).catch(() => {}));
    $("#plans-diff").addEventListener("click", () => diffSelected().catch((e) => showError([$("#plans-error")], e)));
  }

  async function loadPlans(reset) {
    const err = $("#plans-error");
    err.hidden = true;
    if (reset) {
      state.plansList = [];
      state.plansNext = 0;
    }
    try {
      const { data } = await api("GET", `/v1/plans?limit=100&offset=${state.plansNext}`);
      state.plansList = state.plansList.concat(data.items);
      state.plansNext = data.next_offset;
      $("#plans-more").hidden = data.next_offset === null || data.next_offset === undefined;
      $("#plans-status").textContent = `${data.total} stored plan${data.total === 1 ? "" : "s"}`;
      for (const id of Array.from(state.selected)) if (!state.plansList.some((p) => p.id === id)) state.selected.delete(id);
      renderPlansList();
    } catch (e) {
      showError([err], e);
      throw e;
    }
  }

  function renderPlansList() {
    const q = $("#plans-search").value.trim().toLowerCase();
    const items = state.plansList.filter((p) => !q || [p.id, p.model, p.hardware].some((v) => String(v).toLowerCase().includes(q)));
    const head = el("tr", {}, ["", "id", "model", "hardware", "created", ""].map((h, i) => el("th", { scope: "col", text: h, class: i === 0 ? "sel" : null })));
    const rows = items.map((p) => {
      const box = el("input", { type: "checkbox", "aria-label": `select plan ${p.id} for diff`, checked: state.selected.has(p.id) });
      box.addEventListener("change", () => {
        if (box.checked) state.selected.add(p.id);
        else state.selected.delete(p.id);
        $("#plans-diff").disabled = state.selected.size !== 2;
      });
      const del = el("button", { type: "button", class: "danger", text: "Delete", "aria-label": `delete plan ${p.id}` });
      del.addEventListener("click", () => deletePlan(p.id, del).catch(() => {}));
      return el("tr", { dataset: { planId: p.id } },
        el("td", {}, box),
        el("td", {}, el("code", { text: p.id })),
        el("td", { text: p.model }),
        el("td", { text: p.hardware }),
        el("td", { text: String(p.created_at).replace("T", " ").slice(0, 19) }),
        el("td", {}, el("button", { type: "button", class: "secondary", text: "Open", "aria-label": `open plan ${p.id}`, onclick: () => openPlan(p.id).catch(() => {}) }), " ", del));
    });
    $("#plans-list").replaceChildren(items.length
      ? el("table", { id: "plans-table" }, el("caption", { class: "sr-only", text: "Stored plans" }), el("thead", {}, head), el("tbody", {}, rows))
      : el("p", { class: "muted", text: state.plansList.length ? "No stored plan matches the search." : "No stored plans yet: solve one in the Plan view." }));
    $("#plans-diff").disabled = state.selected.size !== 2;
  }

  async function getPlan(id) {
    if (!state.planCache.has(id)) state.planCache.set(id, (await api("GET", `/v1/plans/${encodeURIComponent(id)}`)).data);
    return state.planCache.get(id);
  }

  async function openPlan(id) {
    try {
      const pub = await getPlan(id);
      showView("plan", false);
      renderPlan(pub);
      await refreshPareto();
      $("#plan-summary").scrollIntoView({ block: "start" });
    } catch (e) {
      showError([$("#plans-error")], e);
    }
  }

  // Two clicks: the first arms the button for a few seconds, the second deletes.
  async function deletePlan(id, button) {
    if (!button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Confirm delete";
      setTimeout(() => {
        if (button.isConnected) {
          button.classList.remove("armed");
          button.textContent = "Delete";
        }
      }, 5000);
      return;
    }
    try {
      await api("DELETE", `/v1/plans/${encodeURIComponent(id)}`);
      state.planCache.delete(id);
      state.selected.delete(id);
      $("#plans-status").textContent = `deleted ${id}`;
      await loadPlans(true);
    } catch (e) {
      showError([$("#plans-error")], e);
    }
  }

  function flat(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj || {})) {
      const key = prefix ? `${prefix}.${k}` : k;
      if (v && typeof v === "object" && !Array.isArray(v)) flat(v, key, out);
      else out[key] = Array.isArray(v) ? JSON.stringify(v) : v;
    }
    return out;
  }

  async function diffSelected() {
    const [a, b] = await Promise.all(Array.from(state.selected).map(getPlan));
    const pa = a.plan, pb = b.plan;
    const fields = ["model", "hardware", "devices", "layout", "workload", "constraints", "objective", "kv", "activations"];
    const fa = flat(Object.fromEntries(fields.map((f) => [f, pa[f]])), "", {});
    const fb = flat(Object.fromEntries(fields.map((f) => [f, pb[f]])), "", {});
    const metricKeys = ["ttft_s", "tpot_s", "output_tokens_per_s", "per_device_bytes", "avg_weight_bits", "sensitivity", "energy_j_per_token", "usd_per_million_tokens"];
    const fmtMetric = (k, v) => {
      if (v === null || v === undefined) return "–";
      if (typeof v !== "number") return String(v);
      if (k.endsWith("_per_s")) return sig(v, 4);
      if (k.endsWith("_s")) return fmtTime(v);
      if (k.endsWith("_bytes")) return fmtBytes(v);
      return sig(v, 4);
    };
    const setting = Array.from(new Set([...Object.keys(fa), ...Object.keys(fb)])).map((k) => {
      const same = JSON.stringify(fa[k]) === JSON.stringify(fb[k]);
      return el("tr", { class: same ? null : "differs" }, el("th", { scope: "row", text: k }), el("td", { text: fmtMetric(k, fa[k]) }), el("td", { text: fmtMetric(k, fb[k]) }));
    });
    const predicted = metricKeys.map((k) => {
      const va = (pa.predicted || {})[k], vb = (pb.predicted || {})[k];
      return el("tr", { class: va === vb ? null : "differs" }, el("th", { scope: "row", text: k }), el("td", { class: "num", text: fmtMetric(k, va) }), el("td", { class: "num", text: fmtMetric(k, vb) }));
    });
    const groups = Array.from(new Set([...Object.keys(pa.choices || {}), ...Object.keys(pb.choices || {})]));
    const show = (c) => (c ? `${c.weights}${c.sparsity && c.sparsity !== "dense" ? ` ${c.sparsity}` : ""}${c.tier ? ` @ ${c.tier}` : ""}` : "–");
    const changed = groups.filter((g) => show((pa.choices || {})[g]) !== show((pb.choices || {})[g]));
    const head = (first) => el("thead", {}, el("tr", {}, el("th", { scope: "col", text: first }), el("th", { scope: "col", text: a.id }), el("th", { scope: "col", text: b.id })));
    const box = $("#plans-diff-result");
    box.replaceChildren(
      el("h3", { text: `Diff: ${a.id} ↔ ${b.id}` }),
      el("div", { class: "two-col" },
        el("div", { class: "table-wrap" }, el("table", { id: "diff-settings" }, el("caption", { text: "Inputs" }), head("field"), el("tbody", {}, setting))),
        el("div", { class: "table-wrap" }, el("table", { id: "diff-predicted" }, el("caption", { text: "Predicted" }), head("metric"), el("tbody", {}, predicted)))),
      el("p", { id: "diff-summary", text: `${changed.length} of ${groups.length} groups choose differently` }),
      changed.length
        ? el("div", { class: "table-wrap" }, el("table", { id: "diff-choices" }, el("caption", { class: "sr-only", text: "Groups that differ" }), head("group"), el("tbody", {}, changed.map((g) => el("tr", { class: "differs" }, el("th", { scope: "row", text: g }), el("td", { text: show((pa.choices || {})[g]) }), el("td", { text: show((pb.choices || {})[g]) }))))))
        : null,
    );
    box.hidden = false;
    box.scrollIntoView({ block: "start" });
  }

  // ------------------------------------------------------------------ capacity

  // The capacity form is built from the service's own OpenAPI description of
  // POST /v1/capacity, so it offers exactly the fields this server accepts.
  const CAPACITY_LABELS = {
    qps: "Load (requests/s)", prompt: "Prompt tokens", gen: "Generated tokens", batch: "Batch", ttft_slo: "TTFT SLO (s)", tpot_slo: "TPOT SLO (s)",
    ttft_slo_s: "TTFT SLO (s)", tpot_slo_s: "TPOT SLO (s)", output_tokens_per_s: "Output tokens/s needed", max_devices: "Max devices per hardware",
    weights: "Weights", kv: "KV cache", formats: "Weight formats", percentile: "SLO percentile", max_pp: "Max pipeline depth", runtime: "Runtime",
  };
  const CAPACITY_DEFAULTS = { qps: 2, ttft_slo: 2, tpot_slo: 0.1, ttft_slo_s: 2, tpot_slo_s: 0.1 };
  const LOAD_FIELDS = ["qps", "output_tokens_per_s"];

  function resolveRef(doc, schema) {
    while (schema && schema.$ref) schema = schema.$ref.split("/").slice(1).reduce((o, k) => o[k], doc);
    return schema || {};
  }

  function fieldKind(doc, prop) {
    const alts = (prop.anyOf || prop.oneOf || [prop]).map((s) => resolveRef(doc, s)).filter((s) => s.type !== "null");
    const types = alts.map((s) => s.type);
    if (alts.some((s) => s.enum)) return { kind: "select", options: alts.find((s) => s.enum).enum };
    if (types.includes("array")) return { kind: "list" };
    if (types.includes("boolean")) return { kind: "bool" };
    if (types.includes("integer") && !types.includes("string")) return { kind: "int" };
    if (types.includes("number") && !types.includes("string")) return { kind: "float" };
    return { kind: "text" };
  }

  async function prepareCapacity() {
    if (state.capacitySchema) return;
    const { data: doc } = await api("GET", "/openapi.json");
    const op = doc.paths && doc.paths["/v1/capacity"] && doc.paths["/v1/capacity"].post;
    const fieldsBox = $("#capacity-fields");
    if (!op) {
      state.capacitySchema = { missing: true };
      fieldsBox.replaceChildren(el("p", { class: "muted", text: "This server has no capacity route (POST /v1/capacity)." }));
      $("#capacity-run").disabled = true;
      return;
    }
    const schema = resolveRef(doc, op.requestBody.content["application/json"].schema);
    const props = schema.properties || {};
    state.capacitySchema = { props, required: schema.required || [], doc };
    const modelSel = el("select", { id: "cap-model", name: "model", "data-type": "text" }, state.models.map((m) => el("option", { value: m.id, text: m.id })));
    modelSel.value = $("#model").value;
    const nodes = [el("div", { class: "field", "data-field": "model" }, el("label", { for: "cap-model", text: "Model" }), modelSel, el("p", { class: "field-error", role: "alert", hidden: true }))];
    for (const [name, prop] of Object.entries(props)) {
      if (name === "model" || name === "hardware" || name === "models" || name === "mix") continue;
      const k = fieldKind(doc, prop);
      const id = `cap-${name}`;
      const label = CAPACITY_LABELS[name] || prop.title || name;
      const example = Array.isArray(prop.examples) ? prop.examples[0] : undefined;
      const def = prop.default !== undefined && prop.default !== null ? prop.default : example !== undefined ? example : CAPACITY_DEFAULTS[name];
      let control;
      if (k.kind === "select") control = el("select", { id, name, "data-type": "text" }, k.options.map((o) => el("option", { value: o, text: o })));
      else if (k.kind === "bool") control = el("input", { id, name, type: "checkbox", "data-type": "bool", checked: Boolean(def) });
      else control = el("input", { id, name, "data-type": k.kind, inputmode: k.kind === "int" ? "numeric" : k.kind === "float" ? "decimal" : null, spellcheck: "false" });
      if (def !== undefined && k.kind !== "bool") control.value = Array.isArray(def) ? def.join(", ") : String(def);
      const help = prop.description ? el("p", { class: "muted small", text: prop.description }) : null;
      const f = k.kind === "bool"
        ? el("div", { class: "field check", "data-field": name }, control, el("label", { for: id, text: label }), el("p", { class: "field-error", role: "alert", hidden: true }))
        : el("div", { class: "field", "data-field": name }, el("label", { for: id, text: label }), control, help, el("p", { class: "field-error", role: "alert", hidden: true }));
      nodes.push(f);
    }
    fieldsBox.replaceChildren(...nodes);
    describeErrors();
    fillCapacityHardware();
  }

  function fillCapacityHardware() {
    const box = $("#capacity-hardware");
    if (!box) return;
    const checked = new Set($$("input:checked", box).map((i) => i.value));
    if (!checked.size) ["l4", "a100-80gb-sxm", "h100-sxm"].forEach((h) => checked.add(h));
    box.replaceChildren(...state.hardware.map((h) => el("label", { "data-name": `${h.id} ${h.name}`.toLowerCase() }, el("input", { type: "checkbox", value: h.id, checked: checked.has(h.id) }), `${h.id}`)));
    const filter = $("#capacity-hw-filter");
    filter.oninput = () => {
      const q = filter.value.trim().toLowerCase();
      for (const l of $$("label", box)) l.hidden = Boolean(q) && !l.dataset.name.includes(q);
    };
  }

  function capacityRows(data) {
    const list = data.hardware || data.ranked || data.items || data.results || [];
    return list.map((row) => {
      const o = row.best || row.closest || row;
      const meets = row.meets_slo !== undefined ? row.meets_slo : o.meets_slo;
      return { hardware: row.hardware || o.hardware, o: row.best || row.closest ? o : row, meets: meets !== false, has: Boolean(row.best || row.closest || row.devices) };
    });
  }

  async function runCapacity(ev) {
    ev.preventDefault();
    const form = $("#capacity-form");
    const btn = $("#capacity-run");
    const status = $("#capacity-progress");
    clearErrors(form);
    await prepareCapacity();
    if (state.capacitySchema.missing) return;
    const body = readForm(form);
    body.hardware = $$("#capacity-hardware input:checked").map((i) => i.value);
    if (!("hardware" in state.capacitySchema.props)) delete body.hardware;
    busy(btn, true, "Comparing…");
    try {
      status.textContent = "at the requested load…";
      const { data } = await api("POST", "/v1/capacity", body);
      const rows = capacityRows(data);
      renderCapacity(body, rows);
      // Cost against load: the same question at a few multiples of the load.
      const loadField = LOAD_FIELDS.find((f) => typeof body[f] === "number");
      if (loadField) {
        const series = new Map();
        const mults = [0.25, 0.5, 1, 2, 4];
        for (const m of mults) {
          const v = body[loadField] * m;
          status.textContent = `cost at ${sig(v)} ${loadField === "qps" ? "QPS" : "tokens/s"}…`;
          let r = rows;
          if (m !== 1) {
            try {
              r = capacityRows((await api("POST", "/v1/capacity", Object.assign({}, body, { [loadField]: v }))).data);
            } catch (e) {
              if (e.status !== 422) throw e;
              r = [];
            }
          }
          for (const row of r) {
            if (!row.meets || row.o.usd_per_hour === null || row.o.usd_per_hour === undefined) continue;
            if (!series.has(row.hardware)) series.set(row.hardware, []);
            series.get(row.hardware).push([v, row.o.usd_per_hour]);
          }
        }
        const plot = $("#capacity-plot");
        plot.replaceChildren(costPlot(series, loadField));
        plot.dataset.series = String(series.size);
      }
      status.textContent = "";
    } catch (e) {
      status.textContent = "";
      showError([form], e);
    } finally {
      busy(btn, false);
    }
  }

  function renderCapacity(body, rows) {
    const sorted = rows.slice().sort((a, b) => (b.meets - a.meets) || ((a.o.usd_per_hour ?? Infinity) - (b.o.usd_per_hour ?? Infinity)));
    const head = el("tr", {}, ["#", "hardware", "devices", "layout", "weights / act / kv", "TTFT p50 / p95", "TPOT p50 / p95", "USD/h", "USD/M tok", "meets SLO"].map((h) => el("th", { scope: "col", text: h })));
    const trs = sorted.map((r, i) => {
      const o = r.o;
      if (!r.has) return el("tr", {}, el("td", { text: i + 1 }), el("td", { text: r.hardware }), el("td", { colspan: 7, class: "muted", text: "does not fit at any layout" }), el("td", { class: "no", text: "no" }));
      return el("tr", {},
        el("td", { text: i + 1 }), el("td", { text: r.hardware }), el("td", { class: "num", text: o.devices ?? "–" }),
        el("td", { text: o.tp ? `tp${o.tp}·pp${o.pp} × ${o.replicas}` : "–" }),
        el("td", { text: [o.weights, o.activations, o.kv].filter(Boolean).join(" / ") || "–" }),
        el("td", { class: "num", text: o.ttft_p50_s !== undefined ? `${fmtTime(o.ttft_p50_s)} / ${fmtTime(o.ttft_p95_s)}` : fmtTime(o.ttft_s) }),
        el("td", { class: "num", text: o.tpot_p50_s !== undefined ? `${fmtTime(o.tpot_p50_s)} / ${fmtTime(o.tpot_p95_s)}` : fmtTime(o.tpot_s) }),
        el("td", { class: "num", text: o.usd_per_hour != null ? sig(o.usd_per_hour) : "–" }),
        el("td", { class: "num", text: o.usd_per_million_tokens != null ? sig(o.usd_per_million_tokens) : "–" }),
        el("td", { class: r.meets ? "ok" : "no", text: r.meets ? "yes" : `no${o.failures && o.failures.length ? ": " + [].concat(o.failures).join("; ") : ""}` }));
    });
    $("#capacity-result").replaceChildren(
      el("div", { class: "panel" },
        el("h3", { text: "Cheapest first" }),
        el("div", { class: "table-wrap" }, el("table", { id: "capacity-table" }, el("caption", { class: "sr-only", text: "Hardware side by side, cheapest first" }), el("thead", {}, head), el("tbody", {}, trs))),
        el("h3", { text: "Cost against load" }),
        el("div", { id: "capacity-plot", class: "chart" }, el("p", { class: "muted", text: "solving at other loads…" }))));
  }

  const LINE_COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#999933"];

  function costPlot(series, loadField) {
    const all = Array.from(series.values()).flat();
    if (!all.length) return el("p", { class: "muted", text: "No hardware meets the SLOs at these loads." });
    const W = 760, H = 340;
    const b = { left: 78, right: W - 150, top: 14, bottom: H - 48 };
    const xs = logScale(Math.min(...all.map((p) => p[0])) / 1.3, Math.max(...all.map((p) => p[0])) * 1.3, b.left, b.right);
    const ymin = Math.min(...all.map((p) => p[1])), ymax = Math.max(...all.map((p) => p[1]));
    const ys = logScale(Math.max(ymin / 1.5, 1e-3), ymax * 1.5, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `Fleet cost against load for ${series.size} hardware` });
    axes(s, b, xs, Object.assign({}, ys, { label: (v) => `$${sig(v, 2)}` }), loadField === "qps" ? "offered load (requests/s)" : "output tokens/s", "fleet cost (USD/hour)", "", "");
    let i = 0;
    for (const [hw, pts] of series) {
      const colour = LINE_COLOURS[i++ % LINE_COLOURS.length];
      pts.sort((a, c) => a[0] - c[0]);
      const path = svg("path", { class: "line", d: pts.map((p, j) => `${j ? "L" : "M"}${xs.map(p[0])},${ys.map(p[1])}`).join("") });
      path.style.stroke = colour;
      s.append(path);
      for (const p of pts) {
        const c = svg("circle", { cx: xs.map(p[0]), cy: ys.map(p[1]), r: 4, tabindex: 0, role: "img", "aria-label": `${hw}: $${sig(p[1])}/h at ${sig(p[0])}` });
        c.style.fill = colour;
        tipOn(c, hw, [["load", sig(p[0])], ["USD/h", sig(p[1])]]);
        s.append(c);
      }
      const last = pts[pts.length - 1];
      const t = svg("text", { x: b.right + 6, y: ys.map(last[1]) + 4, text: hw });
      t.style.fill = colour;
      s.append(t);
    }
    return s;
  }

  // ------------------------------------------------------------------ start

  async function start() {
    describeErrors();
    setupTabs();
    setupKey();
    setupContext();
    setupEstimate();
    setupPlan();
    setupPlans();
    $("#capacity-form").addEventListener("submit", runCapacity);
    $("#roof-prefill").addEventListener("change", drawRoofline);
    $("#roof-decode").addEventListener("change", drawRoofline);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") hideTip();
    });
    document.addEventListener("scroll", followTip, { passive: true, capture: true });
    showView(location.hash.slice(1) || "estimate", false);
    drawRoofline();
    fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).then((h) => ($("#version").textContent = `v${h.version}`)).catch(() => {});
    try {
      await loadCatalog();
    } catch (e) {
      if (e.status !== 401) showError([$("#global-error")], e);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
