/*
 * providers.js — the "Providers" view: which provider is faster, cheaper, more reliable.
 *
 * Owns: the period and kind controls (STT, LLM, TTS, telephony, voice mode),
 * the leaderboard (one row per provider and model; sortable columns, each a
 * real <button> in its <th>, the sorted one marked with aria-sort), and the
 * latency distribution chart: per provider, P50/P95/P99 of its own stage and
 * of the response latency as nested bars on one scale. Data comes from
 * /analytics/providers (exact over all retained history); a call ending or a
 * deletion triggers a throttled refetch while the view is shown. The chart
 * speaks without sight as the analytics charts do: a caption with its key
 * figures and a toggle to the same numbers as a table.
 */

import { h, fill, setText } from "./dom.js";
import * as fmt from "./format.js";
import { urls, withParams, latestOnly, isAbort } from "./api.js";
import { schedule, throttle } from "./scheduler.js";

const KINDS = {
  stt: { label: "STT", stage: "STT" },
  llm: { label: "LLM", stage: "LLM" },
  tts: { label: "TTS", stage: "TTS" },
  telephony: { label: "Telephony", stage: null },
  mode: { label: "Voice mode", stage: null },
};
const RANGES = { "24h": 86400, "7d": 7 * 86400, "30d": 30 * 86400, all: null };
const RANGE_WORDS = { "24h": "in the last 24 hours", "7d": "in the last 7 days", "30d": "in the last 30 days", all: "over all history" };
const PCTS = ["p50_ms", "p95_ms", "p99_ms"];

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);
const percent = (v) => (num(v) === null ? fmt.DASH : `${(v * 100).toFixed(v > 0 && v < 0.1 ? 1 : 0)}%`);

/** A row's name as people say it: "deepgram nova-3", the voice mode by its product name. */
function rowName(kind, row) {
  if (row.provider === null || row.provider === undefined) return "Not reported";
  return kind === "mode" ? fmt.mode(row.provider) : String(row.provider);
}

/*
 * Columns: what a header says, the value it sorts by, how a cell shows it, and the order a
 * first click sorts in (more calls is "better" first; for latency, cost and failures, lower first).
 */
const COLUMNS = [
  { key: "provider", label: "Provider", value: (r, k) => rowName(k, r).toLowerCase(), first: "ascending" },
  { key: "calls", label: "Calls", value: (r) => r.calls, show: fmt.num, first: "descending" },
  { key: "minutes", label: "Minutes", value: (r) => r.minutes, show: fmt.num1, first: "descending" },
  ...PCTS.map((p) => ({
    key: `stage_${p}`, label: `Stage ${p.slice(0, 3).toUpperCase()}`, value: (r) => num(r.latency && r.latency[p]),
    show: fmt.ms, first: "ascending", stage: true,
  })),
  ...PCTS.map((p) => ({
    key: `response_${p}`, label: `Response ${p.slice(0, 3).toUpperCase()}`, value: (r) => num(r.response_latency && r.response_latency[p]),
    show: fmt.ms, first: "ascending",
  })),
  { key: "cost_per_minute", label: "Cost / min", value: (r) => num(r.cost_per_minute), show: fmt.money, first: "ascending" },
  { key: "cost_per_call", label: "Cost / call", value: (r) => num(r.cost_per_call), show: fmt.money, first: "ascending" },
  { key: "failure_rate", label: "Failure rate", value: (r) => num(r.failure_rate), show: percent, first: "ascending" },
];

export class ProvidersView {
  /**
   * @param {object} els  {controls, kinds, sub, table, chart, chartCard, summary, chartTable, toggle, error}
   */
  constructor(els) {
    this.els = els;
    this.range = "7d";
    this.kind = "stt";
    this.sort = { key: "calls", dir: "descending" };
    this.visible = false;
    this.stale = true;
    this.data = null;
    this.get = latestOnly();
    // Each answer reads every matching call on the server: at most one refetch every 10 s while calls end.
    this.refreshSoon = throttle(() => this.refresh(), 10000, 1000);
    setInterval(() => this.invalidate(), 60000); // "last 24 h" slides with the clock

    els.controls.addEventListener("click", (ev) => this.rangeClicked(ev));
    els.kinds.addEventListener("click", (ev) => this.kindClicked(ev));
    els.table.querySelector("thead").addEventListener("click", (ev) => this.sortClicked(ev));
    els.toggle.addEventListener("click", () => this.tableToggled());
    this.syncControls();
  }

  rangeClicked(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest("button[data-range]") : null;
    if (!btn) return;
    this.range = btn.dataset.range;
    this.syncControls();
    this.refresh();
  }

