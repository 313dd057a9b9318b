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
    engines: [], // every engine profile (GET /v1/engines)
    enginesOn: new Map(), // "hardware|model" -> {items, default, default_training} (defaults for the model's family)
    engineInfo: new Map(), // "engine@hardware" -> GET /v1/engines/{id}?hardware= answer
    engineSupport: null, // that answer for the picked engine and hardware
    engineAuto: true, // the picker follows the hardware's default until the user picks
    engineSeq: 0,
    formatsData: null,
    shared: {}, // view -> query string of its last result's inputs
    compare: { a: null, b: null },
    requests: new Map(), // plan id -> the request that solved it (this tab)
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

  // Replace a node's children. (The DOM's own replaceChildren turns a null child into the
  // text "null"; this drops null, undefined and false like el() does.)
  function fill(node, ...children) {
    node.replaceChildren();
    append(node, children);
    return node;
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
  // What a per-token energy or cost counts (per_token_basis of an estimate or a plan's predictions):
  // [one, many]; a response without it (older plans, serving frontiers) counts generated tokens.
  const PER_TOKEN_UNITS = {
    output_tokens: ["output token", "output tokens"], prompt_tokens: ["prompt token", "prompt tokens"],
    images: ["image", "images"], image_patches: ["image patch", "image patches"],
  };
  const perUnit = (basis) => PER_TOKEN_UNITS[basis] || ["token", "tokens"];
  // a plan's prediction for a model that generates nothing: images, or prompt tokens with no KV cache
  const planGenerates = (pr) => (typeof pr.generative === "boolean" ? pr.generative  // older plans: inferred
    : !(pr.per_token_basis === "images" || pr.per_token_basis === "image_patches"
      || (pr.per_token_basis === "prompt_tokens" && !pr.kv_cache_bytes)));
  // a training step's positions: a CNN's images, a ViT's patches, else tokens
  const trainUnit = (d) => ({ images: "images", image_patches: "patches" })[d.per_token_basis] || "tok";
  const perMillion = (x, basis) => (x === null || x === undefined ? "–" : `$${sig(x)} / M ${perUnit(basis)[1]}`);

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

  // ------------------------------------------------------------------ shareable links

  // Every view's inputs live in the URL's hash: #view?field=value&… . Opening such a link
  // fills the view's form in and shows its result again (a stored plan by its id).
  function parseHash(hash = location.hash) {
    const h = hash.replace(/^#/, "");
    const i = h.indexOf("?");
    return { view: i < 0 ? h : h.slice(0, i), params: new URLSearchParams(i < 0 ? "" : h.slice(i + 1)) };
  }

  const currentView = () => parseHash().view || "estimate";

  function bodyParams(body, skip = ["per_op"]) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) {
      if (skip.includes(k) || v === undefined || v === null || v === "") continue;
      q.set(k, Array.isArray(v) ? v.join(",") : String(v));
    }
    return q.toString();
  }

  // Remember the inputs of a view's result in the address bar (no new history entry).
  function share(view, query) {
    state.shared[view] = query;
    // Until a link's own inputs are restored, the address is the link: leave it alone.
    if (state.restored && currentView() === view) history.replaceState(null, "", `#${view}${query ? `?${query}` : ""}`);
  }

  // Fill a form's named controls from link parameters; unknown names are left alone.
  // Fill a view's form from a link. Returns what the page cannot take from it, as problems to show beside the
  // result (the rest of the link still runs): a key that is no field of the view (``extras``: the keys the view
  // reads itself), a choice the form does not offer, a key given twice (the first is used, as for the model).
  function fillFromParams(form, params, extras = []) {
    const problems = [], unknown = [], twice = [];
    const seen = new Set();
    for (const [k, v] of params) {
      if (seen.has(k)) {
        if (!twice.includes(k)) twice.push(k);
        continue;
      }
      seen.add(k);
      const c = $(`[name="${CSS.escape(k)}"]`, form);
      if (!c) {
        if (!extras.includes(k) && !LINK_KEYS.includes(k)) unknown.push(k);
        continue;
      }
      const before = c.value;
      if (c.type === "checkbox") c.checked = v === "true";
      else c.value = c.dataset.type === "list" ? v.split(",").join(", ") : v;
      if (c.tagName === "SELECT" && c.value !== v) {
        c.value = before; // not blank: the form's own choice stays
        const offered = Array.from(c.options).map((o) => o.value).filter(Boolean);
        problems.push(new ApiError(422, { code: "invalid_field", field: k, message: `the link's ${k} '${v}' is not one of: ${offered.join(", ")}` }));
      }
      c.dispatchEvent(new Event("change"));
    }
    if (unknown.length) {
      problems.push(new ApiError(422, { code: "invalid_field", field: null, message: `the link's ${unknown.map((k) => `'${k}'`).join(", ")} ${unknown.length === 1 ? "is not a field" : "are not fields"} of this view: ignored` }));
    }
    if (twice.length) {
      problems.push(new ApiError(422, { code: "invalid_field", field: null, message: `the link gives ${twice.map((k) => `'${k}'`).join(", ")} more than once: the first is used` }));
    }
    return problems;
  }

  // Keys a link carries beside its view's form fields (the pickers, the sweep's batches, a stored plan's id).
  const LINK_KEYS = ["model", "hardware", "engine"];

  // Model, hardware and engine of a link. A model or hardware this server lacks is an error that blocks the run
  // (``blocks``), though the link's other fields are still filled in; an engine that does not run on the hardware
  // is replaced and said so, and the run goes on. The formats a link does not name are the engine's defaults on its
  // hardware (fp16 on a phone), as after picking the hardware by hand. Returns the problems; throws only on a failed
  // request.
  async function pickContext(params) {
    const problems = [];
    for (const k of ["model", "hardware"]) {
      const v = params.get(k);
      if (!v) continue;
      const sel = $(`#${k}`);
      if (!Array.from(sel.options).some((o) => o.value === v)) {
        const e = new ApiError(404, { code: "not_found", field: k, message: `the link names ${k} '${v}', which this server does not have` });
        e.blocks = true;
        problems.push(e);
        continue;
      }
      sel.value = v;
    }
    describeContext();
    try {
      await setEngine(params.get("engine"), true);
    } catch (e) {
      if (!(e instanceof ApiError) || e.field !== "engine") throw e;
      problems.push(e);
    }
    resetFormats(state.engineSupport, new Map(FORMAT_FIELDS().map((c) => [c, c.value])));
    return problems;
  }

  // Show a link's problems beside their fields after its run (a run clears the form's errors first).
  function showLinkProblems(scopes, problems) {
    const loose = problems.filter((e) => !e.field);
    for (const e of problems.filter((e) => e.field)) showError(scopes, e);
    // the ones of no one field share the form's message box: one sentence each
    if (loose.length) showError(scopes, new ApiError(422, { code: "invalid_field", field: null, message: loose.map((e) => e.message).join("; ") }));
  }

  // ------------------------------------------------------------------ equivalent CLI and curl

  // REST field → CLI flag where the flag is not the field with '-' for '_'; null: no flag.
  const CLI_FLAGS = { ttft_slo_s: "--ttft-slo", tpot_slo_s: "--tpot-slo", time_limit_s: "--time-limit", per_op: null, id: null };
  const CLI_COMMAND = { estimate: "tierwise estimate", plan: "tierwise plan", capacity: "tierwise capacity serve", frontier: "tierwise capacity frontier" };
  const ROUTE = { estimate: "/v1/estimate", plan: "/v1/plans", capacity: "/v1/capacity", frontier: "/v1/capacity/frontier" };

  function shq(v) {
    const t = String(v);
    return /^[A-Za-z0-9_.,:/=+@%-]+$/.test(t) ? t : `'${t.replace(/'/g, "'\\''")}'`;
  }

  function cliCommand(kind, body) {
    const parts = [CLI_COMMAND[kind]];
    for (const [k, v] of Object.entries(body)) {
      const flag = k in CLI_FLAGS ? CLI_FLAGS[k] : `--${k.replace(/_/g, "-")}`;
      if (!flag || v === undefined || v === null || v === "" || v === false) continue;
      if (kind === "estimate" && k === "mode" && v === "inference") continue;
      if (v === true) parts.push(flag);
      else parts.push(flag, shq(Array.isArray(v) ? v.join(",") : v));
    }
    return parts.join(" ");
  }

  function curlCommand(kind, body, method = "POST", path = ROUTE[kind]) {
    const auth = apiKey() ? ` \\\n  -H "Authorization: Bearer $TIERWISE_API_KEY"` : "";
    if (method === "GET") return `curl -sS${auth} ${shq(location.origin + path)}`;
    return `curl -sS -X ${method} ${shq(location.origin + path)} \\\n  -H 'Content-Type: application/json'${auth} \\\n  -d ${shq(JSON.stringify(body))}`;
  }

  function copyButton(getText, label) {
    return el("button", { type: "button", class: "secondary small-btn", text: label, onclick: async (ev) => {
      const b = ev.currentTarget;
      try {
        await navigator.clipboard.writeText(getText());
        b.textContent = "Copied";
      } catch (_) {
        b.textContent = "Select and copy the text";
      }
      setTimeout(() => (b.textContent = label), 2000);
    } });
  }

  // The same request from a terminal: the CLI command and the curl call of the REST route.
  function commands(kind, body, extra) {
    const cli = cliCommand(kind, body);
    const curl = curlCommand(kind, body);
    const custom = [state.models.find((m) => m.id === body.model), state.hardware.find((h) => h.id === body.hardware)].filter((x) => x && x.custom);
    return el("details", { class: "commands", "data-kind": kind },
      el("summary", { text: "Equivalent CLI command and curl" }),
      el("div", { class: "cmd-head" }, el("span", { class: "muted small", text: "CLI" }), copyButton(() => cli, "Copy")),
      el("pre", { class: "cmd-cli", text: cli }),
      el("div", { class: "cmd-head" }, el("span", { class: "muted small", text: `curl (${ROUTE[kind]})` }), copyButton(() => curl, "Copy")),
      el("pre", { class: "cmd-curl", text: curl }),
      extra || null,
      custom.length ? el("p", { class: "muted small", text: `${custom.map((c) => c.id).join(" and ")} ${custom.length > 1 ? "are" : "is"} registered on this server only: give the CLI the config or profile file instead of the id.` }) : null);
  }

  // ------------------------------------------------------------------ CSV and zip downloads

  function csvCell(v) {
    const t = String(v === null || v === undefined ? "" : v);
    return /[",\n\r]/.test(t) ? `"${t.replace(/"/g, '""')}"` : t;
  }

  // A table as CSV: the raw number a cell carries (data-v) where it has one, else its text.
  function tableCsv(table) {
    return $$("tr", table).map((tr) => $$("th, td", tr).flatMap((c) => {
      const v = c.dataset.v !== undefined ? c.dataset.v : c.textContent.trim();
      const span = c.colSpan > 1 ? c.colSpan : 1;
      return [csvCell(v), ...Array(span - 1).fill("")];
    }).join(",")).join("\r\n") + "\r\n";
  }

  function csvButton(getTable, name) {
    return el("button", { type: "button", class: "secondary small-btn csv", text: "Download CSV", "data-csv": name, onclick: () => {
      const t = typeof getTable === "function" ? getTable() : getTable;
      if (t) download(name, tableCsv(t), "text/csv");
    } });
  }

  const CRC_TABLE = (() => {
    const t = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      t[n] = c >>> 0;
    }
    return t;
  })();

  function crc32(bytes) {
    let c = 0xffffffff;
    for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  }

  // A zip archive (stored, no compression; PKWARE APPNOTE 6.3.x) of [path, text] files,
  // built here so a multi-file export is one download. Names are UTF-8 (flag bit 11).
  function zip(files) {
    const enc = new TextEncoder();
    const now = new Date();
    const dosTime = (now.getHours() << 11) | (now.getMinutes() << 5) | (now.getSeconds() >> 1);
    const dosDate = ((now.getFullYear() - 1980) << 9) | ((now.getMonth() + 1) << 5) | now.getDate();
    const chunks = [], central = [];
    let offset = 0;
    for (const [path, text] of files) {
      const name = enc.encode(path), data = enc.encode(text), crc = crc32(data);
      const head = new DataView(new ArrayBuffer(30));
      [[0, 0x04034b50, 4], [4, 20, 2], [6, 0x0800, 2], [8, 0, 2], [10, dosTime, 2], [12, dosDate, 2], [14, crc, 4], [18, data.length, 4], [22, data.length, 4], [26, name.length, 2], [28, 0, 2]]
        .forEach(([o, v, n]) => (n === 4 ? head.setUint32(o, v, true) : head.setUint16(o, v, true)));
      const cen = new DataView(new ArrayBuffer(46));
      [[0, 0x02014b50, 4], [4, 20, 2], [6, 20, 2], [8, 0x0800, 2], [10, 0, 2], [12, dosTime, 2], [14, dosDate, 2], [16, crc, 4], [20, data.length, 4], [24, data.length, 4], [28, name.length, 2], [30, 0, 2], [32, 0, 2], [34, 0, 2], [36, 0, 2], [38, 0, 4], [42, offset, 4]]
        .forEach(([o, v, n]) => (n === 4 ? cen.setUint32(o, v, true) : cen.setUint16(o, v, true)));
      chunks.push(new Uint8Array(head.buffer), name, data);
      central.push(new Uint8Array(cen.buffer), name);
      offset += 30 + name.length + data.length;
    }
    const size = central.reduce((a, c) => a + c.length, 0);
    const end = new DataView(new ArrayBuffer(22));
    [[0, 0x06054b50, 4], [4, 0, 2], [6, 0, 2], [8, files.length, 2], [10, files.length, 2], [12, size, 4], [16, offset, 4], [20, 0, 2]]
      .forEach(([o, v, n]) => (n === 4 ? end.setUint32(o, v, true) : end.setUint16(o, v, true)));
    return new Blob([...chunks, ...central, new Uint8Array(end.buffer)], { type: "application/zip" });
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

  // The form control (and its label) that a REST field name stands for in these scopes.
  function fieldControl(scopes, name) {
    if (!name) return null;
    const hit = fieldsIn(scopes).find((c) => c.dataset.field.split(/\s+/).includes(name));
    if (!hit) return null;
    const control = $("input, select, textarea", hit);
    const label = hit.tagName === "FIELDSET" ? $("legend", hit) : (control && control.labels && control.labels[0]) || $("label", hit);
    return { box: hit, control, label: label ? label.textContent.trim() : name };
  }

  // Messages name fields the REST way ('max_memory_per_device') or, from older servers and
  // the planner's diagnosis, the CLI way (--max-memory-per-device 2e9, --allow-offload).
  // On the page they read as the form's own labels: “Memory per device” = 2e9.
  function forForm(message, scopes) {
    let text = String(message || "");
    const label = (name) => {
      const f = fieldControl(scopes, name) || fieldControl(ALL_FORMS(), name);
      return f ? `“${f.label}”` : null;
    };
    text = text.replace(/^field '([A-Za-z0-9_.]+)': /, (m, name) => {
      const l = label(name.split(".")[0]);
      return l ? `${l}: ` : m;
    });
    text = text.replace(/--([a-z][a-z0-9-]*)(?:[ =]([0-9.][^\s,;)]*|'[^']*'))?/g, (m, flag, value) => {
      const name = CLI_FLAG_FIELDS[flag] || flag.replace(/-/g, "_");
      const l = label(name);
      if (!l) return m;
      return value !== undefined ? `${l} = ${value}` : l;
    });
    text = text.replace(/'([a-z][a-z0-9_]*)'/g, (m, name) => label(name) || m);
    return text;
  }

  // CLI flags whose REST field is not simply the flag with '_' for '-'.
  const CLI_FLAG_FIELDS = { "ttft-slo": "ttft_slo_s", "tpot-slo": "tpot_slo_s", "time-limit": "time_limit_s" };
  const ALL_FORMS = () => [$("#estimate-form"), $("#plan-form"), $("#capacity-form"), $("#context")];
  const CONTEXT_SCOPES = () => [$("#context")];

  // Show an API error beside the control its `field` names (a dotted path such as
  // "formats.0" or "choices.model.layers.4.mlp.gate_up.weights" falls back to its
  // prefixes), else in the form's error box, else in the page banner.
  function showError(scopes, err) {
    const message = forForm(err.message || String(err), scopes);
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
        const f = err.field ? fieldControl(scopes, err.field.split(".")[0]) : null;
        box.textContent = err.field && !message.includes("“") ? `${f ? f.label : err.field}: ${message}` : message;
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

  const VIEWS = ["estimate", "roofline", "throughput", "compare", "plan", "capacity", "plans"];
  const CONTEXT_VIEWS = new Set(["estimate", "roofline", "throughput", "plan"]);

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
    // The address keeps this view's inputs (its last result's link), so it can be shared.
    if (currentView() !== name || !location.hash) history.replaceState(null, "", `#${name}${state.shared[name] ? `?${state.shared[name]}` : ""}`);
    if (name === "plans") loadPlans(true).catch(() => {});
    if (name === "capacity" && state.models.length) prepareCapacity().catch((e) => showError([$("#capacity-form")], e));
    if (name === "throughput" && state.models.length) prepareFrontier().catch((e) => showError([$("#frontier-form")], e));
    if (name === "roofline" && state.estimate) drawRoofline();
    if (CONTEXT_VIEWS.has(name) && state.engines.length) followDefaultEngine();
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
    window.addEventListener("hashchange", () => {
      showView(currentView(), false);
      if (state.models.length) restoreFromHash().catch(() => {});
    });
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
        showView(currentView(), false); // reload what the view shows
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
    const [hw, models, formats, engines] = await Promise.all([api("GET", "/v1/hardware"), api("GET", "/v1/models"), api("GET", "/v1/formats"), api("GET", "/v1/engines")]);
    state.engines = engines.data.items;
    state.formatsData = formats.data;
    state.hardware = hw.data.items;
    state.models = models.data.items;
    state.formats = new Map(formats.data.formats.map((f) => [f.name, f]));
    state.aliases = formats.data.aliases || {};
    state.exportFormats = formats.data.export_formats || [];
    fillSelect($("#model"), state.models, (m) => `${m.id} — ${sig(m.params / 1e9)} B params${m.custom ? " (custom)" : ""}`, "llama-3.1-8b");
    fillSelect($("#hardware"), state.hardware, (h) => `${h.name} (${h.id})${h.custom ? " — custom" : ""}`, "h100-sxm");
    fillDatalists();
    fillCapacityHardware();
    describeContext();
    await engineChanged();
    if (!$("#view-capacity").hidden) await prepareCapacity();
    if (!$("#view-throughput").hidden) await prepareFrontier();
    document.body.dataset.ready = "true";
    performance.mark("tierwise-ready");
  }

  function fillSelect(select, items, label, preferred) {
    const keep = select.value;
    fill(select, ...items.map((it) => el("option", { value: it.id, text: label(it) })));
    const want = items.some((i) => i.id === keep) ? keep : items.some((i) => i.id === preferred) ? preferred : items[0] && items[0].id;
    if (want) select.value = want;
  }

  // Suggestions for the format fields: what the picked engine runs on the picked hardware
  // (every registered format when no engine is known). Other names can still be typed; the
  // API's answer then says what the engine runs.
  function fillDatalists() {
    const data = state.formatsData;
    if (!data) return;
    const sup = state.engineSupport && state.engineSupport.support;
    const allowed = { weight: sup && sup.weights, activation: sup && sup.activations, kv: sup && sup.kv };
    const opts = (role) => data.formats.filter((f) => f.roles.includes(role) && (!allowed[role] || allowed[role].includes(f.name)))
      .map((f) => el("option", { value: f.name, label: `${sig(f.bits_per_value, 4)} bits — ${f.description}` }));
    fill($("#formats-weight"), ...opts("weight"));
    fill($("#formats-activation"), ...opts("activation"));
    fill($("#formats-kv"), ...opts("kv"));
    const sparsity = data.sparsity.filter((x) => !sup || sup.sparsity.includes(x.split(":")[0] === "unstructured" ? "unstructured" : x));
    fill($("#sparsity-list"), ...sparsity.map((x) => el("option", { value: x })));
  }

  function describeContext() {
    const m = state.models.find((x) => x.id === $("#model").value);
    const h = state.hardware.find((x) => x.id === $("#hardware").value);
    $("#model-info").textContent = m
      ? `${m.family}, ${m.num_layers} layers, hidden ${m.hidden_size}, ${sig(m.params / 1e9)} B params (${sig(m.active_params / 1e9)} B active)`
      : "";
    // A model without a KV cache (an encoder, a ViT, a CNN) takes no KV format: the service refuses
    // one, so the fields are disabled (and left out of the request) while such a model is chosen.
    const noCache = Boolean(m) && !["decoder", "encoder_decoder"].includes(m.family);
    for (const c of [$("#est-kv"), $("#plan-kv")]) {
      if (!c) continue;
      c.disabled = noCache;
      c.title = noCache ? `${m.id} keeps no KV cache (${m.family})` : "";
    }
    $("#hardware-info").textContent = h
      ? `${h.class}; ${fmtBytes(h.memory_capacity_bytes)} at ${fmtBytes(h.device_bandwidth_bytes_per_s)}/s; ${h.peak_bf16_flops_per_s ? fmtFlops(h.peak_bf16_flops_per_s) + "/s bf16" : "no bf16 peak"}${h.usd_per_hour != null ? `; $${sig(h.usd_per_hour)}/h` : ""}`
      : "";
  }

  // A result that arrives for a model, hardware or engine the pickers no longer show says so at once.
  function staleIfMoved(body) {
    if (body.model !== $("#model").value || body.hardware !== $("#hardware").value || (body.engine && body.engine !== $("#engine").value)) markStale();
  }

  // A result on screen whose model, hardware or engine the pickers no longer show says so (a new run replaces it).
  function markStale() {
    for (const id of ["#estimate-result", "#throughput-result", "#plan-result", "#roofline-chart"]) {
      const box = $(id);
      if (!box || !box.firstElementChild || $(".stale-note", box)) continue;
      box.prepend(el("p", { class: "stale-note note-change", role: "status", text: "The model, hardware or engine changed since this result: it is for the earlier ones. Run again for the new ones." }));
    }
  }

  function setupContext() {
    for (const id of ["#model", "#hardware", "#engine"]) $(id).addEventListener("change", markStale);
    $("#model").addEventListener("change", () => {
      describeContext();
      clearErrors($("#context"));
      // an engine left to its default follows the model's family (a CNN is not llama.cpp's)
      if (state.engineAuto) {
        enginesOn($("#hardware").value).then((d) => {
          const want = (pickerKind() === "training" ? d.default_training : d.default) || "";
          if (want && want !== $("#engine").value) engineChanged().catch(() => {});
        }).catch(() => {});
      }
    });
    $("#hardware").addEventListener("change", () => {
      describeContext();
      clearErrors($("#context"));
      engineChanged().catch(() => {});
    });
    $("#engine").addEventListener("change", () => {
      state.engineAuto = false;
      clearErrors($("#context"));
      engineChanged().catch(() => {});
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
        await engineChanged();
        form.closest("details").open = false;
      } catch (e) {
        showError([form], e);
      } finally {
        busy(btn, false);
      }
    });
  }

  // ------------------------------------------------------------------ engine

  // The engine (vLLM, TensorRT-LLM, llama.cpp, ExecuTorch, …) is one more field of every
  // request. The picker lists the engines that run on the chosen hardware
  // (GET /v1/engines?hardware=) and starts at the hardware class's default — the engine a
  // request without one gets (the training default for a training estimate). Choosing
  // hardware or an engine resets the format fields to what that engine runs there
  // (GET /v1/engines/{id}?hardware=), so the defaults never fail; other formats can still
  // be typed, and the API's answer says what the engine runs.

  // What enginesOn last fetched for the picked hardware and model (undefined before).
  const enginesKnown = () => state.enginesOn.get(`${$("#hardware").value}|${$("#model").value || ""}`);

  // The engines on a hardware and its defaults for the picked model's family (a CNN on a CPU: hf-transformers).
  async function enginesOn(hw, model = $("#model").value) {
    const key = `${hw}|${model || ""}`;
    if (!state.enginesOn.has(key)) {
      const q = `hardware=${encodeURIComponent(hw)}${model ? `&model=${encodeURIComponent(model)}` : ""}`;
      state.enginesOn.set(key, (await api("GET", `/v1/engines?${q}`)).data);
    }
    return state.enginesOn.get(key);
  }

  async function engineInfo(id, hw) {
    const key = `${id}@${hw}`;
    if (!state.engineInfo.has(key)) state.engineInfo.set(key, (await api("GET", `/v1/engines/${encodeURIComponent(id)}?hardware=${encodeURIComponent(hw)}`)).data);
    return state.engineInfo.get(key);
  }

  const wantTraining = () => $("#est-mode").value === "training" && ["estimate", "roofline"].includes(currentView());
  const engineName = (id) => (state.engines.find((e) => e.id === id) || { name: id }).name;

  // The engines the picker offers: those of the request the view sends. A training engine
  // (Megatron-Core, FSDP) runs no inference, so only a training estimate offers them; every
  // other view (an inference estimate, a plan, a sweep) offers the serving and on-device ones.
  const pickerKind = () => (wantTraining() ? "training" : "serving");
  const ofKind = (items, kind) => items.filter((e) => (e.kind === "training") === (kind === "training"));

  // Fill the picker for `hw`; keep `want` when it runs there (and is of the view's kind), else
  // take the default. Answers whether `want` had to be replaced because it does not run on `hw`.
  async function setEngineOptions(hw, want) {
    const d = await enginesOn(hw);
    const sel = $("#engine");
    const kind = pickerKind();
    const items = ofKind(d.items, kind);
    const hwClass = (state.hardware.find((h) => h.id === hw) || {}).class || "this hardware";
    const label = (e) => {
      const tags = [e.id === d.default ? `default for ${hwClass}` : null, e.id === d.default_training ? "training default" : null].filter(Boolean);
      return `${e.name} (${e.id})${tags.length ? ` — ${tags.join(", ")}` : ""}`;
    };
    const group = (name, list) => (list.length ? el("optgroup", { label: name }, list.map((e) => el("option", { value: e.id, text: label(e) }))) : null);
    fill(sel, group(kind === "training" ? "Training" : "Serving", items));
    sel.dataset.kind = kind;
    const runs = Boolean(want) && items.some((e) => e.id === want);
    const fallback = (kind === "training" ? d.default_training : d.default) || (items[0] && items[0].id) || "";
    sel.value = runs ? want : fallback;
    if (want && !runs) state.engineAuto = true; // the pick could not stay: the default has the picker now, and follows
    return { replaced: want && !d.items.some((e) => e.id === want) ? want : null, hw };
  }

  function showEngine(info, replaced, hw) {
    const box = $("#engine-info");
    if (!info) {
      box.textContent = `no engine profile runs on ${hw}: requests take the server's default`;
      return;
    }
    const sup = info.support || {};
    const par = (sup.parallel || []).length ? sup.parallel.join(", ") : "one device";
    const gone = replaced && !state.engines.some((e) => e.id === replaced);
    box.textContent = `${replaced ? (gone ? `this server has no engine '${replaced}'; ` : `${engineName(replaced)} does not run on ${hw}; `) : ""}${info.kind}, exports as ${info.exporter}. On ${hw}: weights ${(sup.weights || []).join(", ")}; KV ${(sup.kv || []).join(", ") || "–"}; parallel ${par}.`;
    box.dataset.engine = info.id;
  }

  // The format fields that follow the engine, as they are now.
  const FORMAT_FIELDS = () => [["#estimate-form", "weights"], ["#estimate-form", "activations"], ["#estimate-form", "kv"], ["#estimate-form", "sparsity"],
    ["#plan-form", "formats"], ["#plan-form", "activations"], ["#plan-form", "kv"]].map(([f, n]) => $(`[name="${n}"]`, $(f))).filter(Boolean);

  // Reset the format fields to the engine's defaults on this hardware: the estimate's
  // weights / activations / KV, dense sparsity; the plan's fields empty (searched, or the
  // engine's default), with the default shown as the placeholder. A field typed into
  // while the engine's answer was on its way keeps what was typed.
  function resetFormats(info, snapshot) {
    const d = (info && info.defaults) || {};
    const sup = (info && info.support) || {};
    const set = (c, v) => {
      if (snapshot.get(c) !== c.value || v === undefined || v === null) return;
      c.value = v;
      c.removeAttribute("aria-invalid");
      // an error about the value it had (another engine's refusal) no longer applies
      const err = c.closest(".field") && $(".field-error", c.closest(".field"));
      if (err) {
        err.textContent = "";
        err.hidden = true;
      }
    };
    const est = $("#estimate-form"), plan = $("#plan-form");
    set($('[name="weights"]', est), d.weights);
    set($('[name="activations"]', est), d.activations);
    set($('[name="kv"]', est), d.kv);
    set($('[name="sparsity"]', est), "dense");
    for (const n of ["formats", "activations", "kv"]) set($(`[name="${n}"]`, plan), "");
    $("#plan-formats").placeholder = info && info.plan_formats ? `engine default: ${info.plan_formats.join(", ")}` : "default set";
    $("#plan-activations").placeholder = d.activations || "bf16";
    $("#plan-kv").placeholder = sup.kv && sup.kv.length ? `search: ${sup.kv.join(", ")}` : "search";
  }

  // After the user chose hardware or an engine (and on load): the picker, then the formats.
  async function engineChanged(reset = true) {
    const seq = ++state.engineSeq;
    const snapshot = new Map(FORMAT_FIELDS().map((c) => [c, c.value]));
    document.body.dataset.engineReady = "false";
    const hw = $("#hardware").value;
    try {
      const { replaced } = await setEngineOptions(hw, state.engineAuto ? null : $("#engine").value);
      if (seq !== state.engineSeq) return;
      const id = $("#engine").value;
      const info = id ? await engineInfo(id, hw) : null;
      if (seq !== state.engineSeq) return;
      state.engineSupport = info;
      showEngine(info, replaced, hw);
      fillDatalists();
      fillFrontierEngines();
      if (reset) resetFormats(info, snapshot);
    } catch (e) {
      if (seq === state.engineSeq) showError(CONTEXT_SCOPES(), e);
      throw e;
    } finally {
      if (seq === state.engineSeq) document.body.dataset.engineReady = "true";
    }
  }

  // Put an engine named by a link or a stored plan in the picker (the form's formats are
  // the link's, so they are not reset). A link naming an engine that does not run on its
  // hardware says so beside the picker.
  async function setEngine(id, strict) {
    state.engineAuto = !id;
    const hw = $("#hardware").value;
    const seq = ++state.engineSeq;
    const { replaced } = await setEngineOptions(hw, id || null);
    const info = $("#engine").value ? await engineInfo($("#engine").value, hw) : null;
    if (seq === state.engineSeq) {
      state.engineSupport = info;
      showEngine(info, replaced, hw);
      fillDatalists();
      fillFrontierEngines();
    }
    if (replaced && strict) {
      const known = state.engines.some((e) => e.id === replaced);
      throw new ApiError(known ? 422 : 404, { code: known ? "engine_unsupported" : "not_found", field: "engine",
        message: known ? `the link names engine '${replaced}', which does not run on ${hw}; ${$("#engine").value ? `${$("#engine").value} is picked instead` : "no engine runs there"}` : `the link names engine '${replaced}', which this server does not have` });
    }
  }

  // The picker follows the default while the user has not picked one: a training estimate
  // gets the training default, every other view the serving one.
  // A switch between a training estimate and any other view refills the picker with the
  // engines of the new kind (the user's pick is kept when it is of that kind).
  function followDefaultEngine() {
    const d = enginesKnown();
    if (!d) return;
    if ($("#engine").dataset.kind !== pickerKind()) {
      engineChanged().catch(() => {});
      return;
    }
    if (!state.engineAuto) return;
    const want = (wantTraining() && d.default_training) || d.default;
    if (want && want !== $("#engine").value) engineChanged().catch(() => {});
  }

  const withEngine = (body) => ($("#engine").value ? Object.assign(body, { engine: $("#engine").value }) : body);

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
    mode.addEventListener("change", () => {
      sync();
      followDefaultEngine();
    });
    sync();
    // QLoRA's frozen base is 4-bit and LoRA's is not (the API refuses either mismatch naming 'weights'):
    // the weights field follows the fine-tuning method, visibly, wherever it would contradict it
    $("#est-finetune").addEventListener("change", () => {
      const method = $("#est-finetune").value.trim().toLowerCase().split(":")[0];
      const weights = $("#est-weights");
      const fourBit = /^(nf4|nf4-dq|fp4|int4|mxfp4|nvfp4)/.test(weights.value.trim().toLowerCase());
      if (method === "qlora" && !fourBit) weights.value = "nf4";
      else if (method !== "qlora" && fourBit) weights.value = "bf16";
    });
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

  function estimateBody() {
    const body = withEngine(Object.assign(readForm($("#estimate-form")), { model: $("#model").value, hardware: $("#hardware").value }));
    if (body.mode !== "training") body.per_op = true;
    return body;
  }

  // POST /v1/estimate. A configuration that does not fit in memory is answered 422
  // `infeasible` with its figures in error.details; that is a result to show, not a failure:
  // it comes back as an estimate whose memory does not fit, with the changes that would.
  async function postEstimate(body) {
    try {
      return (await api("POST", "/v1/estimate", body)).data;
    } catch (e) {
      if (e.status !== 422 || e.code !== "infeasible" || !e.details) throw e;
      const det = e.details;
      const d = Object.assign({ model: body.model, hardware: body.hardware, mode: body.mode || "inference" }, body, det.estimate || {});
      d.memory = Object.assign({}, d.memory || {}, { fits: false });
      for (const k of ["per_device_bytes", "device_capacity_bytes", "shortfall_bytes"]) if (det[k] != null) d.memory[k] = det[k];
      d.noFit = { message: e.message, changes: det.changes || [] };
      return d;
    }
  }

  async function runEstimate() {
    const form = $("#estimate-form");
    const btn = $("#estimate-run");
    const t0 = performance.now();
    performance.mark("tierwise-estimate-start");
    clearErrors(form, $("#context"));
    const body = estimateBody();
    busy(btn, true, "Estimating…");
    try {
      const [res, roofs] = await Promise.all([postEstimate(body), roofsFor(body.hardware).catch(() => null)]);
      state.estimate = { data: res, roofs, body };
      renderEstimate(res, body);
      drawRoofline();
      staleIfMoved(body); // the pickers moved while this run was on its way
      share("estimate", bodyParams(body));
      share("roofline", bodyParams(body));
      await nextFrame();
      const ms = performance.now() - t0;
      performance.mark("tierwise-estimate-end");
      performance.measure("tierwise-estimate", "tierwise-estimate-start", "tierwise-estimate-end");
      state.timings.estimates.push(ms);
      const out = $("#estimate-result");
      out.dataset.renderMs = ms.toFixed(1);
      out.dataset.count = String(state.timings.estimates.length);
    } catch (e) {
      fill($("#estimate-result"));
      showError([form, $("#context")], e);
      throw e;
    } finally {
      busy(btn, false);
    }
  }

  function card(label, value, sub, cls, range) {
    return el("div", { class: `card${cls ? " " + cls : ""}`, dataset: { card: label } }, el("div", { class: "k", text: label }), el("div", { class: "v", text: value }), range ? el("div", { class: "range", text: range }) : null, sub ? el("div", { class: "s", text: sub }) : null);
  }

  // Error bars (planner.uncertainty): "p10–p90 95 ms – 140 ms" for one figure of an estimate
  // or a capacity row; "*" marks a figure outside the validated region.
  function band(u, key, fmt, prefix = "p10–p90 ") {
    const i = u && u.intervals ? u.intervals[key] : null;
    if (!i) return "";
    return `${prefix}${fmt(i.p10)} – ${fmt(i.p90)}${i.validated ? "" : "*"}`;
  }

  function bandNotes(u) {
    if (!u) return null;
    const head = "Ranges: p10–p90 of the cost model's out-of-sample error on published measurements of the same kind";
    if (u.validated) return el("p", { class: "muted small band-notes", text: `${head} (${u.hardware_class}, ${u.engine_class} engines, batch ${u.batch_regime}).` });
    return el("div", { class: "band-notes" }, el("p", { class: "muted small", text: `${head}; * outside the validated region, the range is that of a coarser group of rows:` }), notes(u.notes));
  }

  // What one request is: prompt and generated tokens; an encoder's prompt only; a CNN's or ViT's one image.
  function workloadText(d) {
    if (d.gen !== null && d.gen !== undefined) return `batch ${d.batch}, prompt ${d.prompt}, gen ${d.gen}`;
    if (d.prompt !== null && d.prompt !== undefined) return `batch ${d.batch} of ${d.prompt} tokens, one forward pass`;
    return `batch ${d.batch} image${d.batch === 1 ? "" : "s"}, one forward pass`;
  }

  // Per device, summed over the memory tiers (device and any offload tier).
  function memorySplit(m) {
    const t = Object.values(m.tiers || {});
    const add = (k) => t.reduce((a, x) => a + (x[k] || 0), 0);
    return { weights: add("weights_bytes"), kv: add("kv_cache_bytes"), act: add("activations_bytes") };
  }

  function estimateCards(d) {
    const m = d.memory || {};
    const pre = d.prefill || {}, dec = d.decode || {};
    const split = memorySplit(m);
    // what exceeds the device tier lives in a slower one (flash, host memory): say so rather than "fits in" less
    const elsewhere = (m.offloaded_weights_bytes || 0) + (m.offloaded_kv_bytes || 0);
    const fitsText = m.per_device_bytes > m.device_capacity_bytes && elsewhere > 0
      ? `fits: ${fmtBytes(m.device_capacity_bytes)} on the device, ${fmtBytes(elsewhere)} in slower tiers`
      : `fits in ${fmtBytes(m.device_capacity_bytes)}`;
    const memCard = card("Memory per device", fmtBytes(m.per_device_bytes), m.fits ? fitsText : `does not fit: ${fmtBytes(m.shortfall_bytes)} over what ${m.limited_by === "kv_pool" ? "the engine's KV pool" : "the allowed tiers"} hold${m.limited_by === "kv_pool" ? "s" : ""}`, m.fits ? "good" : "bad");
    // An encoder, ViT or CNN generates nothing and keeps no KV cache: its answer has no gen, kv or TPOT (null).
    const generative = d.gen !== null && d.gen !== undefined;
    const splitCards = [
      card("Weights per device", fmtBytes(split.weights), m.offloaded_weights_bytes ? `${fmtBytes(m.offloaded_weights_bytes)} of them offloaded` : null),
      ...(generative ? [card("KV cache per device", fmtBytes(split.kv), m.offloaded_kv_bytes ? `${fmtBytes(m.offloaded_kv_bytes)} of it offloaded` : `${d.kv}, batch ${d.batch} × ${d.prompt + d.gen} tokens`)] : []),
      // the tiers count the engine's runtime context with the activations; the answer's activations_bytes does not
      card("Activations per device", fmtBytes(m.activations_bytes ?? split.act),
        m.activations_bytes != null && split.act - m.activations_bytes > 0 ? `+ ${fmtBytes(split.act - m.activations_bytes)} engine runtime context` : null),
    ];
    if (!m.fits) {
      // A configuration that does not fit has no timings or price to speak of.
      const changes = ((d.noFit && d.noFit.changes) || []).map((c) => c.description || JSON.stringify(c.set)).join("; ");
      return [memCard, ...splitCards,
        card("Does not fit", "no timings, no price", `${m.limited_by === "kv_pool" ? `the KV cache needs ${fmtBytes(m.shortfall_bytes)} more than the engine's KV pool (${fmtBytes(m.kv_pool_bytes)}, its memory fraction) holds` : `needs ${fmtBytes(m.per_device_bytes)} per device, ${fmtBytes(m.shortfall_bytes)} more than the device holds`}; ${changes ? `changes that fit: ${changes}` : "add devices, offload, or smaller formats"}`, "bad")];
    }
    const commPct = (c, t) => (t > 0 ? ` (${sig((100 * c) / t, 2)} %)` : "");
    const perUser = d.tpot_s > 0 ? 1 / d.tpot_s : null;
    const u = d.uncertainty;
    if (!generative) {
      const unit = perUnit(d.per_token_basis);
      const images = d.per_token_basis === "images" || d.per_token_basis === "image_patches";
      return [
        card("Latency (one forward pass)", fmtTime(d.latency_s), `batch of ${d.batch} ${images ? (d.batch === 1 ? "image" : "images") : `× ${d.prompt} tokens`}${pre.bound ? `, ${pre.bound}-bound` : ""}`, null, band(u, "latency_s", fmtTime)),
        card("Throughput", `${sig(d.samples_per_s)} ${images ? "images" : "samples"}/s`, d.per_token_basis === "images" ? "whole system" : `${sig(d.prefill_tokens_per_s)} ${unit[1]}/s, whole system`, null, band(u, "samples_per_s", sig)),
        card("Communication", fmtTime(pre.comm_s || 0), d.latency_s > 0 ? `${sig((100 * (pre.comm_s || 0)) / d.latency_s, 2)} % of the forward pass` : null),
        memCard, ...splitCards,
        card("Energy", `${sig(d.energy_j_per_token)} J/${unit[0]}`, d.energy_j_per_sample != null ? `${sig(d.energy_j_per_sample)} J per sample` : null),
        card("Cost", perMillion(d.usd_per_million_tokens, d.per_token_basis), d.usd_per_hour != null ? `$${sig(d.usd_per_hour)}/h` : "no price in the profile"),
      ];
    }
    return [
      card("Time to first token", fmtTime(d.ttft_s), `prefill ${sig(d.prefill_tokens_per_s)} tok/s`, null, band(u, "ttft_s", fmtTime)),
      card("Time per output token", fmtTime(d.tpot_s), dec.bound ? `decode is ${dec.bound}-bound` : null, null, band(u, "tpot_s", fmtTime)),
      card("Communication", `${fmtTime(pre.comm_s || 0)} / ${fmtTime(dec.comm_s || 0)}`, `prefill${commPct(pre.comm_s || 0, d.ttft_s)} of TTFT / per token${commPct(dec.comm_s || 0, d.tpot_s)} of TPOT`),
      card("Decode tokens/s", `${sig(d.decode_tokens_per_s)} tok/s`, `${sig(perUser)} tok/s per user · ${sig(d.decode_tokens_per_s / (d.devices || 1))} per device`, null, band(u, "decode_tokens_per_s", sig)),
      card("Throughput", `${sig(d.output_tokens_per_s)} tok/s`, `${sig(d.samples_per_s)} requests/s, whole system`, null, band(u, "output_tokens_per_s", sig)),
      card("Request latency", fmtTime(d.latency_s), null, null, band(u, "latency_s", fmtTime)),
      memCard, ...splitCards,
      card("Energy", `${sig(d.energy_j_per_token)} J/${perUnit(d.per_token_basis)[0]}`, d.energy_j_per_sample != null ? `${sig(d.energy_j_per_sample)} J per request` : null),
      card("Cost", perMillion(d.usd_per_million_tokens, d.per_token_basis), d.usd_per_hour != null ? `$${sig(d.usd_per_hour)}/h` : "no price in the profile"),
    ];
  }

  function renderEstimate(d, body) {
    const out = $("#estimate-result");
    const title = el("h2", { text: `${d.model} on ${d.hardware}` });
    const tools = el("div", { class: "actions inline" },
      el("button", { type: "button", class: "secondary", id: "compare-set-a", text: "Compare: set as A", onclick: () => setCompare("a", body, d) }),
      el("button", { type: "button", class: "secondary", id: "compare-set-b", text: "Compare: set as B", onclick: () => setCompare("b", body, d) }),
      el("a", { href: `#estimate?${bodyParams(body)}`, class: "share", text: "Link to this estimate" }));
    const m = d.memory || {};
    if (d.mode === "training") {
      fill(out,
        el("div", { class: "panel" },
          title,
          el("p", { class: "muted", text: `training: global batch ${d.global_batch}, micro-batch ${d.micro_batch}, seq ${d.seq}, tp ${d.tp} · pp ${d.pp} · dp ${d.dp}, ZeRO ${d.zero}, ${d.optimizer}, ${d.finetune}${d.engine || body.engine ? `; engine ${d.engine || body.engine}` : ""}` }),
          el("div", { class: "cards" },
            card("Step time", fmtTime(d.step_time_s), null, null, band(d.uncertainty, "step_time_s", fmtTime)),
            card("Throughput", `${sig(d.tokens_per_s)} ${trainUnit(d)}/s`, `${sig(d.tokens_per_s_per_device)} ${trainUnit(d)}/s per device`, null, band(d.uncertainty, "tokens_per_s", sig)),
            card("MFU", fmtPct(d.mfu), `HFU ${fmtPct(d.hfu)}`, null, band(d.uncertainty, "mfu", fmtPct)),
            card("Model FLOP/s per device", `${fmtFlops(d.model_flops_per_s_per_device)}/s`, `peak ${fmtFlops(d.peak_flops_per_s)}/s`),
            card("Memory per device", fmtBytes(m.per_device_bytes), m.fits ? `fits in ${fmtBytes(m.device_capacity_bytes)}` : `does not fit: ${fmtBytes(m.shortfall_bytes)} over ${fmtBytes(m.device_capacity_bytes)}`, m.fits ? "good" : "bad"),
            card("Cost", perMillion(d.usd_per_million_tokens, d.per_token_basis === "images" ? "images" : d.per_token_basis === "image_patches" ? "image_patches" : null), d.usd_per_hour != null ? `$${sig(d.usd_per_hour)}/h` : "no price in the profile"),
          ),
          bandNotes(d.uncertainty),
          el("h3", { text: "Memory per device" }),
          memoryBars([{ name: "device", capacity: m.device_capacity_bytes, parts: [["weights", m.weights_bytes], ["grad", m.gradients_bytes], ["opt", m.optimizer_bytes], ["act", m.activations_bytes], ["logits", m.logits_bytes], ["runtime", m.runtime_context_bytes]] }]),
          notes(d.notes),
          tools,
          commands("estimate", body),
        ),
      );
      return;
    }
    const tiers = Object.entries(m.tiers || {}).map(([name, t]) => ({
      name: `${name} (${t.role})`,
      capacity: t.capacity_bytes,
      parts: [["weights", t.weights_bytes], ["kv", t.kv_cache_bytes], ["act", t.activations_bytes]],
    }));
    fill(out,
      el("div", { class: "panel" },
        title,
        el("p", { class: "muted", text: `${workloadText(d)}; weights ${d.weights}, activations ${d.activations}${d.kv ? `, KV ${d.kv}` : ""}, ${d.sparsity}; ${d.devices} device${d.devices === 1 ? "" : "s"} (tp ${d.tp} · pp ${d.pp} · dp ${d.dp} · ep ${d.ep})${d.engine ? `; engine ${d.engine}` : ""}` }),
        el("div", { class: "cards" }, estimateCards(d)),
        m.fits ? bandNotes(d.uncertainty) : null,
        el("h3", { text: "Memory per device, by tier" }),
        memoryBars(tiers),
        notes(d.notes),
        tools,
        commands("estimate", body),
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
    runtime: ["seg-runtime", "engine runtime"],
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

  // Ticks for a log axis: powers of ten when the range spans several decades, else
  // 1-2-5 (or 1…9) times a power of ten, so a 2.5–40 range reads 5, 10, 20.
  function logTicks(lo, hi) {
    const e0 = Math.floor(Math.log10(lo)), e1 = Math.ceil(Math.log10(hi));
    const within = (v) => v >= lo * 0.999 && v <= hi * 1.001;
    const build = (mants, step = 1) => {
      const out = [];
      for (let e = e0; e <= e1; e += 1) {
        if ((e - e0) % step) continue;
        for (const m of mants) {
          const v = Number((m * 10 ** e).toPrecision(12));
          if (within(v)) out.push(v);
        }
      }
      return out;
    };
    const decades = Math.log10(hi / lo);
    if (decades > 7) return build([1], Math.ceil(decades / 6));
    if (decades >= 2.5) return build([1]);
    let t = build([1, 2, 5]);
    if (t.length < 3) t = build([1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9]);
    if (t.length > 8) t = build([1, 3]);
    return t;
  }

  function tickLabel(v, unit) {
    if (unit === "FLOP/s") return siPrefix(v, "", 2).replace(" ", "");
    if (v >= 1e4) return siPrefix(v, "", 2).replace(" ", "");
    if (v < 1e-3) return `1e${Math.round(Math.log10(v))}`;
    return sig(v, 2);
  }

  // Charts are drawn at the width of their box (one SVG unit = one CSS pixel), so their
  // text keeps its size on a phone instead of shrinking with the whole drawing.
  function chartWidth(box, max) {
    const w = box.clientWidth || (box.parentElement && box.parentElement.clientWidth) || max;
    return Math.max(300, Math.min(max, Math.floor(w)));
  }

  const redraws = new Map(); // chart box -> its draw function, redrawn when the width changes
  function redrawOnResize(box, draw) {
    redraws.set(box, [draw, box.clientWidth]);
  }

  function setupResize() {
    let timer = null;
    window.addEventListener("resize", () => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        for (const [box, [draw, w]] of redraws) {
          if (!box.isConnected) redraws.delete(box);
          else if (box.offsetParent !== null && box.clientWidth !== w) draw();
        }
      }, 150);
    });
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

  // About n round ticks (1, 2 or 5 times a power of ten apart) from lo to hi.
  function linTicks(lo, hi, n) {
    const raw = (hi - lo) / Math.max(1, n);
    const p = 10 ** Math.floor(Math.log10(raw || 1));
    const step = [1, 2, 5, 10].map((m) => m * p).find((st) => st >= raw) || 10 * p;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    return out;
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
    fill(tip, el("b", { text: title }), el("dl", {}, rows.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])));
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

  // "model.layers.{i}.self_attn.q_proj" → "self_attn.q_proj"; the count says how many
  // layers repeat it. Layer groups "model.layers.3" → "layer 3".
  function shortName(name) {
    const t = String(name).replace(/^(model|transformer|gpt_neox|decoder)\./, "");
    const m = /^(?:layers|h|blocks|layer|block)\.(\{i\}|\d+)(?:\.(.+))?$/.exec(t);
    if (!m) return t;
    if (!m[2]) return m[1] === "{i}" ? "every layer" : `layer ${m[1]}`;
    return m[1] === "{i}" ? m[2] : `${m[2]} (layer ${m[1]})`;
  }

  function opLabel(o) {
    return `${shortName(o.name)}${o.count > 1 ? ` ×${o.count}` : ""}`;
  }

  const ROOF_PRECISIONS = ["fp32", "bf16", "fp8", "int8", "int4", "fp4"];

  // Operators that land on the same spot (q/k/v projections of one shape, say) are one
  // point listing them all, so every operator can be hovered or focused.
  function groupPoints(pts, xs, ys, clampY) {
    const groups = new Map();
    for (const p of pts) {
      const cx = xs.map(p.intensity), cy = ys.map(clampY(p.attained));
      const key = `${p.phase}:${Math.round(cx / 4)}:${Math.round(cy / 4)}`;
      if (!groups.has(key)) groups.set(key, { phase: p.phase, cx, cy, pts: [] });
      groups.get(key).pts.push(p);
    }
    return Array.from(groups.values());
  }

  function drawRoofline() {
    const box = $("#roofline-chart");
    const tableBox = $("#roofline-table");
    if (!state.estimate) {
      fill(box, el("p", { class: "muted", text: "Run an estimate (Estimate view) to place its operators here." }));
      return;
    }
    const { data: d, roofs } = state.estimate;
    if (d.mode === "training") {
      fill(box, el("p", { class: "muted", text: "The roofline shows inference operators; switch the estimate to inference." }));
      fill(tableBox);
      return;
    }
    const all = roofPoints(d);
    const want = new Set([$("#roof-prefill").checked ? "prefill" : null, $("#roof-decode").checked ? "decode" : null]);
    const pts = all.filter((p) => want.has(p.phase));
    const bw = roofs ? roofs.device_bandwidth_bytes_per_s : null;
    if (!pts.length && !(roofs && roofs.compute.length)) {
      fill(box, el("p", { class: "muted", text: "No operator with both FLOPs and bytes to place, and no device roofs." }));
      fill(tableBox);
      return;
    }
    // Roofs of one compute unit — the one that runs the estimate's compute precision —
    // for the usual precisions the device has hardware for; that precision's roof is
    // drawn solid, the others dashed. (A precision the device only emulates has no roof.)
    const fmt = state.formats.get(d.activations) || state.formats.get(state.aliases[d.activations]);
    const hwPrec = fmt ? fmt.hw_precision : d.activations;
    const allRoofs = roofs ? roofs.compute : [];
    const activeRoof = allRoofs.find((r) => r.precisions.includes(hwPrec)) || allRoofs.find((r) => (r.emulated_precisions || []).includes(hwPrec)) || allRoofs[0];
    const compute = activeRoof ? allRoofs.filter((r) => r.unit === activeRoof.unit && (r === activeRoof || r.precisions.some((p) => ROOF_PRECISIONS.includes(p)))) : [];
    const peaks = compute.map((r) => r.peak_flops_per_s);
    const xsVals = pts.map((p) => p.intensity).concat(compute.map((r) => r.ridge_flop_per_byte).filter(Boolean));
    const ysVals = pts.map((p) => p.attained).concat(peaks);
    const xlo = 10 ** Math.floor(Math.log10(Math.max(Math.min(...xsVals, 1), 1e-3) / 2));
    const xhi = 10 ** Math.ceil(Math.log10(Math.max(...xsVals, 10) * 3));
    const ylo = 10 ** Math.floor(Math.log10(Math.max(Math.min(...ysVals) / 3, 1)));
    const yhi = 10 ** Math.ceil(Math.log10(Math.max(...ysVals) * 1.5));
    const W = chartWidth(box, 900), H = Math.round(Math.min(470, Math.max(320, W * 0.62)));
    const b = { left: 56, right: W - 22, top: 22, bottom: H - 46 };
    const xs = logScale(xlo, xhi, b.left, b.right);
    const ys = logScale(ylo, yhi, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": `Roofline of ${roofs ? roofs.name : d.hardware} with ${pts.length} operators of ${d.model}` });
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
        labels.push({ y: ys.map(clipY(peak)) - 5, text: `${r.precisions.join("/")} ${siPrefix(peak, "FLOP/s", 3)}`, active: r === activeRoof });
      });
      // Labels sit inside the plot, right-aligned above their roof, at least one line
      // apart (close peaks on a log axis), and never above the plot.
      labels.sort((p, q) => p.y - q.y);
      for (let i = 0; i < labels.length; i++) labels[i].y = Math.max(labels[i].y, b.top + 10, i ? labels[i - 1].y + 14 : -Infinity);
      for (const l of labels) s.append(svg("text", { class: "roof-label", x: b.right - 4, y: l.y, "text-anchor": "end", "font-weight": l.active ? "bold" : null, text: l.text }));
      // The bandwidth label sits above the memory slope, right-aligned at a point far
      // enough along it that the whole label stays inside the plot.
      const bwText = `${roofs.device_tier} ${fmtBytes(bw)}/s`;
      const px = Math.max(xs.map(Math.max(xlo, ylo / bw) * 4), b.left + bwText.length * 6.6 + 8);
      const xl = xlo * 10 ** (((px - b.left) / (b.right - b.left)) * Math.log10(xhi / xlo));
      if (xl < xhi) s.append(svg("text", { class: "roof-label", x: px - 4, y: ys.map(clipY(Math.min(xl * bw, Math.min(...peaks)))) - 10, "text-anchor": "end", text: bwText }));
    }
    const g = svg("g", { "aria-label": "operators" });
    const placed = [];
    for (const grp of groupPoints(pts, xs, ys, clipY)) {
      const first = grp.pts[0];
      // A mark that would cover another moves aside (a thin line to its true spot), so
      // every mark can be hovered.
      const [x0, y0] = [grp.cx, grp.cy];
      for (let k = 0; placed.some(([px, py]) => Math.hypot(px - grp.cx, py - grp.cy) < 14) && k < 60; k++) {
        const ang = (k * 2.4) % (2 * Math.PI), rad = 14 * (1 + Math.floor(k / 6));
        grp.cx = x0 + rad * Math.cos(ang);
        grp.cy = y0 + rad * Math.sin(ang);
      }
      placed.push([grp.cx, grp.cy]);
      if (grp.cx !== x0 || grp.cy !== y0) g.append(svg("line", { class: "jitter", x1: x0, y1: y0, x2: grp.cx, y2: grp.cy }));
      const names = grp.pts.map((p) => opLabel(p.op));
      const label = `${grp.phase} ${names.join(", ")}`;
      const aria = `${label}: ${sig(first.intensity)} FLOP/byte, ${first.op.bound}-bound`;
      const n = grp.pts.length;
      const shape = grp.phase === "prefill"
        ? svg("circle", { class: "pt prefill", cx: grp.cx, cy: grp.cy, r: n > 1 ? 7 : 5.5, tabindex: 0, role: "img", "aria-label": aria })
        : svg("rect", { class: "pt decode", x: grp.cx - (n > 1 ? 6.5 : 5), y: grp.cy - (n > 1 ? 6.5 : 5), width: n > 1 ? 13 : 10, height: n > 1 ? 13 : 10, tabindex: 0, role: "img", "aria-label": aria });
      shape.dataset.op = first.op.name;
      shape.dataset.ops = JSON.stringify(grp.pts.map((p) => p.op.name));
      shape.dataset.phase = grp.phase;
      shape.dataset.count = String(n);
      const sumOf = (f) => grp.pts.reduce((a, p) => a + f(p), 0);
      tipOn(shape, n > 1 ? `${n} operators: ${names.join(", ")}` : names[0], [
        ["phase", `${grp.phase}${n === 1 && first.op.count > 1 ? ` (×${first.op.count} layers)` : ""}`],
        ["kind", Array.from(new Set(grp.pts.map((p) => `${p.op.kind}, ${p.op.precision}`))).join("; ")],
        ["FLOPs", n > 1 ? `${fmtFlops(sumOf((p) => p.op.flops))} together` : fmtFlops(first.op.flops)],
        ["bytes", n > 1 ? `${fmtBytes(sumOf((p) => p.bytes))} together` : fmtBytes(first.bytes)],
        ["intensity", `${sig(first.intensity)} FLOP/B`],
        ["attained", `${fmtFlops(first.attained)}/s`],
        ["time", n > 1 ? `${fmtTime(sumOf((p) => p.op.time_s))} together` : fmtTime(first.op.time_s)],
        ["bound", Array.from(new Set(grp.pts.map((p) => p.op.bound))).join(", ")],
      ]);
      g.append(shape);
    }
    s.append(g);
    const emulated = compute.flatMap((r) => (r.emulated_precisions || []).filter((p) => ROOF_PRECISIONS.includes(p)).map((p) => `${p} (runs on the ${r.precisions.join("/")} roof)`));
    const legend = el("div", { class: "legend" },
      el("span", {}, el("span", { class: "sw sw-prefill" }), "prefill operators"),
      el("span", {}, el("span", { class: "sw sw-decode" }), "decode operators"),
      el("span", { class: "muted", text: "a larger mark holds several operators at one spot; a mark with a thin line was moved aside from its spot so it does not hide another" }),
      el("span", { class: "muted", text: roofs ? `${roofs.name}: roofs per precision the device has (${activeRoof ? activeRoof.unit : "no compute unit"}) and ${roofs.device_tier} bandwidth${emulated.length ? `; no hardware for ${emulated.join(", ")}` : ""}` : "device roofs unavailable" }));
    $(".sw-prefill", legend).style.background = "var(--c-prefill)";
    $(".sw-decode", legend).style.background = "var(--c-decode)";
    fill(box, legend, s);
    box.dataset.points = String(pts.length);
    redrawOnResize(box, drawRoofline);
    fill(tableBox, csvButton(() => $("#roofline-table table"), `roofline-${d.model}-${d.hardware}.csv`), opTable(pts));
  }

  function opTable(pts) {
    const head = el("tr", {}, ["phase", "operator", "kind", "count", "FLOPs", "bytes", "FLOP/B", "time (s)", "bound"].map((h, i) => el("th", { scope: "col", class: i >= 3 && i <= 7 ? "num" : null, text: h })));
    const rows = pts.map((p) => el("tr", {},
      el("td", { text: p.phase }), el("td", { title: p.op.name, "data-v": p.op.name, text: shortName(p.op.name) }), el("td", { text: p.op.kind }),
      el("td", { class: "num", text: p.op.count }), el("td", { class: "num", "data-v": p.op.flops, text: fmtFlops(p.op.flops) }), el("td", { class: "num", "data-v": p.bytes, text: fmtBytes(p.bytes) }),
      el("td", { class: "num", "data-v": p.intensity, text: sig(p.intensity) }), el("td", { class: "num", "data-v": p.op.time_s, text: fmtTime(p.op.time_s) }), el("td", { text: p.op.bound })));
    return el("table", {}, el("caption", { class: "sr-only", text: "Operators of the last estimate" }), el("thead", {}, head), el("tbody", {}, rows));
  }

  // ------------------------------------------------------------------ plan

  function setupPlan() {
    $("#plan-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      solve(planBody()).catch(() => {});
    });
    $("#pareto-sweep").addEventListener("click", () => sweepBudgets().catch(() => {}));
    $("#plan-cancel").addEventListener("click", () => {
      const ctl = state.solveCtl;
      if (!ctl || ctl.cancelled) return;
      ctl.cancelled = true;
      $("#plan-cancel").disabled = true;
      $(".progress-text", $("#plan-progress")).textContent = "cancelling…";
      ctl.wake();
    });
  }

  const planBody = () => withEngine(Object.assign(readForm($("#plan-form")), { model: $("#model").value, hardware: $("#hardware").value }));

  class Cancelled extends Error {}

  function newCtl() {
    const ctl = { cancelled: false, job: null };
    ctl.woken = new Promise((r) => (ctl.wake = r));
    return ctl;
  }

  // Ask the server to stop a job: DELETE /v1/jobs/{id}. A server without that route
  // (404/405) keeps solving; the page says so and stops waiting.
  async function cancelJob(job) {
    try {
      await api("DELETE", job.url);
      return `Cancelled: the server stopped job ${job.id}.`;
    } catch (e) {
      if (e.status === 404 || e.status === 405) {
        return `This server cannot cancel a running solve (DELETE ${job.url} answered ${e.status}). The page stopped waiting; the server still finishes the solve and stores its plan under Stored plans.`;
      }
      if (e.status === 409) return `Job ${job.id} had already ended when the cancel arrived: ${e.message}. A plan it found is under Stored plans.`;
      return `Could not cancel job ${job.id}: ${e.message}. The page stopped waiting.`;
    }
  }

  // POST /v1/plans, then follow the job. The elapsed time counts from the click (a server
  // may hold the POST for its sync wait before it answers with a job).
  async function submitPlan(body, onProgress, ctl = newCtl()) {
    const t0 = performance.now();
    const tick = () => onProgress(`${ctl.job ? `solving: ${ctl.job.status}` : "submitted"}, ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    tick();
    const timer = setInterval(tick, 200);
    try {
      const res = await api("POST", "/v1/plans", body);
      if (res.status !== 202) return res.data;
      ctl.job = res.data;
      for (;;) {
        if (ctl.cancelled) throw new Cancelled(await cancelJob(ctl.job));
        const job = ctl.job;
        if (job.status === "succeeded") return (await api("GET", job.plan_url)).data;
        if (job.status === "failed") throw new ApiError(422, job.error || { message: "the solve failed" });
        if (job.status === "cancelled") throw new Cancelled(`The server cancelled job ${job.id}.`);
        await Promise.race([sleep(POLL_MS), ctl.woken]);
        if (ctl.cancelled) continue;
        ctl.job = (await api("GET", job.url)).data;
      }
    } finally {
      clearInterval(timer);
    }
  }

  function startProgress() {
    const ctl = newCtl();
    state.solveCtl = ctl;
    $("#plan-progress").hidden = false;
    $("#plan-cancel").disabled = false;
    $("#plan-cancelled").hidden = true;
    return ctl;
  }

  function endProgress(ctl, err) {
    if (state.solveCtl === ctl) state.solveCtl = null;
    $("#plan-progress").hidden = true;
    if (err instanceof Cancelled) {
      const p = $("#plan-cancelled");
      p.textContent = err.message;
      p.hidden = false;
    }
  }

  async function solve(body) {
    const form = $("#plan-form");
    const btn = $("#plan-run");
    clearErrors(form, $("#context"), $("#plan-result"));
    $("#plan-diagnosis").hidden = true;
    busy(btn, true, "Solving…");
    const oneShot = state.oneShot;
    state.oneShot = null;
    // A change taken from the diagnosis applies to this one solve (already in `body`): the
    // form goes back to the user's own values now, so the next plan does not inherit it.
    if (oneShot) for (const [k, v] of Object.entries(oneShot)) setField(form, k, v);
    for (const c of $$(".from-diagnosis", form)) c.classList.remove("from-diagnosis");
    const ctl = startProgress();
    const text = $(".progress-text", $("#plan-progress"));
    let failure = null;
    try {
      const plan = await submitPlan(body, (t) => (text.textContent = t), ctl);
      state.requests.set(plan.id, body);
      state.planCache.set(plan.id, plan);
      renderPlan(plan, body, oneShot);
      await refreshPareto();
    } catch (e) {
      failure = e;
      if (e instanceof Cancelled) return;
      if (e.code === "infeasible") renderDiagnosis(e);
      else showError([form, $("#context")], e);
      throw e;
    } finally {
      busy(btn, false);
      endProgress(ctl, failure);
    }
  }

  const CHANGE_FIELDS = ["allow_offload", "devices", "prompt", "gen", "batch", "ttft_slo_s", "tpot_slo_s"];

  // Each change of the diagnosis lists the request fields it sets (`set`: {"devices": 2},
  // {"allow_offload": true}); one that maps onto this form gets a button that fills the
  // form in (for the next solve only).
  function renderDiagnosis(err) {
    const box = $("#plan-diagnosis");
    const det = err.details || {};
    const lines = String(det.message || err.message).split("\n");
    const items = (det.changes || []).map((c) => {
      const sets = {};
      for (const [f, v] of Object.entries(c.set || {})) {
        if (CHANGE_FIELDS.includes(f)) sets[f] = v === true ? true : String(v);
      }
      if (c.kind === "formats" && /^search the default/.test(c.description)) sets.formats = "";
      if (c.kind === "devices") Object.assign(sets, { tp: "", pp: "", dp: "" });
      const apply = Object.keys(sets).length
        ? el("button", { type: "button", class: "secondary", text: "Use this change", onclick: () => {
          const form = $("#plan-form");
          state.oneShot = state.oneShot || {};
          for (const [k, v] of Object.entries(sets)) {
            const c = $(`[name="${k}"]`, form);
            if (!c) continue;
            if (!(k in state.oneShot)) state.oneShot[k] = c.type === "checkbox" ? c.checked : c.value;
            setField(form, k, v);
            c.classList.add("from-diagnosis");
          }
          $("#plan-run").focus();
        } })
        : null;
      const p = c.predicted || {};
      const facts = [p.per_device_bytes != null ? `${fmtBytes(p.per_device_bytes)} per device` : null, p.tpot_s ? `TPOT ${fmtTime(p.tpot_s)}` : null, p.avg_weight_bits ? `${sig(p.avg_weight_bits)} bits` : null].filter(Boolean).join(", ");
      return el("li", {}, el("span", { text: forForm(c.description, [$("#plan-form")]) }), facts ? el("span", { class: "muted small", text: ` (${facts}) ` }) : null, apply);
    });
    fill(box, 
      el("h3", { text: "Nothing fits" }),
      el("p", { text: forForm(lines[0], [$("#plan-form")]) }),
      det.binding && [].concat(det.binding).length ? el("p", { class: "muted", text: `binding: ${[].concat(det.binding).join(", ")}` }) : null,
      items.length ? el("div", {}, el("p", { text: "Cheapest changes (each applies to the next solve only):" }), el("ol", {}, items))
        : lines.length > 1 ? el("pre", { text: forForm(lines.slice(1).join("\n"), [$("#plan-form")]) }) : null,
    );
    box.hidden = false;
    box.setAttribute("tabindex", "-1");
    box.focus();
  }

  // Memory of a plan as the budget sees it: the device tier against the budget, and
  // whatever is offloaded to slower tiers beside it (not a budget violation).
  function planMemoryCard(p) {
    const pr = p.predicted || {};
    const budget = p.constraints && p.constraints.max_memory_per_device_bytes;
    const tiers = Object.entries(pr.tiers || {});
    const dev = tiers.find(([, t]) => t.role === "device");
    const off = tiers.filter(([, t]) => t.role !== "device" && t.used_bytes > 0);
    if (!dev || !off.length) {
      return card("Memory per device", fmtBytes(pr.per_device_bytes), budget ? `budget ${fmtBytes(budget)}` : null, pr.fits === false ? "bad" : null);
    }
    const used = dev[1].used_bytes;
    const offText = off.map(([name, t]) => `${fmtBytes(t.used_bytes)} offloaded to ${name}`).join(", ");
    const over = budget && used > budget * 1.0005;
    return card("Memory on the device", fmtBytes(used), `${budget ? `within the ${fmtBytes(budget)} budget` : `of ${fmtBytes(dev[1].capacity_bytes)}`} · + ${offText} (${fmtBytes(pr.per_device_bytes)} in all)`, over || pr.fits === false ? "bad" : "good");
  }

  // The sensitivity is a sum over groups of role · depth · relative quantization noise
  // (docs/planner.md): 0 means every group at 16 bits. Its scale: the plans of the same
  // problem (filled in by the frontier) and the layers that contribute most.
  function sensitivityCard(p) {
    const pr = p.predicted || {};
    const layers = (pr.per_layer || []).filter((l) => l.sensitivity > 0).sort((x, y) => y.sensitivity - x.sensitivity);
    const top = layers[0] && pr.sensitivity > 0 ? `; most from ${shortName(layers[0].layer)} (${sig((100 * layers[0].sensitivity) / pr.sensitivity, 2)} %)` : "";
    const c = card("Sensitivity (accuracy loss)", sig(pr.sensitivity), `${p.sensitivity_source} proxy: 0 = every group at 16 bits, lower is better${top}`);
    c.append(el("div", { class: "scale", id: "sens-scale" }));
    return c;
  }

  function renderPlan(pub, body, oneShot) {
    state.plan = pub;
    const p = pub.plan;
    const pr = p.predicted || {};
    const s = p.solver || {};
    const lay = p.layout || {};
    const req = body || requestOf(pub);
    const tiers = Object.entries(pr.tiers || {}).map(([name, t]) => ({ name: `${name} (${t.role})`, capacity: t.capacity_bytes, parts: [["weights", t.weights_bytes], ["kv", t.kv_cache_bytes], ["act", t.activations_bytes]] }));
    const exports = el("div", { class: "exports", role: "group", "aria-label": "Export" }, state.exportFormats.map((f) => el("button", { type: "button", class: "secondary", "data-format": f, text: f, onclick: (ev) => exportPlan(pub.id, f, ev.currentTarget).catch(() => {}) })));
    // The engine the plan was made for (the plan records it; else the request that solved
    // it) and its deployment files: one button, the engine's own exporter.
    const engine = state.engines.find((e) => e.id === (p.engine || req.engine));
    const deploy = engine ? el("div", { class: "deploy", id: "plan-deploy", dataset: { engine: engine.id } },
      el("button", { type: "button", id: "export-engine", "data-format": engine.exporter, text: `Deploy with ${engine.name} (${engine.exporter} export)`,
        onclick: (ev) => exportPlan(pub.id, engine.exporter, ev.currentTarget).catch(() => {}) }),
      el("span", { class: "muted small", text: ` planned for ${engine.name} on ${p.hardware}: only formats and layouts it runs there` })) : null;
    const used = oneShot ? Object.keys(oneShot).map((k) => (fieldControl([$("#plan-form")], k) || { label: k }).label) : [];
    const link = `plan=${encodeURIComponent(pub.id)}&${bodyParams(req, ["per_op", "id"])}`;
    fill($("#plan-result"),
      el("div", { class: "panel", id: "plan-summary", dataset: { planId: pub.id } },
        el("h2", { text: `Plan ${pub.id}` }),
        el("p", { class: "muted", text: `${p.model} on ${p.devices} × ${p.hardware}${p.engine || req.engine ? ` with ${p.engine || req.engine}` : ""} (tp ${lay.tp} · pp ${lay.pp} · dp ${lay.dp} · ep ${lay.ep}); objective ${p.objective}; KV ${pr.kv_cache_bytes === 0 ? "none" : p.kv}; solver ${s.backend} ${s.status} in ${fmtTime(s.time_s)}${s.gap ? `, gap ${sig(s.gap)}` : ""}; ${Object.keys(p.choices || {}).length} groups` }),
        planLimits(p, req),
        used.length ? el("p", { class: "note-change", id: "plan-oneshot", text: `Solved with the diagnosis' change (${used.join(", ")}); the form is back to your own values for the next plan.` }) : null,
        el("div", { class: "cards" },
          // a model that generates nothing (encoder, ViT, CNN): one forward pass, no TPOT or output tokens
          ...(planGenerates(pr) ? [
            card("Time to first token", fmtTime(pr.ttft_s), null, null, band(pr.uncertainty, "ttft_s", fmtTime)),
            card("Time per output token", fmtTime(pr.tpot_s), pr.decode_bound ? `decode is ${pr.decode_bound}-bound` : null, null, band(pr.uncertainty, "tpot_s", fmtTime)),
            card("Throughput", `${sig(pr.output_tokens_per_s)} tok/s`, null, null, band(pr.uncertainty, "output_tokens_per_s", sig)),
          ] : [card("Latency (one forward pass)", fmtTime(pr.latency_s), `batch of ${p.workload ? p.workload.batch : 1}`, null, band(pr.uncertainty, "latency_s", fmtTime))]),
          planMemoryCard(p),
          card("Average weight bits", sig(pr.avg_weight_bits)),
          sensitivityCard(p),
          card("Energy", `${sig(pr.energy_j_per_token)} J/${perUnit(pr.per_token_basis)[0]}`),
          card("Cost", perMillion(pr.usd_per_million_tokens, pr.per_token_basis)),
        ),
        bandNotes(pr.uncertainty),
        el("h3", { text: "Memory per device, by tier" }),
        memoryBars(tiers),
        el("h3", { text: "Per-layer choices" }),
        heatMap(p.choices || {}),
        el("h3", { id: "export-title", text: "Export" }),
        deploy,
        deploy ? el("p", { class: "muted small", text: "Other formats:" }) : null,
        exports,
        el("p", { class: "form-error", id: "export-error", role: "alert", hidden: true }),
        el("div", { id: "export-out" }),
        notes(pr.notes),
        el("div", { class: "actions inline" }, el("a", { href: `#plan?${link}`, class: "share", text: "Link to this plan" })),
        commands("plan", req, el("p", { class: "muted small", text: `The stored plan: curl -sS ${location.origin}/v1/plans/${pub.id}` })),
      ),
    );
    share("plan", link);
    markParetoCurrent();
  }

  // The request a stored plan answers: the one this tab sent, else rebuilt from the plan
  // (its layout, workload and constraints; the weight formats and sparsity it chose, since
  // the search space itself is not stored with a plan).
  function requestOf(pub) {
    const known = state.requests.get(pub.id);
    if (known) return Object.assign({}, known);
    const p = pub.plan, c = p.constraints || {}, w = p.workload || {}, lay = p.layout || {};
    const choices = Object.values(p.choices || {});
    const uniq = (k) => Array.from(new Set(choices.map((x) => x[k]).filter(Boolean)));
    const req = { model: p.model, hardware: p.hardware, devices: p.devices, tp: lay.tp, pp: lay.pp, dp: lay.dp, batch: w.batch, prompt: w.prompt, gen: w.gen,
      kv: p.kv, activations: p.activations, objective: p.objective, formats: uniq("weights"), allow_offload: Boolean(c.allow_offload) };
    if (p.engine) req.engine = p.engine;
    if (lay.ep && lay.ep > 1) req.ep = lay.ep;
    const sp = uniq("sparsity");
    if (sp.length && !(sp.length === 1 && sp[0] === "dense")) req.sparsity = sp;
    if (c.max_memory_per_device_bytes) req.max_memory_per_device = c.max_memory_per_device_bytes;
    // a limit the hardware's default set is not the request's: re-solving takes the default again
    for (const k of ["ttft_slo_s", "tpot_slo_s", "avg_bits"]) if (c[k] != null && !(k === "tpot_slo_s" && c.tpot_slo_default)) req[k] = c[k];
    if (c.pins && Object.keys(c.pins).length) req.pins = c.pins;
    return req;
  }

  // Put a request back into the plan form and the model / hardware pickers.
  function fillPlanForm(req) {
    const form = $("#plan-form");
    for (const c of $$("[name][data-type]", form)) {
      const v = req[c.name];
      if (c.name === "max_memory_per_device" && typeof v === "number") c.value = `${+(v / 1e9).toPrecision(12)}GB`;
      else if (c.name === "id") c.value = "";
      else setField(form, c.name, v === undefined ? (c.type === "checkbox" ? false : "") : v);
    }
    for (const k of ["model", "hardware"]) {
      const sel = $(`#${k}`);
      if (req[k] && Array.from(sel.options).some((o) => o.value === req[k])) sel.value = req[k];
    }
    describeContext();
    return setEngine(req.engine, false);
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
      // Several files: one zip archive (built here), so the browser asks once.
      const archive = data.files.length > 1 ? `${id}-${format}.zip` : null;
      if (archive) download(archive, zip(data.files.map((f) => [f.path, f.content])));
      else for (const f of data.files) download(f.path.split("/").pop(), f.content, f.media_type);
      fill($("#export-out"),
        el("p", { text: archive ? `${format}: downloaded ${archive} (${data.files.map((f) => f.path).join(", ")})` : `${format}: downloaded ${data.files.map((f) => f.path).join(", ")}` }),
        data.next_command ? el("pre", { class: "next-command", id: "export-command", text: data.next_command }) : null,
        el("pre", { class: "cmd-curl", text: curlCommand(null, null, "GET", `/v1/plans/${encodeURIComponent(id)}/export?format=${encodeURIComponent(format)}`) }),
        notes(data.notes),
      );
    } catch (e) {
      err.textContent = `${format}: ${e.message}`;
      err.hidden = false;
      // An export that cannot express a choice names it (choices.<group>.weights): mark it.
      const m = /^choices\.(.+)\.(weights|sparsity|activations|tier|low_rank)$/.exec(e.field || "");
      if (m) {
        const kind = m[2] === "weights" || m[2] === "low_rank" ? "precision" : m[2] === "tier" ? "tier" : "sparsity";
        const cell = $$("#heatmap td").find((td) => td.dataset.group === m[1] && td.dataset.kind === kind);
        if (cell) cell.classList.add("flag");
      }
    } finally {
      busy(button, false);
    }
  }

  function download(name, content, type) {
    const blob = content instanceof Blob ? content : new Blob([content], { type: type || "text/plain" });
    const url = URL.createObjectURL(blob);
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
    const all = await plansFor(model, hardware);
    // Only plans of the same problem (devices, workload, SLOs, offload) share a frontier.
    const key = problemKey(state.plan);
    const plans = all.filter((pub) => problemKey(pub) === key);
    panel.hidden = false;
    const others = all.length - plans.length;
    $("#pareto-scope").textContent = `${plans.length} stored plan${plans.length === 1 ? "" : "s"} of ${model} on ${state.plan.plan.devices} × ${hardware}, batch ${(state.plan.plan.workload || {}).batch}, prompt ${(state.plan.plan.workload || {}).prompt}, gen ${(state.plan.plan.workload || {}).gen}${others ? `; ${others} other stored plan${others === 1 ? "" : "s"} of this model and hardware solve a different problem and are not drawn` : ""}.`;
    drawPareto(plans);
    sensitivityScale(plans);
  }

  function problemKey(pub) {
    const p = pub.plan, c = p.constraints || {}, w = p.workload || {};
    // A plan made for another engine searched other formats: another problem (plans that
    // record no engine are compared as they were).
    return JSON.stringify([p.model, p.hardware, p.devices, w.batch, w.prompt, w.gen, c.ttft_slo_s ?? null, c.tpot_slo_s ?? null, Boolean(c.allow_offload), p.engine ?? null]);
  }

  // Where the current plan's sensitivity sits among the plans of the same problem.
  function sensitivityScale(plans) {
    const box = $("#sens-scale");
    if (!box || !state.plan) return;
    const vals = plans.map((q) => (q.plan.predicted || {}).sensitivity || 0);
    const mine = (state.plan.plan.predicted || {}).sensitivity || 0;
    const hi = Math.max(...vals, mine);
    if (!(hi > 0)) {
      fill(box, el("span", { class: "small", text: "no compression loss in any plan of this problem" }));
      return;
    }
    const bar = el("span", { class: "scale-bar", role: "img", "aria-label": `sensitivity ${sig(mine)} on a scale from 0 to ${sig(hi)}, the most of ${plans.length} stored plans of this problem` });
    const mark = el("span", { class: "scale-mark" });
    mark.style.left = `${(100 * mine) / hi}%`;
    bar.append(mark);
    fill(box, bar, el("span", { class: "small", text: `0 … ${sig(hi)} (most sensitive of ${plans.length} plan${plans.length === 1 ? "" : "s"} of this problem)` }));
  }

  function drawPareto(plans) {
    const box = $("#plan-pareto");
    const pts = plans.map((pub) => ({ pub, m: metrics(pub) })).filter((p) => p.m[0] > 0);
    if (!pts.length) {
      fill(box, el("p", { class: "muted", text: "No stored plan of this model on this hardware has predicted memory." }));
      return;
    }
    for (const p of pts) p.nd = !pts.some((q) => q !== p && dominates(q.m, p.m));
    redrawOnResize(box, () => drawPareto(plans));
    const W = chartWidth(box, 760), H = Math.round(Math.min(340, Math.max(280, W * 0.55)));
    const b = { left: 64, right: W - 36, top: 14, bottom: H - 48 };
    const xv = pts.map((p) => p.m[0]);
    const yv = pts.map((p) => p.m[1]);
    const xpad = (Math.max(...xv) - Math.min(...xv)) * 0.08 || Math.max(...xv) * 0.1;
    const ymax = Math.max(...yv, 1e-9);
    const xs = linScale(Math.max(0, Math.min(...xv) - xpad), Math.max(...xv) + xpad, b.left, b.right);
    const ys = linScale(0, ymax * 1.1, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": `Pareto frontier: ${pts.length} stored plans` });
    const g = svg("g", { class: "axis" });
    const grid = svg("g", { class: "grid" });
    const nt = W < 500 ? 3 : 5;
    for (const xv0 of linTicks(xs.lo, xs.hi, nt)) {
      grid.append(svg("line", { x1: xs.map(xv0), x2: xs.map(xv0), y1: b.top, y2: b.bottom }));
      g.append(svg("text", { x: xs.map(xv0), y: b.bottom + 16, "text-anchor": "middle", text: fmtBytes(xv0) }));
    }
    for (const yv0 of linTicks(ys.lo, ys.hi, 5)) {
      grid.append(svg("line", { x1: b.left, x2: b.right, y1: ys.map(yv0), y2: ys.map(yv0) }));
      g.append(svg("text", { x: b.left - 6, y: ys.map(yv0) + 4, "text-anchor": "end", text: sig(yv0, 2) }));
    }
    g.append(svg("path", { d: `M${b.left},${b.top}V${b.bottom}H${b.right}`, fill: "none" }));
    g.append(svg("text", { x: (b.left + b.right) / 2, y: b.bottom + 34, "text-anchor": "middle", text: "memory per device" }));
    g.append(svg("text", { x: 14, y: (b.top + b.bottom) / 2, "text-anchor": "middle", transform: `rotate(-90 14 ${(b.top + b.bottom) / 2})`, text: "sensitivity (0 = 16-bit; lower = more accurate)" }));
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
        fillPlanForm(requestOf(p.pub)).catch(() => {});
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
    fill(box, s);
    box.dataset.points = String(pts.length);
    markParetoCurrent();
  }

  function markParetoCurrent() {
    for (const c of $$("#plan-pareto circle.pp")) c.classList.toggle("current", Boolean(state.plan) && c.dataset.planId === state.plan.id);
  }

  // Fill the frontier: solve the same request at smaller memory budgets (each solve is a
  // stored plan, so the points stay for the next visit). The request is the one that
  // solved the plan shown (or, for a plan solved elsewhere, rebuilt from the plan).
  async function sweepBudgets() {
    if (!state.plan) return;
    const btn = $("#pareto-sweep");
    const status = $("#pareto-status");
    const base = requestOf(state.plan);
    delete base.id;
    const budget = state.plan.plan.constraints && state.plan.plan.constraints.max_memory_per_device_bytes;
    const tiers = Object.values(state.plan.plan.predicted.tiers || {});
    const dev = tiers.find((t) => t.role === "device");
    const mem = Math.min(budget || Infinity, dev && base.allow_offload ? dev.used_bytes : state.plan.plan.predicted.per_device_bytes);
    // the engine's runtime context stays whatever the budget: only the model's share shrinks
    const ctx = Math.min(state.plan.plan.predicted.runtime_context_bytes || 0, mem);
    busy(btn, true, "Solving…");
    const ctl = startProgress();
    const text = $(".progress-text", $("#plan-progress"));
    let ok = 0, failure = null;
    try {
      for (const f of [0.85, 0.7, 0.55]) {
        const req = Object.assign({}, base, { max_memory_per_device: Math.floor(ctx + (mem - ctx) * f) });
        status.textContent = `budget ${fmtBytes(req.max_memory_per_device)}…`;
        try {
          const pub = await submitPlan(req, (t) => (text.textContent = `budget ${fmtBytes(req.max_memory_per_device)}: ${t}`), ctl);
          state.requests.set(pub.id, req);
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
      failure = e;
      status.textContent = e instanceof Cancelled ? `${ok} more plan${ok === 1 ? "" : "s"} solved, then cancelled` : forForm(e.message, [$("#plan-form")]);
    } finally {
      busy(btn, false);
      endProgress(ctl, failure);
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
        el("td", { "data-label": "diff", "data-v": "" }, box),
        el("td", { "data-label": "id" }, el("code", { text: p.id })),
        el("td", { "data-label": "model", text: p.model }),
        el("td", { "data-label": "hardware", text: p.hardware }),
        el("td", { "data-label": "created", text: String(p.created_at).replace("T", " ").slice(0, 19) }),
        el("td", { class: "row-actions", "data-v": "" }, el("button", { type: "button", class: "secondary", text: "Open", "aria-label": `open plan ${p.id}`, onclick: () => openPlan(p.id).catch(() => {}) }), " ", del));
    });
    fill($("#plans-list"), items.length ? csvButton(() => $("#plans-table"), "stored-plans.csv") : null, items.length
      ? el("table", { id: "plans-table", class: "stack" }, el("caption", { class: "sr-only", text: "Stored plans" }), el("thead", {}, head), el("tbody", {}, rows))
      : el("p", { class: "muted", text: state.plansList.length ? "No stored plan matches the search." : "No stored plans yet: solve one in the Plan view." }));
    $("#plans-diff").disabled = state.selected.size !== 2;
    share("plans", q ? `q=${encodeURIComponent(q)}` : "");
  }

  async function getPlan(id) {
    if (!state.planCache.has(id)) state.planCache.set(id, (await api("GET", `/v1/plans/${encodeURIComponent(id)}`)).data);
    return state.planCache.get(id);
  }

  // `engine`: the engine a link names, for a plan stored without one.
  // ``where``: the boxes an error goes to (a link's plan id is refused in the Plan view it opened, not in the hidden
  // Stored plans view).
  async function openPlan(id, engine, where = null) {
    try {
      if (!/^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$/.test(id)) { // the server's id rule (api/schemas.py ID_PATTERN)
        throw new ApiError(404, { code: "not_found", field: "plan", message: `unknown plan id '${id}'` });
      }
      const pub = await getPlan(id);
      showView("plan", false);
      const req = requestOf(pub);
      if (!req.engine && engine) req.engine = engine;
      await fillPlanForm(req);
      renderPlan(pub, req);
      await refreshPareto();
      $("#plan-summary").scrollIntoView({ block: "start" });
      return true;
    } catch (e) {
      showError(where || [$("#plans-error")], e);
      return false;
    }
  }

  // The limits the plan was solved under, and which of them the request did not give (a phone's TPOT limit is the
  // reading-speed default of the plan request).
  function planLimits(p, req) {
    const c = p.constraints || {};
    const parts = [
      c.max_memory_per_device_bytes ? `memory ≤ ${fmtBytes(c.max_memory_per_device_bytes)} per device` : null,
      c.ttft_slo_s ? `TTFT ≤ ${fmtTime(c.ttft_slo_s)}${req && req.ttft_slo_s == null ? " (default)" : ""}` : null,
      c.tpot_slo_s ? `TPOT ≤ ${fmtTime(c.tpot_slo_s)}${c.tpot_slo_default || (c.tpot_slo_default === undefined && req && req.tpot_slo_s == null) ? " (default for this hardware)" : ""}` : null,
      c.avg_bits ? `≤ ${sig(c.avg_bits)} bits on average` : null,
      c.allow_offload ? "offload allowed" : null,
    ].filter(Boolean);
    return parts.length ? el("p", { class: "muted small", id: "plan-limits", text: `Solved within: ${parts.join("; ")}.` }) : null;
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
    const fields = ["model", "hardware", "engine", "devices", "layout", "workload", "constraints", "objective", "kv", "activations"];
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
    fill(box, 
      el("div", { class: "panel-head" }, el("h3", { text: `Diff: ${a.id} ↔ ${b.id}` }),
        csvButton(() => $("#diff-predicted"), `diff-${a.id}-${b.id}-predicted.csv`), csvButton(() => $("#diff-choices"), `diff-${a.id}-${b.id}-choices.csv`)),
      el("div", { class: "two-col" },
        el("div", { class: "table-wrap" }, el("table", { id: "diff-settings" }, el("caption", { text: "Inputs" }), head("field"), el("tbody", {}, setting))),
        el("div", { class: "table-wrap" }, el("table", { id: "diff-predicted" }, el("caption", { text: "Predicted" }), head("metric"), el("tbody", {}, predicted)))),
      el("p", { id: "diff-summary", text: `${changed.length} of ${groups.length} groups choose differently` }),
      changed.length
        ? el("div", { class: "table-wrap" }, el("table", { id: "diff-choices" }, el("caption", { class: "sr-only", text: "Groups that differ" }), head("group"), el("tbody", {}, changed.map((g) => el("tr", { class: "differs" }, el("th", { scope: "row", text: g }), el("td", { text: show((pa.choices || {})[g]) }), el("td", { text: show((pb.choices || {})[g]) }))))))
        : el("p", { class: "muted", id: "diff-none", text: "Every group makes the same choice in both plans." }),
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
    serving: "Serving", kv_link: "KV link (disaggregated)", time_limit_s: "Search time limit (s)",
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

  // The server's OpenAPI description, read once: the capacity form and the frontier are
  // built from what this server accepts.
  async function openapiDoc() {
    if (!state.openapi) state.openapi = (await api("GET", "/openapi.json")).data;
    return state.openapi;
  }

  async function prepareCapacity() {
    if (state.capacitySchema) return;
    const doc = await openapiDoc();
    const op = doc.paths && doc.paths["/v1/capacity"] && doc.paths["/v1/capacity"].post;
    const fieldsBox = $("#capacity-fields");
    if (!op) {
      state.capacitySchema = { missing: true };
      fill(fieldsBox, el("p", { class: "muted", text: "This server has no capacity route (POST /v1/capacity)." }));
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
      if (name === "engine") {
        nodes.push(capacityEngineField(fieldKind(doc, prop), prop));
        continue;
      }
      const k = fieldKind(doc, prop);
      const id = `cap-${name}`;
      const label = CAPACITY_LABELS[name] || prop.title || name;
      const example = Array.isArray(prop.examples) ? prop.examples[0] : undefined;
      const def = prop.default !== undefined && prop.default !== null ? prop.default : example !== undefined ? example : CAPACITY_DEFAULTS[name];
      let control;
      // a choice without a server default (runtime: each engine's own) starts unset, so nothing is sent for it
      const unset = k.kind === "select" && (prop.default === undefined || prop.default === null) && def === undefined
        ? [el("option", { value: "", text: "each engine's default" })] : [];
      if (k.kind === "select") control = el("select", { id, name, "data-type": "text" }, unset.concat(k.options.map((o) => el("option", { value: o, text: o }))));
      else if (k.kind === "bool") control = el("input", { id, name, type: "checkbox", "data-type": "bool", checked: Boolean(def) });
      else control = el("input", { id, name, "data-type": k.kind, inputmode: k.kind === "int" ? "numeric" : k.kind === "float" ? "decimal" : null, spellcheck: "false" });
      if (def !== undefined && k.kind !== "bool") control.value = Array.isArray(def) ? def.join(", ") : String(def);
      // The server's own default is sent only when changed: given, it is an explicit choice (a KV format of bf16 given
      // rules out an engine that keeps its cache in fp16), left out, each engine takes its own.
      if (prop.default !== undefined && prop.default !== null && k.kind !== "bool") control.dataset.default = control.value;
      control.dataset.initial = k.kind === "bool" ? String(control.checked) : control.value; // what a new link starts from
      const help = prop.description ? el("p", { class: "muted small", text: prop.description }) : null;
      const f = k.kind === "bool"
        ? el("div", { class: "field check", "data-field": name }, control, el("label", { for: id, text: label }), el("p", { class: "field-error", role: "alert", hidden: true }))
        : el("div", { class: "field", "data-field": name }, el("label", { for: id, text: label }), control, help, el("p", { class: "field-error", role: "alert", hidden: true }));
      nodes.push(f);
    }
    fill(fieldsBox, ...nodes);
    describeErrors();
    fillCapacityHardware();
  }

  // The capacity engine: a picker of the serving engines (GET /v1/engines); left at
  // "each hardware's default", every candidate runs its class's default engine.
  function capacityEngineField(k, prop) {
    const serving = state.engines.filter((e) => e.kind !== "training");
    if (k.kind === "list") {
      // A server that compares engines side by side: tick several, one row per engine × hardware.
      return el("fieldset", { class: "field hw-pick wide2", "data-field": "engine", id: "cap-engines" },
        el("legend", { text: "Engines to compare" }),
        el("p", { class: "muted small", text: "None ticked: each hardware's default engine. Several: one row per engine × hardware; hardware an engine does not run on is listed with the reason." }),
        el("div", { class: "check-grid" }, serving.map((e) => el("label", {}, el("input", { type: "checkbox", value: e.id, "aria-label": `compare ${e.name}` }), ` ${e.name} (${e.id})`))),
        el("p", { class: "field-error", role: "alert", hidden: true }));
    }
    const help = el("p", { class: "muted small", id: "cap-engine-help", text: prop.description || "" });
    const control = el("select", { id: "cap-engine", name: "engine", "data-type": k.kind === "list" ? "list" : "text", "aria-describedby": "cap-engine-help" },
      el("option", { value: "", text: "each hardware's default engine" }),
      serving.map((e) => el("option", { value: e.id, text: `${e.name} (${e.id})` })));
    return el("div", { class: "field", "data-field": "engine" }, el("label", { for: "cap-engine", text: "Engine" }), control, help, el("p", { class: "field-error", role: "alert", hidden: true }));
  }

  function fillCapacityHardware() {
    const box = $("#capacity-hardware");
    if (!box) return;
    const checked = new Set($$("input:checked", box).map((i) => i.value));
    if (!checked.size) ["l4", "a100-80gb-sxm", "h100-sxm"].forEach((h) => checked.add(h));
    fill(box, ...state.hardware.map((h) => el("label", { "data-name": `${h.id} ${h.name}`.toLowerCase() }, el("input", { type: "checkbox", value: h.id, checked: checked.has(h.id) }), `${h.id}`)));
    const filter = $("#capacity-hw-filter");
    filter.oninput = () => {
      const q = filter.value.trim().toLowerCase();
      for (const l of $$("label", box)) l.hidden = Boolean(q) && !l.dataset.name.includes(q);
    };
  }

  function capacityRows(data) {
    const list = data.hardware || data.ranked || data.items || data.results || [];
    // (engine, hardware) pairs the engine does not run, and weight formats a pair that runs left out
    // (a format it does not run there, or not with the activations asked): listed with the reason, unranked.
    const unsupported = (data.unsupported || []).map((u) => ({ hardware: u.hardware, engine: u.engine, o: {}, meets: false, has: false,
      left: Boolean(u.weights), reason: u.weights
        ? `${u.engine} on ${u.hardware} leaves out ${u.weights} weights${u.activations ? ` with ${u.activations} activations` : ""}${u.reason ? `: ${u.reason}` : ""}`
        : `${u.engine} does not run on ${u.hardware}${u.reason ? `: ${u.reason}` : ""}` }));
    return list.map((row) => {
      const o = row.best || row.closest || row;
      const meets = row.meets_slo !== undefined ? row.meets_slo : o.meets_slo;
      return { hardware: row.hardware || o.hardware, engine: row.engine || o.engine || "", o: row.best || row.closest ? o : row, meets: meets !== false, has: Boolean(row.best || row.closest || row.devices),
        disagg: row.disaggregated || null, fitReason: row.reason || "" };
    }).concat(unsupported);
  }

  // A route that answers 202 with a job (a long capacity search) is followed to its result.
  async function capacityCall(body, ctl) {
    const res = await api("POST", "/v1/capacity", body);
    if (res.status !== 202) return res.data;
    let job = res.data;
    for (;;) {
      if (ctl && ctl.cancelled) throw new Cancelled(await cancelJob(job));
      if (job.status === "succeeded") {
        if (job.result) return job.result;
        const url = job.result_url || job.capacity_url;
        if (url) return (await api("GET", url)).data;
        throw new ApiError(500, { message: `job ${job.id} succeeded without a result to read` });
      }
      if (job.status === "failed") throw new ApiError(422, job.error || { message: "the capacity search failed" });
      if (job.status === "cancelled") throw new Cancelled(`The server cancelled job ${job.id}.`);
      await sleep(POLL_MS);
      job = (await api("GET", job.url)).data;
    }
  }

  function capacityBody() {
    const body = readForm($("#capacity-form"));
    for (const c of $$("#capacity-fields [data-default]")) if (c.value.trim() === c.dataset.default) delete body[c.name];
    body.hardware = $$("#capacity-hardware input:checked").map((i) => i.value);
    if (state.capacitySchema && !("hardware" in state.capacitySchema.props)) delete body.hardware;
    const engines = $$("#cap-engines input:checked").map((i) => i.value);
    if (engines.length) body.engine = engines;
    return body;
  }

  async function runCapacity(ev) {
    if (ev) ev.preventDefault();
    const form = $("#capacity-form");
    const btn = $("#capacity-run");
    const status = $("#capacity-progress");
    clearErrors(form);
    await prepareCapacity();
    if (state.capacitySchema.missing) return;
    const body = capacityBody();
    busy(btn, true, "Comparing…");
    try {
      status.textContent = "at the requested load…";
      let rows;
      try {
        rows = capacityRows(await capacityCall(body));
      } catch (e) {
        // 422 infeasible: the model fits none of the hardware; each is listed as not fitting.
        if (e.status !== 422 || e.code !== "infeasible") throw e;
        // one row per (engine, hardware) pair the API names, with its reason (the largest replica its layout
        // bounds allow against the weights, or why the engine does not run there); else one per hardware
        const pairs = (e.details && e.details.hardware) || [];
        rows = pairs.length
          ? pairs.map((p) => ({ hardware: p.hardware, o: {}, meets: false, has: false, engine: p.engine || "",
            fitReason: p.supported === false ? "" : p.reason || "", reason: p.supported === false ? p.reason : "" }))
          : (body.hardware || []).map((h) => ({ hardware: h, o: {}, meets: false, has: false }));
      }
      renderCapacity(body, rows);
      share("capacity", bodyParams(body));
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
              r = capacityRows(await capacityCall(Object.assign({}, body, { [loadField]: v })));
            } catch (e) {
              if (e.status !== 422) throw e;
              r = [];
            }
          }
          for (const row of r) {
            if (!row.meets || row.o.usd_per_hour === null || row.o.usd_per_hour === undefined) continue;
            const name = multiEngine(body) && row.engine ? `${row.hardware} · ${row.engine}` : row.hardware;
            if (!series.has(name)) series.set(name, []);
            series.get(name).push([v, row.o.usd_per_hour]);
          }
        }
        const plot = $("#capacity-plot");
        const draw = () => fill(plot, costPlot(series, loadField, plot));
        draw();
        redrawOnResize(plot, draw);
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

  const CAP_HEAD = ["#", "hardware", "devices", "USD/h", "USD/M tok", "layout", "weights / act / kv", "TTFT p50 / p95", "TPOT p50 / p95", "meets SLO", "engine"];
  // The header with TTFT / TPOT at the SLO's percentile (a row's ttft_s / tpot_s are at its `percentile`).
  const pctLabel = (p) => `p${+(100 * (p ?? 0.95)).toFixed(3)}`;
  const capHead = (p) => CAP_HEAD.map((h, i) => (i === 7 || i === 8) ? `${h.slice(0, 4)} p50 / ${pctLabel(p)}` : h);
  const multiEngine = (body) => Array.isArray(body.engine) && body.engine.length > 1;

  function capacityRow(r, rank) {
    const o = r.o;
    const head = capHead(o && o.percentile);
    const td = (i, attrs) => el("td", Object.assign({ "data-label": head[i] }, attrs));
    if (!r.has) {
      return el("tr", { class: "nofit" }, td(0, { text: rank }), td(1, { text: r.hardware }),
        td(2, { colspan: 7, class: "muted", "data-label": "why", text: r.reason || r.fitReason || "does not fit at any layout within the device limit: no timings, no price" }),
        td(9, { class: "no", text: r.left ? "left out" : r.reason ? "does not run" : "does not fit" }), td(10, { text: r.engine || "–" }));
    }
    return el("tr", {},
      td(0, { text: rank }), td(1, { text: r.hardware }), td(2, { class: "num", text: o.devices ?? "–" }),
      td(3, { class: "num", "data-v": o.usd_per_hour ?? "", text: o.usd_per_hour != null ? sig(o.usd_per_hour) : "–" }),
      td(4, { class: "num", "data-v": o.usd_per_million_tokens ?? "", text: o.usd_per_million_tokens != null ? sig(o.usd_per_million_tokens) : "–" }),
      td(5, { text: o.tp ? `tp${o.tp}·pp${o.pp} × ${o.replicas}` : "–" }),
      td(6, { text: [o.weights, o.activations, o.kv].filter(Boolean).join(" / ") || "–" }),
      td(7, { class: "num", text: (o.ttft_p50_s !== undefined ? `${fmtTime(o.ttft_p50_s)} / ${fmtTime(o.ttft_s)}` : fmtTime(o.ttft_s)) + capBand(o, "ttft_s", "ttft_s") }),
      td(8, { class: "num", text: (o.tpot_p50_s !== undefined ? `${fmtTime(o.tpot_p50_s)} / ${fmtTime(o.tpot_s)}` : fmtTime(o.tpot_s)) + capBand(o, "tpot_s", "tpot_s") }),
      td(9, { class: r.meets ? "ok" : "no", text: r.meets ? "yes" : `no${o.failures && o.failures.length ? ": " + [].concat(o.failures).join("; ") : ""}` }),
      td(10, { text: r.engine || "–" }));
  }

  // The p10–p90 range of a frontier point's figure, " (a – b)" or "".
  function pointBand(p, key, fmt) {
    const b = band(p.uncertainty, key, fmt, "");
    return b ? ` (${b})` : "";
  }

  // The p10–p90 range of a capacity row's figure at the SLO's percentile.
  function capBand(o, key, plain) {
    const b = band(o.uncertainty, o[key] !== undefined ? key : plain, fmtTime, "");
    return b ? ` (${b})` : "";
  }

  // Serving disaggregated: per (engine, hardware) the cheapest prefill pool + decode pool that meets the SLOs
  // (else the closest), its KV hand-off, its figures with their bands, and the aggregated fleet it is weighed against.
  const DISAGG_HEAD = ["engine", "hardware", "prefill pool", "decode pool", "devices (aggregated)", "KV / request, transfer", "TTFT p50 / p95", "TPOT p50 / p95", "USD/h (aggregated)", "meets SLO", "winner"];
  function disaggTable(rows, pct) {
    const list = rows.filter((r) => r.disagg);
    if (!list.length) return null;
    const head = DISAGG_HEAD.map((h, i) => (i === 6 || i === 7) ? `${h.slice(0, 4)} p50 / ${pctLabel(pct)}` : h);
    const pool = (p) => (p ? `tp${p.tp}·pp${p.pp} × ${p.replicas}` : "–");
    const tr = (r) => {
      const d = r.disagg, o = d.best || d.closest, v = d.vs_aggregated || {};
      const td = (i, attrs) => el("td", Object.assign({ "data-label": head[i] }, attrs));
      if (!o) {
        return el("tr", { class: "nofit" }, td(0, { text: r.engine || "–" }), td(1, { text: r.hardware }),
          td(2, { colspan: 9, class: "muted", text: d.reason ? `no disaggregated pools: ${d.reason}` : "no prefill and decode pools fit within the device limit" }));
      }
      const kv = o.kv_transfer || {};
      return el("tr", { dataset: { engine: o.engine || r.engine || "", hardware: o.hardware || r.hardware } },
        td(0, { text: o.engine || r.engine || "–" }), td(1, { text: o.hardware || r.hardware }),
        td(2, { text: pool(o.prefill) }), td(3, { text: pool(o.decode) }),
        td(4, { class: "num", text: `${o.devices} (${v.aggregated_devices ?? "–"})` }),
        td(5, { text: kv.bytes != null ? `${fmtBytes(kv.bytes)}, ${fmtTime(kv.seconds)}${kv.link_kind ? ` (${kv.link_kind.replace("_", "-")})` : ""}` : "–" }),
        td(6, { class: "num", text: `${fmtTime(o.ttft_p50_s)} / ${fmtTime(o.ttft_s)}` + capBand(o, "ttft_s", "ttft_s") }),
        td(7, { class: "num", text: `${fmtTime(o.tpot_p50_s)} / ${fmtTime(o.tpot_s)}` + capBand(o, "tpot_s", "tpot_s") }),
        td(8, { class: "num", text: `${o.usd_per_hour != null ? sig(o.usd_per_hour) : "–"} (${v.aggregated_usd_per_hour != null ? sig(v.aggregated_usd_per_hour) : "–"})` }),
        td(9, { class: d.meets_slo ? "ok" : "no", text: d.meets_slo ? "yes" : `no${o.failures && o.failures.length ? ": " + [].concat(o.failures).join("; ") : ""}` }),
        td(10, { text: v.winner || "–" }));
    };
    return el("div", { id: "capacity-disagg" },
      el("h3", { text: "Disaggregated prefill / decode against aggregated serving" }),
      el("p", { class: "muted small", text: "Prefill and decode on separate pools (DistServe, Splitwise): each pool's layout and replicas, the KV cache one request hands from prefill to decode and the time it takes over the link, and the devices and price of the aggregated fleet above for the same load." }),
      el("div", { class: "table-wrap" }, el("table", { id: "capacity-disagg-table", class: "stack" },
        el("caption", { class: "sr-only", text: "Disaggregated fleets against aggregated ones" }),
        el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
        el("tbody", {}, list.map(tr)))),
      list.some((r) => { const o = r.disagg.best || r.disagg.closest; return o && o.uncertainty; })
        ? el("p", { class: "muted small", id: "capacity-disagg-bands", text: `(a – b): p10–p90 range of the ${pctLabel(pct)} figure, from the cost model's out-of-sample error on published measurements of the same kind; * outside the validated region (no rows of that hardware class, engine class or batch regime).` }) : null);
  }

  // Only configurations that meet the SLOs are ranked by price; the closest miss of each
  // other hardware is listed apart, unranked; hardware where nothing fits says so.
  function renderCapacity(body, rows) {
    const meet = rows.filter((r) => r.has && r.meets).sort((a, b) => (a.o.usd_per_hour ?? Infinity) - (b.o.usd_per_hour ?? Infinity));
    const miss = rows.filter((r) => r.has && !r.meets);
    const nofit = rows.filter((r) => !r.has);
    const pct = (rows.find((r) => r.has && r.o && r.o.percentile != null) || { o: {} }).o.percentile;
    const head = () => el("thead", {}, el("tr", {}, capHead(pct).map((h) => el("th", { scope: "col", text: h }))));
    const table = (id, caption, list, ranked) => el("div", { class: "table-wrap" },
      el("table", { id, class: "stack" }, el("caption", { class: "sr-only", text: caption }), head(), el("tbody", {}, list.map((r, i) => capacityRow(r, ranked ? i + 1 : "–")))));
    fill($("#capacity-result"),
      el("div", { class: "panel" },
        el("div", { class: "panel-head" }, el("h3", { text: "Cheapest first — meets the SLOs" }), csvButton(() => $("#capacity-table"), `capacity-${body.model}.csv`)),
        meet.length ? table("capacity-table", "Hardware that meets the SLOs, cheapest first", meet, true)
          : el("p", { class: "muted", id: "capacity-none", text: "No hardware meets the SLOs at this load." }),
        rows.some((r) => r.has && r.o.uncertainty) ? el("p", { class: "muted small", id: "capacity-bands", text: `(a – b): p10–p90 range of the ${pctLabel(pct)} figure, ` + "from the cost model's out-of-sample error on published measurements of the same kind; * outside the validated region (no rows of that hardware class, engine class or batch regime)." }) : null,
        miss.length || nofit.length ? el("div", { class: "panel-head" }, el("h3", { text: "Misses the SLOs — not ranked" }),
          csvButton(() => $("#capacity-miss"), `capacity-${body.model}-not-ranked.csv`)) : null,
        miss.length || nofit.length ? el("p", { class: "muted small", text: "The closest configuration of each other hardware, and hardware where the model does not fit; none of them serves this load within the SLOs." }) : null,
        miss.length || nofit.length ? table("capacity-miss", "Hardware that misses the SLOs", miss.concat(nofit), false) : null,
        disaggTable(rows, pct),
        el("div", { class: "actions inline" }, el("a", { href: `#capacity?${bodyParams(body)}`, class: "share", text: "Link to this comparison" })),
        commands("capacity", body, el("p", { class: "muted small", text: "A search that outlasts the server's short wait answers 202 with a job: poll GET /v1/jobs/{id} (its url) until its status is succeeded; its result is this answer." })),
        el("h3", { text: "Cost against load" }),
        el("div", { id: "capacity-plot", class: "chart" }, el("p", { class: "muted", text: "solving at other loads…" }))));
  }

  const LINE_COLOURS = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#999933"];
  const DASHES = ["8 5", "2 4", "10 3 2 3"]; // second, third, … line of a chart: its own dash

  function costPlot(series, loadField, box) {
    const all = Array.from(series.values()).flat();
    if (!all.length) return el("p", { class: "muted", text: "No hardware meets the SLOs at these loads." });
    const W = chartWidth(box, 760), H = Math.round(Math.min(340, Math.max(280, W * 0.6)));
    const narrow = W < 560; // series named in a legend above, not beside the lines
    const b = { left: 64, right: W - (narrow ? 14 : 150), top: 14, bottom: H - 48 };
    const xs = logScale(Math.min(...all.map((p) => p[0])) / 1.3, Math.max(...all.map((p) => p[0])) * 1.3, b.left, b.right);
    const ymin = Math.min(...all.map((p) => p[1])), ymax = Math.max(...all.map((p) => p[1]));
    const ys = logScale(Math.max(ymin / 1.5, 1e-3), ymax * 1.5, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `Fleet cost against load for ${series.size} hardware` });
    const legend = el("div", { class: "legend" });
    axes(s, b, xs, Object.assign({}, ys, { label: (v) => `$${sig(v, 2)}` }), loadField === "qps" ? "offered load (requests/s)" : "output tokens/s", "fleet cost (USD/hour)", "", "");
    let i = 0;
    const labels = [];
    for (const [hw, pts] of series) {
      const colour = LINE_COLOURS[i++ % LINE_COLOURS.length];
      pts.sort((a, c) => a[0] - c[0]);
      const path = svg("path", { class: "line", d: pts.map((p, j) => `${j ? "L" : "M"}${xs.map(p[0])},${ys.map(p[1])}`).join("") });
      path.style.stroke = colour;
      if (i > 1) path.style.strokeDasharray = DASHES[(i - 2) % DASHES.length]; // equal costs stay visible
      s.append(path);
      for (const p of pts) {
        const c = svg("circle", { cx: xs.map(p[0]), cy: ys.map(p[1]), r: 4, tabindex: 0, role: "img", "aria-label": `${hw}: $${sig(p[1])}/h at ${sig(p[0])}` });
        c.style.fill = colour;
        tipOn(c, hw, [["load", sig(p[0])], ["USD/h", sig(p[1])]]);
        s.append(c);
      }
      const last = pts[pts.length - 1];
      if (!narrow) labels.push({ y: ys.map(last[1]) + 4, text: hw, colour });
      const sw = el("span", { class: "sw" });
      sw.style.background = colour;
      legend.append(el("span", {}, sw, hw));
    }
    // Line names beside the plot, one line of text apart where lines end close together.
    labels.sort((p, q) => p.y - q.y);
    for (let k = 1; k < labels.length; k++) labels[k].y = Math.max(labels[k].y, labels[k - 1].y + 13);
    for (const l of labels) {
      const t = svg("text", { x: b.right + 6, y: l.y, text: l.text });
      t.style.fill = l.colour;
      s.append(t);
    }
    return [narrow ? legend : null, s];
  }

  // ------------------------------------------------------------------ throughput against latency

  function setupThroughput() {
    $("#throughput-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      runThroughput().catch(() => {});
    });
    $("#frontier-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      runFrontier().catch(() => {});
    });
  }

  // One POST /v1/estimate per batch size (the Estimate view's other fields), then tokens/s
  // per device against tokens/s per user. Batches that do not fit are listed, not drawn.
  async function runThroughput() {
    const form = $("#throughput-form");
    const btn = $("#throughput-run");
    const status = $("#throughput-progress");
    clearErrors(form, $("#estimate-form"), $("#context"));
    const raw = readForm(form).batches || [];
    const batches = [];
    for (const b of raw) {
      if (!/^\d+$/.test(b) || +b < 1) {
        showError([form], { field: "batches", message: `each batch size is a whole number ≥ 1; got '${b}'` });
        return;
      }
      if (!batches.includes(+b)) batches.push(+b);
    }
    if (!batches.length || batches.length > 24) {
      showError([form], { field: "batches", message: `give 1 to 24 batch sizes; got ${batches.length}` });
      return;
    }
    batches.sort((a, b) => a - b);
    const base = estimateBody();
    delete base.per_op;
    base.mode = "inference";
    busy(btn, true, "Sweeping…");
    const points = [];
    try {
      for (const batch of batches) {
        status.textContent = `batch ${batch}…`;
        points.push({ batch, d: await postEstimate(Object.assign({}, base, { batch })) });
      }
      status.textContent = "";
      renderThroughput(base, batches, points);
      staleIfMoved(base);
      share("throughput", `${bodyParams(base)}&batches=${batches.join(",")}${state.frontierEngines ? `&frontier=${state.frontierEngines.join(",")}` : ""}`);
    } catch (e) {
      status.textContent = "";
      showError([form, $("#estimate-form"), $("#context")], e);
      throw e;
    } finally {
      busy(btn, false);
    }
  }

  function renderThroughput(base, batches, points) {
    const out = $("#throughput-result");
    // A model that generates nothing (encoder, ViT, CNN) has no per-user token rate: its sweep is each batch's
    // forward pass, latency against samples (images) per second, not the tokens/s curve.
    const generative = points.some(({ d }) => d.gen !== null && d.gen !== undefined);
    const images = points.some(({ d }) => d.per_token_basis === "images" || d.per_token_basis === "image_patches");
    const per = images ? "images" : "samples";
    const rows = points.map(({ batch, d }) => {
      const fits = d.memory && d.memory.fits;
      return { batch, d, fits, user: d.tpot_s > 0 ? 1 / d.tpot_s : null, device: d.output_tokens_per_s / (d.devices || 1) };
    });
    const cols = generative ? ["batch", "fits", "tok/s per user", "tok/s per device", "TTFT", "TPOT", "memory per device", "USD/M tok"]
      : ["batch", "fits", `${per}/s per device`, "latency (one forward pass)", "memory per device", `USD/M ${per}`];
    const head = el("tr", {}, cols.map((h) => el("th", { scope: "col", text: h })));
    const num = (r, v, text) => el("td", { class: "num", "data-v": r.fits ? v ?? "" : "", text: r.fits && v != null ? text(v) : "–" });
    const trs = rows.map((r) => el("tr", { class: r.fits ? null : "nofit" },
      el("td", { class: "num", text: r.batch }), el("td", { class: r.fits ? "ok" : "no", text: r.fits ? "yes" : "no" }),
      ...(generative ? [num(r, r.user, sig), num(r, r.device, sig), num(r, r.d.ttft_s, fmtTime), num(r, r.d.tpot_s, fmtTime)]
        : [num(r, r.d.samples_per_s / (r.d.devices || 1), sig), num(r, r.d.latency_s, fmtTime)]),
      el("td", { class: "num", "data-v": r.d.memory.per_device_bytes, text: fmtBytes(r.d.memory.per_device_bytes) }),
      num(r, r.d.usd_per_million_tokens, sig)));
    const chart = el("div", { id: "throughput-chart", class: "chart" });
    const nofit = rows.filter((r) => !r.fits).map((r) => r.batch);
    const shape = generative ? `prompt ${base.prompt ?? 512}, gen ${base.gen ?? 128}` : images ? "one image per sample" : `${base.prompt ?? 512} tokens per sample`;
    fill(out, el("div", { class: "panel" },
      el("h3", { text: `${base.model} on ${base.hardware}${base.engine ? ` with ${base.engine}` : ""}: ${base.devices || (base.tp || 1) * (base.pp || 1) * (base.dp || 1)} device(s), ${shape}` }),
      generative ? chart : el("p", { class: "muted", id: "throughput-forward", text: `${base.model} generates no tokens, so there is no tokens/s per user to trade against: the table gives each batch's forward-pass latency and ${per} per second.` }),
      nofit.length ? el("p", { class: "muted small", id: "throughput-nofit", text: `Batch ${nofit.join(", ")} does not fit in memory${generative ? ": not drawn" : ""}.` }) : null,
      el("div", { class: "panel-head" }, el("h3", { text: "Points" }), csvButton(() => $("#throughput-table"), `throughput-${base.model}-${base.hardware}.csv`)),
      el("div", { class: "table-wrap" }, el("table", { id: "throughput-table" }, el("thead", {}, head), el("tbody", {}, trs))),
      el("div", { class: "actions inline" }, el("a", { href: `#throughput?${bodyParams(base)}&batches=${batches.join(",")}`, class: "share", text: "Link to this sweep" })),
      commands("estimate", Object.assign({}, base, { batch: batches[batches.length - 1] }), el("p", { class: "muted small", text: `One call per batch size: ${batches.join(", ")} (the commands above show the last).` }))));
    if (!generative) return;
    const draw = () => fill(chart, throughputPlot(rows.filter((r) => r.fits && r.user > 0 && r.device > 0), chart));
    draw();
    redrawOnResize(chart, draw);
    chart.dataset.points = String(rows.filter((r) => r.fits).length);
  }


  function throughputPlot(rows, box) {
    if (!rows.length) return el("p", { class: "muted", text: "No batch size fits in memory." });
    const W = chartWidth(box, 760), H = Math.round(Math.min(360, Math.max(280, W * 0.6)));
    const b = { left: 64, right: W - 16, top: 16, bottom: H - 48 };
    const xv = rows.map((r) => r.user), yv = rows.map((r) => r.device);
    const xs = logScale(Math.min(...xv) / 1.3, Math.max(...xv) * 1.3, b.left, b.right);
    const ys = logScale(Math.min(...yv) / 1.3, Math.max(...yv) * 1.3, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": `Throughput against latency: ${rows.length} batch sizes` });
    axes(s, b, xs, ys, "tokens/s per user (1 / TPOT)", "output tokens/s per device", "", "");
    const path = svg("path", { class: "line", d: rows.map((r, j) => `${j ? "L" : "M"}${xs.map(r.user)},${ys.map(r.device)}`).join("") });
    path.style.stroke = "var(--accent)";
    s.append(path);
    for (const r of rows) {
      const c = svg("circle", { class: "tp", cx: xs.map(r.user), cy: ys.map(r.device), r: 5, tabindex: 0, role: "img", "aria-label": `batch ${r.batch}: ${sig(r.user)} tokens/s per user, ${sig(r.device)} tokens/s per device`, dataset: { batch: r.batch } });
      tipOn(c, `batch ${r.batch}`, [["per user", `${sig(r.user)} tok/s`], ["per device", `${sig(r.device)} tok/s`], ["TTFT", fmtTime(r.d.ttft_s)], ["TPOT", fmtTime(r.d.tpot_s)], ["memory", fmtBytes(r.d.memory.per_device_bytes)]]);
      s.append(c, svg("text", { x: xs.map(r.user) + 7, y: ys.map(r.device) - 7, class: "pt-label", text: r.batch }));
    }
    return s;
  }

  // ------------------------------------------------------------------ throughput–latency frontier

  // POST /v1/capacity/frontier (when this server has it): for the model and hardware above,
  // every layout, weight format and batch size each ticked engine runs there, Pareto-filtered
  // on output tokens/s per device and tokens/s per user — one line per engine.
  async function prepareFrontier() {
    const doc = await openapiDoc();
    const op = doc.paths && doc.paths["/v1/capacity/frontier"] && doc.paths["/v1/capacity/frontier"].post;
    state.frontierProps = op ? resolveRef(doc, op.requestBody.content["application/json"].schema).properties || {} : null;
    $("#frontier-form").hidden = !op;
    fillFrontierEngines();
  }

  // The serving engines that run on the hardware; the picked engine ticked.
  function fillFrontierEngines(ticked) {
    const box = $("#frontier-engines");
    const d = enginesKnown();
    if (!d) return;
    const want = new Set(ticked || [$("#engine").value]);
    fill(box, ...d.items.filter((e) => e.kind !== "training").map((e) => el("label", {},
      el("input", { type: "checkbox", value: e.id, checked: want.has(e.id), "aria-label": `frontier of ${e.name}` }), ` ${e.name} (${e.id})`)));
  }

  function frontierBody() {
    const est = readForm($("#estimate-form"));
    const own = readForm($("#frontier-form"));
    const body = { model: $("#model").value, hardware: [$("#hardware").value], engine: $$("#frontier-engines input:checked").map((i) => i.value) };
    for (const k of ["prompt", "gen", "kv"]) if (est[k] !== undefined) body[k] = est[k];
    if (own.max_devices !== undefined) body.max_devices = own.max_devices;
    for (const k of Object.keys(body)) if (state.frontierProps && !(k in state.frontierProps)) delete body[k];
    return body;
  }

  async function runFrontier() {
    const form = $("#frontier-form");
    const btn = $("#frontier-run");
    clearErrors(form, $("#estimate-form"), $("#context"));
    const body = frontierBody();
    if (!body.engine || !body.engine.length) {
      showError([form], { field: "engine", message: "tick at least one engine" });
      return;
    }
    busy(btn, true, "Searching…");
    $("#frontier-status").textContent = `${body.engine.join(", ")} on ${body.hardware[0]}…`;
    try {
      const { data } = await api("POST", "/v1/capacity/frontier", body);
      renderFrontier(body, data);
      state.frontierEngines = body.engine;
      const sweep = state.shared.throughput && new URLSearchParams(state.shared.throughput).get("batches");
      share("throughput", `${bodyParams(withEngine(Object.assign(readForm($("#estimate-form")), { model: body.model, hardware: body.hardware[0] })), ["per_op", "mode"])}${sweep ? `&batches=${sweep}` : ""}&frontier=${body.engine.join(",")}`);
    } catch (e) {
      fill($("#frontier-result"));
      showError([form, $("#estimate-form"), $("#context")], e);
      throw e;
    } finally {
      $("#frontier-status").textContent = "";
      busy(btn, false);
    }
  }

  const FRONTIER_HEAD = ["engine", "hardware", "batch", "devices", "tp · pp", "weights / act / kv", "tok/s per user", "tok/s per device", "TPOT", "USD/M tok"];

  function renderFrontier(body, data) {
    const series = (data.series || []).filter((s) => s.points && s.points.length);
    const rows = series.flatMap((s) => s.points.map((p) => el("tr", {},
      el("td", { "data-label": "engine", text: p.engine }), el("td", { "data-label": "hardware", text: p.hardware }),
      el("td", { class: "num", "data-label": "batch", text: p.batch }), el("td", { class: "num", "data-label": "devices", text: p.devices }),
      el("td", { "data-label": "tp · pp", text: `${p.tp} · ${p.pp}` }), el("td", { "data-label": "formats", text: `${p.weights} / ${p.activations} / ${p.kv}` }),
      el("td", { class: "num", "data-label": "tok/s per user", "data-v": p.tokens_per_s_per_user, text: sig(p.tokens_per_s_per_user) + pointBand(p, "tokens_per_s_per_user", sig) }),
      el("td", { class: "num", "data-label": "tok/s per device", "data-v": p.tokens_per_s_per_device, text: sig(p.tokens_per_s_per_device) + pointBand(p, "tokens_per_s_per_device", sig) }),
      el("td", { class: "num", "data-label": "TPOT", "data-v": p.tpot_s, text: fmtTime(p.tpot_s) + pointBand(p, "tpot_s", fmtTime) }),
      el("td", { class: "num", "data-label": "USD/M tok", "data-v": p.usd_per_million_tokens ?? "", text: p.usd_per_million_tokens != null ? sig(p.usd_per_million_tokens) : "–" }))));
    const chart = el("div", { id: "frontier-chart", class: "chart" });
    const unsupported = (data.unsupported || []).map((u) => `${u.engine} on ${u.hardware}: ${u.reason}`);
    const empty = (data.series || []).filter((s) => !s.points || !s.points.length).map((s) => `${s.engine} on ${s.hardware}`);
    fill($("#frontier-result"), el("div", { class: "panel" },
      el("h3", { text: `${data.model} on ${body.hardware.join(", ")}: prompt ${data.prompt}, gen ${data.gen}` }),
      chart,
      unsupported.length ? el("p", { class: "muted small", id: "frontier-unsupported", text: `Not drawn — ${unsupported.join("; ")}` }) : null,
      empty.length ? el("p", { class: "muted small", id: "frontier-empty", text: `Nothing fits: ${empty.join(", ")}` }) : null,
      el("details", { id: "frontier-table-box" },
        el("summary", { text: `The ${rows.length} frontier points as a table` }),
        el("div", { class: "panel-head" }, el("span"), csvButton(() => $("#frontier-table"), `frontier-${data.model}-${body.hardware.join("-")}.csv`)),
        el("div", { class: "table-wrap" }, el("table", { id: "frontier-table", class: "stack" }, el("caption", { class: "sr-only", text: "Points of the throughput–latency frontier" }),
          el("thead", {}, el("tr", {}, FRONTIER_HEAD.map((h) => el("th", { scope: "col", text: h })))), el("tbody", {}, rows))),
        series.some((s) => s.points.some((p) => p.uncertainty)) ? el("p", { class: "muted small", id: "frontier-bands", text: "(a – b): p10–p90 range of the figure, from the cost model's out-of-sample error on published measurements of the same kind (a point's rates and TPOT are one decode step, so they share one band); * outside the validated region (no rows of that hardware class, engine class or batch regime)." }) : null),
      commands("frontier", body)));
    const draw = () => fill(chart, frontierPlot(series, chart));
    draw();
    redrawOnResize(chart, draw);
    chart.dataset.series = String(series.length);
    chart.dataset.points = String(series.reduce((a, s) => a + s.points.length, 0));
  }

  function frontierPlot(series, box) {
    const pts = series.flatMap((s) => s.points).filter((p) => p.tokens_per_s_per_user > 0 && p.tokens_per_s_per_device > 0);
    if (!pts.length) return el("p", { class: "muted", text: "No configuration fits on this hardware." });
    const W = chartWidth(box, 760), H = Math.round(Math.min(380, Math.max(280, W * 0.6)));
    const b = { left: 64, right: W - 16, top: 16, bottom: H - 48 };
    const xv = pts.map((p) => p.tokens_per_s_per_user), yv = pts.map((p) => p.tokens_per_s_per_device);
    const xs = logScale(Math.min(...xv) / 1.3, Math.max(...xv) * 1.3, b.left, b.right);
    const ys = logScale(Math.min(...yv) / 1.3, Math.max(...yv) * 1.3, b.bottom, b.top);
    const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "group", "aria-label": `Throughput–latency frontier: ${series.length} engine and hardware pairs, ${pts.length} points` });
    axes(s, b, xs, ys, "tokens/s per user (1 / TPOT)", "output tokens/s per device", "", "");
    const legend = el("div", { class: "legend" });
    series.forEach((ser, i) => {
      const colour = LINE_COLOURS[i % LINE_COLOURS.length];
      const line = ser.points.slice().sort((p, q) => p.tokens_per_s_per_user - q.tokens_per_s_per_user);
      const path = svg("path", { class: "line", "data-engine": ser.engine, d: line.map((p, j) => `${j ? "L" : "M"}${xs.map(p.tokens_per_s_per_user)},${ys.map(p.tokens_per_s_per_device)}`).join("") });
      path.style.stroke = colour;
      // Engines that price a device alike draw the same line: each line its own dash, so
      // one on top of another still shows.
      if (i) path.style.strokeDasharray = DASHES[(i - 1) % DASHES.length];
      s.append(path);
      for (const p of line) {
        const c = svg("circle", { class: "fp", cx: xs.map(p.tokens_per_s_per_user), cy: ys.map(p.tokens_per_s_per_device), r: 4.5, tabindex: 0, role: "img", dataset: { engine: p.engine, batch: p.batch },
          "aria-label": `${p.engine} on ${p.hardware}, batch ${p.batch}, ${p.devices} device${p.devices === 1 ? "" : "s"}, ${p.weights}: ${sig(p.tokens_per_s_per_user)} tokens/s per user, ${sig(p.tokens_per_s_per_device)} per device` });
        c.style.fill = colour;
        tipOn(c, `${p.engine} on ${p.hardware}`, [["batch", String(p.batch)], ["layout", `tp ${p.tp} · pp ${p.pp}`], ["formats", `${p.weights} / ${p.activations} / ${p.kv}`],
          ["per user", `${sig(p.tokens_per_s_per_user)} tok/s`], ["per device", `${sig(p.tokens_per_s_per_device)} tok/s`], ["TPOT", fmtTime(p.tpot_s)],
          ["cost", p.usd_per_million_tokens != null ? perMillion(p.usd_per_million_tokens) : "–"]]);
        s.append(c);
      }
      const sw = el("span", { class: "sw" });
      sw.style.background = colour;
      legend.append(el("span", {}, sw, `${ser.engine} on ${ser.hardware}`));
    });
    return [legend, s];
  }

  // ------------------------------------------------------------------ compare two estimates

  const COMPARE_ROWS = [
    ["TTFT", (d) => d.ttft_s, fmtTime, -1],
    ["TPOT", (d) => d.tpot_s, fmtTime, -1],
    ["decode tokens/s", (d) => d.decode_tokens_per_s, sig, 1],
    ["output tokens/s", (d) => d.output_tokens_per_s, sig, 1],
    ["tokens/s per device", (d) => { const t = d.output_tokens_per_s ?? d.tokens_per_s; return t == null ? null : t / (d.devices || 1); }, sig, 1],
    ["samples/s (images for a CNN)", (d) => d.samples_per_s, sig, 1],
    ["request latency", (d) => d.latency_s, fmtTime, -1],
    ["communication (prefill)", (d) => d.prefill && d.prefill.comm_s, fmtTime, -1],
    ["memory per device", (d) => d.memory && d.memory.per_device_bytes, fmtBytes, -1],
    ["weights per device", (d) => d.memory && memorySplit(d.memory).weights, fmtBytes, -1],
    ["KV cache per device", (d) => d.memory && memorySplit(d.memory).kv, fmtBytes, -1],
    ["activations per device", (d) => d.memory && (d.memory.activations_bytes ?? memorySplit(d.memory).act), fmtBytes, -1],
    ["fits", (d) => d.memory && d.memory.fits, (v) => (v ? "yes" : "no"), 0],
    ["energy J/token", (d) => d.energy_j_per_token, sig, -1, true],
    ["USD / M tokens", (d) => d.usd_per_million_tokens, sig, -1, true],
    ["step time", (d) => d.step_time_s, fmtTime, -1],
    ["MFU", (d) => d.mfu, fmtPct, 1],
  ];

  function setCompare(slot, body, data) {
    state.compare[slot] = { body, data };
    const other = state.compare[slot === "a" ? "b" : "a"];
    const btn = $(`#compare-set-${slot}`);
    if (btn) btn.textContent = `Set as ${slot.toUpperCase()} ✓`;
    renderCompare();
    if (other) showView("compare", false);
  }

  const compareQuery = () => ["a", "b"].filter((k) => state.compare[k]).map((k) => `${k}=${encodeURIComponent(bodyParams(state.compare[k].body))}`).join("&");

  function renderCompare() {
    const { a, b } = state.compare;
    const box = $("#compare-result");
    if (!a || !b) {
      fill(box, el("p", { class: "muted", text: `${a ? "A is set; set B" : b ? "B is set; set A" : "Set A and B"} from the Estimate view.` }));
      return;
    }
    const inputs = Array.from(new Set([...Object.keys(a.body), ...Object.keys(b.body)])).filter((k) => k !== "per_op");
    const inRows = inputs.map((k) => {
      const va = a.body[k], vb = b.body[k];
      return el("tr", { class: JSON.stringify(va) === JSON.stringify(vb) ? null : "differs" }, el("th", { scope: "row", text: k }), el("td", { text: va === undefined || va === null ? "–" : String(va) }), el("td", { text: vb === undefined || vb === null ? "–" : String(vb) }), el("td"));
    });
    // per-token figures count what each answer's per_token_basis says (output tokens, prompt tokens, images)
    const basisOf = (d) => d.per_token_basis || "output_tokens";
    const unlike = basisOf(a.data) !== basisOf(b.data);
    const generates = [a.data, b.data].some((d) => d.gen !== null && d.gen !== undefined);
    const outRows = COMPARE_ROWS.map(([label, get, f, better, perToken]) => {
      const va = get(a.data), vb = get(b.data);
      if ((va === undefined || va === null) && (vb === undefined || vb === null)) return null;
      if (label === "TTFT" && !generates) return null; // one forward pass: the latency row says it
      // per image, per prompt token: what both count (a mixed pair keeps "token" and says what each counts)
      const name = perToken && !unlike ? label.replace("J/token", `J/${perUnit(basisOf(a.data))[0]}`).replace("M tokens", `M ${perUnit(basisOf(a.data))[1]}`) : label;
      let delta = "", cls = null;
      if (perToken && unlike) {
        delta = `per ${perUnit(basisOf(a.data))[0]} vs per ${perUnit(basisOf(b.data))[0]}`;
      } else if (typeof va === "number" && typeof vb === "number" && va !== 0 && better) {
        const r = (vb - va) / Math.abs(va);
        delta = `${r >= 0 ? "+" : "−"}${sig(Math.abs(r) * 100, 3)} %`;
        if (Math.abs(r) > 1e-9) cls = r * better > 0 ? "ok" : "no";
      }
      return el("tr", { class: va === vb ? null : "differs" }, el("th", { scope: "row", text: name }),
        el("td", { class: "num", "data-v": va ?? "", text: f(va) }), el("td", { class: "num", "data-v": vb ?? "", text: f(vb) }), el("td", { class: `num ${cls || ""}`, text: delta }));
    });
    const head = (first) => el("thead", {}, el("tr", {}, [first, "A", "B", "B vs A"].map((h) => el("th", { scope: "col", text: h }))));
    fill(box,
      el("div", { class: "panel-head" }, el("h3", { text: `A: ${a.data.model} on ${a.data.hardware}${a.body.engine ? ` (${a.body.engine})` : ""} · B: ${b.data.model} on ${b.data.hardware}${b.body.engine ? ` (${b.body.engine})` : ""}` }), csvButton(() => $("#compare-table"), "compare.csv")),
      el("table", { id: "compare-table" }, el("caption", { class: "sr-only", text: "Two estimates side by side" }), head("metric"), el("tbody", {}, outRows)),
      el("h3", { text: "Inputs" }),
      el("table", { id: "compare-inputs" }, head("field"), el("tbody", {}, inRows)),
      el("div", { class: "actions inline" }, el("a", { href: `#compare?${compareQuery()}`, class: "share", text: "Link to this comparison" })),
      el("div", { class: "two-col" }, commands("estimate", a.body), commands("estimate", b.body)));
    share("compare", compareQuery());
  }

  // ------------------------------------------------------------------ restore a view from its link

  async function restoreFromHash() {
    const { view, params } = parseHash();
    if (![...params.keys()].length) return;
    let problems = [];
    const ctxScopes = (form) => [form, $("#context")];
    try {
      if (view === "estimate" || view === "roofline" || view === "throughput") {
        const form = $("#estimate-form");
        form.reset(); // a link opened in an open tab starts from the defaults, not from the last link's fields
        $("#throughput-form").reset();
        clearErrors(form, $("#context"), $("#throughput-form"));
        problems = await pickContext(params);
        problems.push(...fillFromParams(form, params, ["batches", "frontier"]));
        if (problems.some((e) => e.blocks)) {
          // nothing of the link runs: no earlier link's result stays under its form
          for (const id of ["#estimate-result", "#throughput-result", "#roofline-chart"]) fill($(id));
          return showLinkProblems(ctxScopes(form), problems);
        }
        if (view === "throughput") {
          if (params.get("batches")) $("#tp-batches").value = params.get("batches").split(",").join(", ");
          if (params.get("batches") || !params.get("frontier")) await runThroughput();
          if (params.get("frontier")) {
            await prepareFrontier();
            fillFrontierEngines(params.get("frontier").split(","));
            if (!$("#frontier-form").hidden) await runFrontier();
          }
        } else await runEstimate();
        showLinkProblems(ctxScopes(form), problems);
      } else if (view === "compare") {
        clearErrors($("#view-compare"));
        const notes = [];
        try {
          for (const slot of ["a", "b"]) {
            if (!params.get(slot)) continue;
            const q = new URLSearchParams(params.get(slot));
            const form = $("#estimate-form");
            form.reset();
            const found = await pickContext(q);
            found.push(...fillFromParams(form, q));
            // say which side of the comparison the link got wrong
            const side = (e) => new ApiError(e.status || 422, { code: e.code, field: null, message: `${slot.toUpperCase()}: ${forForm(e.message || String(e), [form])}` });
            const wrong = found.filter((e) => e.blocks);
            if (wrong.length) throw side(wrong[0]);
            notes.push(...found.map(side)); // an engine replaced, a key misspelt: said, the side still runs
            const body = estimateBody();
            try {
              state.compare[slot] = { body, data: await postEstimate(body) };
            } catch (e) {
              throw e instanceof ApiError && e.status !== 401 ? side(e) : e;
            }
          }
        } catch (e) {
          fill($("#compare-result")); // not the earlier comparison under this link's error
          throw e;
        }
        renderCompare();
        if (notes.length) showError([$("#compare-error")], new ApiError(422, { code: "invalid_field", field: null, message: notes.map((e) => e.message).join("; ") }));
      } else if (view === "plan") {
        const form = $("#plan-form");
        form.reset();
        clearErrors(form, $("#context"));
        problems = await pickContext(params);
        problems.push(...fillFromParams(form, params, ["plan"]));
        if (problems.some((e) => e.blocks)) {
          fill($("#plan-result"));
          return showLinkProblems(ctxScopes(form), problems);
        }
        if (params.get("plan") && !(await openPlan(params.get("plan"), params.get("engine"), [form]))) fill($("#plan-result"));
        showLinkProblems(ctxScopes(form), problems);
      } else if (view === "capacity") {
        await prepareCapacity();
        clearErrors($("#capacity-form"));
        // a link opened in an open tab starts from the form's first values, not from the last link's fields
        for (const c of $$("#capacity-fields [data-initial]")) {
          if (c.type === "checkbox") c.checked = c.dataset.initial === "true";
          else c.value = c.dataset.initial;
        }
        problems = [];
        const m = params.get("model");
        if (m && !Array.from($("#cap-model").options).some((o) => o.value === m)) {
          fill($("#capacity-result"));
          return showLinkProblems([$("#capacity-form")], [new ApiError(404, { code: "not_found", field: "model", message: `the link names model '${m}', which this server does not have` })]);
        }
        if (m) $("#cap-model").value = m;
        problems = fillFromParams($("#capacity-fields"), params, ["models", "mix"]);
        if (params.get("hardware")) {
          const want = new Set(params.get("hardware").split(","));
          for (const i of $$("#capacity-hardware input")) i.checked = want.has(i.value);
          const missing = [...want].filter((h) => !$$("#capacity-hardware input").some((i) => i.value === h));
          if (missing.length) problems.push(new ApiError(404, { code: "not_found", field: null, message: `the link names hardware ${missing.map((h) => `'${h}'`).join(", ")}, which this server does not have: left out` }));
        }
        const engines = new Set((params.get("engine") || "").split(",").filter(Boolean));
        for (const i of $$("#cap-engines input")) i.checked = engines.has(i.value);
        const noEngine = [...engines].filter((e) => !$$("#cap-engines input").some((i) => i.value === e));
        if (noEngine.length) problems.push(new ApiError(404, { code: "not_found", field: null, message: `the link names engine ${noEngine.map((e) => `'${e}'`).join(", ")}, which this server does not have: left out` }));
        // The ranking is shown first; the cost-against-load sweep goes on behind.
        const run = runCapacity();
        await Promise.race([run, new Promise((r) => {
          const seen = new MutationObserver(() => {
            if ($("#capacity-result .panel")) {
              seen.disconnect();
              r();
            }
          });
          seen.observe($("#capacity-result"), { childList: true });
        })]);
        run.catch(() => {});
        showLinkProblems([$("#capacity-form")], problems);
      } else if (view === "plans") {
        $("#plans-search").value = params.get("q") || "";
        renderPlansList();
      }
    } catch (e) {
      const scope = { estimate: "#estimate-form", roofline: "#estimate-form", throughput: "#throughput-form", plan: "#plan-form", capacity: "#capacity-form", compare: "#compare-error" }[view];
      if (e.status !== 401) showError(scope ? [$(scope), $("#context")] : [$("#global-error")], e);
      if (scope) showLinkProblems([$(scope), $("#context")], problems);
    }
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
    setupThroughput();
    setupResize();
    $("#capacity-form").addEventListener("submit", (ev) => runCapacity(ev).catch(() => {}));
    $("#roof-prefill").addEventListener("change", drawRoofline);
    $("#roof-decode").addEventListener("change", drawRoofline);
    document.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") hideTip();
    });
    document.addEventListener("scroll", followTip, { passive: true, capture: true });
    showView(currentView(), false);
    drawRoofline();
    renderCompare();
    fetch("/healthz", { cache: "no-store" }).then((r) => r.json()).then((h) => ($("#version").textContent = `v${h.version}`)).catch(() => {});
    try {
      await loadCatalog();
    } catch (e) {
      if (e.status !== 401) showError([$("#global-error")], e);
      return;
    }
    await restoreFromHash();
    state.restored = true;
    document.body.dataset.restored = "true";
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