  kindClicked(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest("button[data-kind]") : null;
    if (!btn) return;
    this.kind = btn.dataset.kind;
    if (!KINDS[this.kind].stage && this.sort.key.startsWith("stage_")) this.sort = { key: "calls", dir: "descending" };
    this.syncControls();
    schedule("providers", () => this.draw());
  }

  sortClicked(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest("button[data-sort]") : null;
    if (!btn) return;
    const key = btn.dataset.sort;
    const column = COLUMNS.find((c) => c.key === key);
    const dir = this.sort.key === key ? (this.sort.dir === "ascending" ? "descending" : "ascending") : column.first;
    this.sort = { key, dir };
    this.draw();
    // The header was rebuilt: keep focus on the button the user pressed.
    const again = this.els.table.querySelector(`button[data-sort="${key}"]`);
    if (again) again.focus();
  }

  syncControls() {
    for (const b of this.els.controls.querySelectorAll("button[data-range]")) {
      b.setAttribute("aria-pressed", String(b.dataset.range === this.range));
    }
    for (const b of this.els.kinds.querySelectorAll("button[data-kind]")) {
      b.setAttribute("aria-pressed", String(b.dataset.kind === this.kind));
    }
  }

  period() {
    const span = RANGES[this.range];
    const to = Math.ceil(Date.now() / 1000);
    return span === null ? {} : { from: to - span, to };
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible && this.stale) this.refresh();
  }

  /** Calls changed on the server: refetch soon if shown, else when shown. */
  invalidate() {
    this.stale = true;
    if (this.visible) this.refreshSoon();
  }

  async refresh() {
    this.stale = false;
    this.els.table.setAttribute("aria-busy", "true");
    try {
      const body = await this.get(withParams(urls.providers, this.period()), { timeoutMs: 120000 });
      this.data = (body && body.data) || null;
      this.els.error.hidden = true;
      schedule("providers", () => this.draw());
    } catch (err) {
      if (isAbort(err)) return;
      this.stale = true;
      setText(this.els.error, `Could not load the provider comparison${err && err.status ? ` (HTTP ${err.status})` : ""}.`);
      this.els.error.hidden = false;
    } finally {
      this.els.table.removeAttribute("aria-busy");
    }
  }

  /** The rows of the chosen kind, in the chosen order; rows without a value sort last either way. */
  rows() {
    const all = this.data && Array.isArray(this.data.providers) ? this.data.providers : [];
    const rows = all.filter((r) => r && r.kind === this.kind);
    const column = COLUMNS.find((c) => c.key === this.sort.key) || COLUMNS[1];
    const sign = this.sort.dir === "ascending" ? 1 : -1;
    return rows
      .map((r, i) => ({ r, i, v: column.value(r, this.kind) }))
      .sort((a, b) => {
        if (a.v === null || b.v === null) return a.v === null ? (b.v === null ? a.i - b.i : 1) : -1;
        if (a.v < b.v) return -sign;
        if (a.v > b.v) return sign;
        return a.i - b.i;
      })
      .map((x) => x.r);
  }

  draw() {
    const kind = KINDS[this.kind];
    const rows = this.rows();
    const columns = COLUMNS.filter((c) => !c.stage || kind.stage);
    const analyzed = this.data ? num(this.data.calls_analyzed) : null;
    setText(this.els.sub, analyzed === null ? "Loading…"
      : `${fmt.num(analyzed)} finished call${analyzed === 1 ? "" : "s"} ${RANGE_WORDS[this.range]}, compared by ${kind.label === "Voice mode" ? "voice mode" : `${kind.label} provider`}`);
    this.drawTable(columns, rows);
    this.drawChart(rows);
  }

  drawTable(columns, rows) {
    const table = this.els.table;
    const sorted = COLUMNS.find((c) => c.key === this.sort.key);
    setText(table.querySelector("caption"),
      `${KINDS[this.kind].label} providers ${RANGE_WORDS[this.range]}, sorted by ${sorted.label.toLowerCase()}, ${this.sort.dir}. `
      + "Latencies are per call: P50, P95 and P99 of each call's mean. Column headers sort the table.");
    fill(table.querySelector("thead"), h("tr", null, columns.map((c, i) => {
      const active = c.key === this.sort.key;
      return h("th", { scope: "col", class: i ? "pd-num" : null, "aria-sort": active ? this.sort.dir : null },
        h("button", { type: "button", class: "pd-sort", dataset: { sort: c.key } },
          c.label, h("span", { class: "pd-sort-mark", "aria-hidden": "true" }, active ? (this.sort.dir === "ascending" ? "▲" : "▼") : "")));
    })));
    const body = table.querySelector("tbody");
    if (!rows.length) {
      fill(body, h("tr", { class: "pd-empty-row" }, h("td", { colspan: String(columns.length) }, "No finished calls in this period.")));
      return;
    }
    fill(body, rows.map((r) => h("tr", { class: "pd-provider-row" }, columns.map((c, i) => {
      if (!i) {
        return h("th", { scope: "row", class: "pd-provider-name" }, rowName(this.kind, r),
          r.model ? h("span", { class: "pd-model" }, String(r.model)) : null);
      }
      return h("td", { class: "pd-num" }, c.show(c.value(r, this.kind)));
    }))));
  }

  /** Nested bars per provider (P99 ⊃ P95 ⊃ P50) on one scale, for its stage and for the response. */
  drawChart(rows) {
    const stage = KINDS[this.kind].stage;
    const metrics = [
      ...(stage ? [{ key: "latency", label: `${stage} stage` }] : []),
      { key: "response_latency", label: "Response" },
    ];
    const measured = rows.filter((r) => metrics.some((m) => r[m.key] && num(r[m.key].p99_ms) !== null));
    this.els.chartCard.dataset.empty = String(!measured.length);
    const max = Math.max(1, ...measured.flatMap((r) => metrics.map((m) => (r[m.key] && num(r[m.key].p99_ms)) || 0)));
    fill(this.els.chart, h("ul", { class: "pd-dist-list" }, measured.map((r) => h("li", { class: "pd-dist-row" },
      h("span", { class: "pd-dist-name" }, rowName(this.kind, r), r.model ? h("span", { class: "pd-model" }, String(r.model)) : null),
      metrics.map((m) => this.bar(r[m.key], m, max))))));
    this.drawText(measured, metrics);
  }

  bar(spread, metric, max) {
    const values = PCTS.map((p) => (spread ? num(spread[p]) : null));
    const words = values[2] === null ? "not measured"
      : `P50 ${fmt.ms(values[0])}, P95 ${fmt.ms(values[1])}, P99 ${fmt.ms(values[2])}`;
    const track = h("span", { class: "pd-dist-track", role: "img", "aria-label": `${metric.label}: ${words}` });
    // Widest first so each narrower percentile paints over it.
    [2, 1, 0].forEach((i) => {
      if (values[i] === null) return;
      const seg = h("span", { class: "pd-dist-seg", dataset: { pct: PCTS[i].slice(1, 3), metric: metric.key } });
      seg.style.width = `${Math.max(0.5, (values[i] / max) * 100)}%`;
      track.append(seg);
    });
    return h("div", { class: "pd-dist-bar", dataset: { metric: metric.key } },
      h("span", { class: "pd-dist-label" }, metric.label),
      track,
      h("span", { class: "pd-dist-values pd-num" }, values[2] === null ? fmt.DASH : values.map((v) => fmt.ms(v)).join(" · ")));
  }

  drawText(measured, metrics) {
    const summary = this.els.summary;
    if (!measured.length) {
      setText(summary, "No latency measured in this period.");
      fill(this.els.chartTable, h("p", { class: "pd-muted" }, "No data."));
      return;
    }
    const p95 = (r) => num(r.response_latency && r.response_latency.p95_ms);
    const ranked = measured.filter((r) => p95(r) !== null).sort((a, b) => p95(a) - p95(b));
    const label = (r) => `${rowName(this.kind, r)}${r.model ? ` ${r.model}` : ""}`;
    let text = `${fmt.num(measured.length)} provider${measured.length === 1 ? "" : "s"} measured.`;
    if (ranked.length) {
      text += ` Lowest response P95: ${label(ranked[0])}, ${fmt.ms(p95(ranked[0]))}.`;
      if (ranked.length > 1) text += ` Highest: ${label(ranked[ranked.length - 1])}, ${fmt.ms(p95(ranked[ranked.length - 1]))}.`;
    }
    setText(summary, text);
    const head = ["Provider", ...metrics.flatMap((m) => PCTS.map((p) => `${m.label} ${p.slice(0, 3).toUpperCase()}`)), "Calls measured"];
    fill(this.els.chartTable, h("table", { class: "pd-data-table" },
      h("caption", { class: "pd-visually-hidden" }, "Latency distribution per provider"),
      h("thead", null, h("tr", null, head.map((c, i) => h("th", { scope: "col", class: i ? "pd-num" : null }, c)))),
      h("tbody", null, measured.map((r) => h("tr", null,
        h("th", { scope: "row" }, label(r)),
        metrics.flatMap((m) => PCTS.map((p) => h("td", { class: "pd-num" }, fmt.ms(r[m.key] && r[m.key][p])))),
        h("td", { class: "pd-num" }, fmt.num(r.response_latency ? r.response_latency.calls : null)))))));
  }

  tableToggled() {
    const btn = this.els.toggle;
    const open = btn.getAttribute("aria-expanded") !== "true";
    btn.setAttribute("aria-expanded", String(open));
    setText(btn, open ? "Hide data table" : "Show data table");
    this.els.chartTable.hidden = !open;
  }
}
