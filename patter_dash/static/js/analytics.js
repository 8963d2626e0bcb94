/*
 * analytics.js — the "Analytics" view.
 *
 * Owns: the period and bucket controls, the summary tiles (total calls,
 * minutes, average duration, total cost, average and P95 latency, active
 * calls), and three charts: cost over time stacked by component (uPlot bars),
 * cost by component (an SVG donut drawn with createElementNS), and latency
 * over time (uPlot lines). Data comes from the overview and costs endpoints;
 * live events trigger a debounced refetch. Charts follow the light/dark theme.
 * Every chart also speaks without sight: a caption with its key figures
 * (total, peak, per component) and a toggle to the same numbers as a table.
 */

import { h, s, fill, setText } from "./dom.js";
import * as fmt from "./format.js";
import { urls, withParams, latestOnly, isAbort } from "./api.js";
import { schedule, throttle } from "./scheduler.js";

const COMPONENTS = [
  { key: "stt", label: "STT" },
  { key: "llm", label: "LLM" },
  { key: "tts", label: "TTS" },
  { key: "telephony", label: "Telephony" },
];

const RANGES = {
  "24h": { seconds: 86400, bucket: "hour" },
  "7d": { seconds: 7 * 86400, bucket: "day" },
  "30d": { seconds: 30 * 86400, bucket: "day" },
  all: { seconds: null, bucket: "day" },
};

const STEP = { hour: 3600, day: 86400 };
const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

function cssVar(name) {
  return getComputedStyle(document.getElementById("patter-dash")).getPropertyValue(name).trim() || "#888";
}

/** Axis labels in dollars with just enough decimals to tell the ticks apart. */
function moneyTicks(splits) {
  const step = splits.length > 1 ? Math.abs(splits[1] - splits[0]) : Math.abs(splits[0] || 1);
  let digits = 0;
  while (digits < 5 && Math.abs(Math.round(step * 10 ** digits) - step * 10 ** digits) > 1e-6) digits += 1;
  return splits.map((v) => (v === 0 ? "$0" : `$${v.toFixed(Math.max(digits, Math.abs(v) < 1 ? 2 : 0))}`));
}

export class AnalyticsView {
  /**
   * @param {object} els  {controls, tiles, costChart, latencyChart, donut, error, charts}
   *                      (charts: the element holding the <figure data-chart> cards)
   */
  constructor(els) {
    this.els = els;
    this.range = "24h";
    this.bucket = "hour";
    this.visible = false;
    this.stale = true;
    this.activeCount = 0;
    this.overview = null;
    this.costs = null;
    this.charts = { cost: null, latency: null };
    this.getOverview = latestOnly();
    this.getCosts = latestOnly();
    this.getQuality = latestOnly();
    this.quality = null;
    this.refreshSoon = throttle(() => this.refresh(), 3000, 1000);
    // "Last 24 h" slides with the clock: refresh once a minute while shown, even without new calls.
    setInterval(() => this.invalidate(), 60000);

    this.tileRefs = this.buildTiles();
    els.controls.addEventListener("click", (ev) => this.controlClicked(ev));
    els.charts.addEventListener("click", (ev) => this.tableToggled(ev));
    this.syncControls();

    const ro = new ResizeObserver(() => schedule("charts-resize", () => this.resize()));
    ro.observe(els.costChart);
    ro.observe(els.latencyChart);
    window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
      this.destroyCharts();
      this.draw();
    });
  }

  buildTiles() {
    const defs = [
      ["calls", "Total calls"],
      ["minutes", "Total minutes"],
      ["avgDuration", "Avg duration"],
      ["cost", "Total cost"],
      ["latency", "Avg latency"],
      ["p95", "P95 latency"],
      ["active", "Active calls"],
    ];
    const refs = {};
    fill(this.els.tiles, defs.map(([key, label]) => {
      refs[key] = h("span", { class: "pd-tile-value" }, fmt.DASH);
      return h("div", { class: "pd-card pd-tile", dataset: { tile: key } },
        h("span", { class: "pd-tile-label" }, label), refs[key]);
    }));
    return refs;
  }

  controlClicked(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest("button[data-range], button[data-bucket]") : null;
    if (!btn) return;
    if (btn.dataset.range) {
      this.range = btn.dataset.range;
      this.bucket = RANGES[this.range].bucket;
    } else {
      this.bucket = btn.dataset.bucket;
    }
    this.syncControls();
    this.destroyCharts();
    this.refresh();
  }

  syncControls() {
    for (const b of this.els.controls.querySelectorAll("button[data-range]")) {
      b.setAttribute("aria-pressed", String(b.dataset.range === this.range));
    }
    for (const b of this.els.controls.querySelectorAll("button[data-bucket]")) {
      b.setAttribute("aria-pressed", String(b.dataset.bucket === this.bucket));
    }
  }

  period() {
    const span = RANGES[this.range].seconds;
    const to = Math.ceil(Date.now() / 1000);
    return span === null ? {} : { from: to - span, to };
  }

  setVisible(visible) {
    this.visible = visible;
    if (visible) {
      if (this.stale) this.refresh();
      else schedule("analytics", () => this.draw());
    }
  }

  setActiveCount(n) {
    this.activeCount = n;
    setText(this.tileRefs.active, fmt.num(n));
  }

  /** Calls changed on the server: refetch soon if visible, else when shown. */
  invalidate() {
    this.stale = true;
    if (this.visible) this.refreshSoon();
  }

  async refresh() {
    this.stale = false;
    const period = this.period();
    try {
      const [ov, costs, quality] = await Promise.all([
        this.getOverview(withParams(urls.overview, period)),
        this.getCosts(withParams(urls.costs, { ...period, bucket: this.bucket })),
        this.getQuality(withParams(urls.quality, period)),
      ]);
      this.overview = (ov && ov.data) || null;
      this.costs = (costs && costs.data) || null;
      this.quality = (quality && quality.data) || null;
      this.els.error.hidden = true;
      schedule("analytics", () => this.draw());
    } catch (err) {
      if (isAbort(err)) return;
      this.stale = true;
      setText(this.els.error, `Could not load analytics${err && err.status ? ` (HTTP ${err.status})` : ""}.`);
      this.els.error.hidden = false;
    }
  }

  draw() {
    this.drawTiles();
    if (!this.visible) return;
    this.drawCostChart();
    this.drawLatencyChart();
    this.drawDonut();
    this.drawText();
    this.drawQuality();
  }

  /** The conversation-quality card: totals and averages over the period's finished calls. */
  drawQuality() {
    const q = this.quality;
    const list = document.getElementById("pd-chart-quality");
    const summary = document.getElementById("pd-chart-quality-summary");
    if (!list) return;
    if (!q || !q.calls_analyzed) {
      setText(summary, "No finished calls in this period.");
      fill(list);
      return;
    }
    const avg = q.averages || {};
    const totals = q.totals || {};
    const withFigure = q.calls_with || {};
    const rate = num(q.tool_failure_rate);
    setText(summary, `${fmt.num(q.calls_analyzed)} calls, ${fmt.num(q.from_recordings)} measured from their recording `
      + `(the others from their events). Dead air: silences over ${fmt.ms(q.dead_air_threshold_ms)}.`);
    const items = [
      ["Interruptions", `${fmt.num(totals.interruptions)} in ${fmt.num(withFigure.interruptions)} calls`],
      ["Dead air", `${fmt.num(totals.dead_air_count)} silences in ${fmt.num(withFigure.dead_air)} calls`],
      ["Avg dead air per call", fmt.ms(avg.avg_dead_air_ms)],
      ["Avg talk-over", fmt.ms(avg.avg_talk_over_ms)],
      ["Avg first word", fmt.ms(avg.avg_first_word_ms)],
      ["Tool calls", fmt.num(totals.tool_calls)],
      ["Failed tool calls", `${fmt.num(totals.tool_failures)}${rate === null ? "" : ` (${fmt.num1(rate * 100)} %)`}`],
      ["Calls with failed tools", fmt.num(withFigure.tool_failures)],
    ];
    fill(list, items.map(([k, v]) => h("div", { class: "pd-fact" }, h("dt", null, k), h("dd", null, v))));
  }

  /** "Show data table" ⇄ "Hide data table" for the chart whose button was pressed. */
  tableToggled(ev) {
    const btn = ev.target instanceof Element ? ev.target.closest(".pd-chart-table-toggle") : null;
    if (!btn) return;
    const open = btn.getAttribute("aria-expanded") !== "true";
    btn.setAttribute("aria-expanded", String(open));
    setText(btn, open ? "Hide data table" : "Show data table");
    document.getElementById(btn.getAttribute("aria-controls")).hidden = !open;
  }

  /** Captions with the key figures, and the data tables, for every chart. */
  drawText() {
    const { step, points } = this.buckets();
    const unit = step === 3600 ? "hour" : "day";
    const when = (t) => fmt.shortDateTime(t);
    const cards = this.els.charts;
    const part = (key) => ({
      summary: cards.querySelector(`[data-chart="${key}"] .pd-chart-summary`),
      table: cards.querySelector(`[data-chart="${key}"] .pd-chart-table`),
    });

    // cost over time
    const cost = part("cost");
    const withCost = points.filter((p) => p.cost && num(p.cost.total) !== null);
    if (!withCost.length) {
      setText(cost.summary, "No calls in this period.");
      fill(cost.table, h("p", { class: "pd-muted" }, "No data."));
    } else {
      const total = withCost.reduce((a, p) => a + p.cost.total, 0);
      const peak = withCost.reduce((a, p) => (p.cost.total > a.cost.total ? p : a));
      const byComp = COMPONENTS.map((c) => `${c.label} ${fmt.money(withCost.reduce((a, p) => a + (num(p.cost[c.key]) || 0), 0))}`);
      setText(cost.summary, `${fmt.money(total)} in total over ${fmt.num(withCost.length)} ${unit}${withCost.length === 1 ? "" : "s"} with calls; `
        + `highest ${unit} ${when(peak.t)} at ${fmt.money(peak.cost.total)}. By component: ${byComp.join(", ")}.`);
      fill(cost.table, this.table(`Cost per ${unit} by component`,
        [unit === "hour" ? "Hour" : "Day", "Calls", ...COMPONENTS.map((c) => c.label), "Total"],
        withCost.map((p) => [when(p.t), fmt.num(p.calls), ...COMPONENTS.map((c) => fmt.money(num(p.cost[c.key]))), fmt.money(p.cost.total)])));
    }

    // latency over time
    const lat = part("latency");
    const withLat = points.filter((p) => num(p.avg_latency_ms) !== null || num(p.p95_latency_ms) !== null);
    if (!withLat.length) {
      setText(lat.summary, "No latency measured in this period.");
      fill(lat.table, h("p", { class: "pd-muted" }, "No data."));
    } else {
      const o = this.overview || {};
      const peak = withLat.reduce((a, p) => ((num(p.p95_latency_ms) || 0) > (num(a.p95_latency_ms) || 0) ? p : a));
      setText(lat.summary, `Average ${fmt.ms(o.avg_latency_ms)}, P95 ${fmt.ms(o.p95_latency_ms)} over the period; `
        + `highest P95 ${fmt.ms(peak.p95_latency_ms)} (${unit} ${when(peak.t)}).`);
      fill(lat.table, this.table(`Response latency per ${unit}`,
        [unit === "hour" ? "Hour" : "Day", "Average", "P95"],
        withLat.map((p) => [when(p.t), fmt.ms(p.avg_latency_ms), fmt.ms(p.p95_latency_ms)])));
    }

    // cost by component
    const comp = part("components");
    const o = this.overview || {};
    const b = o.cost_breakdown || (this.costs && this.costs.breakdown) || {};
    const values = COMPONENTS.map((c) => Math.max(0, num(b[c.key]) || 0));
    const total = values.reduce((a, v) => a + v, 0);
    const pct = (v) => (total ? `${Math.round((v / total) * 100)}%` : fmt.DASH);
    if (!total) {
      setText(comp.summary, "No costs in this period.");
      fill(comp.table, h("p", { class: "pd-muted" }, "No data."));
    } else {
      setText(comp.summary, `${fmt.money(num(o.total_cost) ?? total)} in total: `
        + COMPONENTS.map((c, i) => `${c.label} ${fmt.money(values[i])} (${pct(values[i])})`).join(", ") + ".");
      fill(comp.table, this.table("Cost by component",
        ["Component", "Cost", "Share"], COMPONENTS.map((c, i) => [c.label, fmt.money(values[i]), pct(values[i])])));
    }
  }

  /** A data table: the first column heads its row, numbers align right. */
  table(caption, head, rows) {
    return h("table", { class: "pd-data-table" },
      h("caption", { class: "pd-visually-hidden" }, caption),
      h("thead", null, h("tr", null, head.map((c, i) => h("th", { scope: "col", class: i ? "pd-num" : null }, c)))),
      h("tbody", null, rows.map((r) => h("tr", null,
        r.map((c, i) => (i ? h("td", { class: "pd-num" }, c) : h("th", { scope: "row" }, c)))))));
  }

  drawTiles() {
    const o = this.overview || {};
    const r = this.tileRefs;
    setText(r.calls, fmt.num(o.total_calls));
    setText(r.minutes, fmt.num1(o.total_minutes));
    setText(r.avgDuration, fmt.duration(o.avg_duration));
    setText(r.cost, fmt.money(o.total_cost));
    setText(r.latency, fmt.ms(o.avg_latency_ms));
    setText(r.p95, fmt.ms(o.p95_latency_ms));
    setText(r.active, fmt.num(this.activeCount));
  }

  /** The series with empty buckets filled in, so time gaps show as gaps. */
  buckets() {
    const c = this.costs || {};
    const step = STEP[c.bucket] || STEP[this.bucket];
    const series = (Array.isArray(c.series) ? c.series : []).filter((p) => num(p.t) !== null).sort((a, b) => a.t - b.t);
    if (!series.length) return { step, points: [] };
    const byT = new Map(series.map((p) => [p.t, p]));
    const period = c.period || {};
    const toEpoch = (v) => (num(v) !== null ? v : typeof v === "string" && v ? Date.parse(v) / 1000 : null);
    const first = series[0].t;
    const last = series[series.length - 1].t;
    const from = toEpoch(period.from);
    const to = toEpoch(period.to);
    let start = first;
    if (from !== null && from < first) start = first - Math.floor((first - from) / step) * step;
    let end = last;
    if (to !== null && to > last) end = last + Math.floor((to - last) / step) * step;
    if ((end - start) / step > 1500 || series.some((p) => (p.t - first) % step !== 0)) {
      return { step, points: series };
    }
    const points = [];
    for (let t = start; t <= end; t += step) points.push(byT.get(t) || { t, calls: 0, minutes: 0, cost: null });
    return { step, points };
  }

  chartWidth(el) {
    return Math.max(240, Math.floor(el.clientWidth));
  }

  chartHeight() {
    return window.matchMedia("(max-width: 640px)").matches ? 200 : 260;
  }

  baseOpts(el, step) {
    const text = cssVar("--pd-text-muted");
    const grid = cssVar("--pd-grid");
    const axis = {
      stroke: text,
      grid: { stroke: grid, width: 1 },
      ticks: { stroke: grid, width: 1, size: 4 },
      font: "12px system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    };
    return {
      width: this.chartWidth(el),
      height: this.chartHeight(),
      legend: { show: true, live: true },
      cursor: { points: { size: 7 }, drag: { x: false, y: false } },
      scales: { x: { time: true, range: (u, min, max) => [min - step / 2, max + step / 2] } },
      axes: [{ ...axis, space: 80, values: (u, splits, ai, space, incr) => fmt.axisTicks(splits, incr) }, { ...axis }],
    };
  }

  drawCostChart() {
    const el = this.els.costChart;
    const { step, points } = this.buckets();
    el.closest(".pd-chart-card").dataset.empty = String(points.length === 0);
    if (!points.length) {
      this.destroyChart("cost");
      return;
    }
    const xs = points.map((p) => p.t);
    const raw = {};
    for (const c of COMPONENTS) raw[c.key] = points.map((p) => (p.cost ? num(p.cost[c.key]) : null));
    // Stack bottom→top: STT, LLM, TTS, Telephony. Draw tallest first so each lower layer paints over it.
    const cum = [];
    let acc = points.map(() => 0);
    for (const c of COMPONENTS) {
      acc = acc.map((a, i) => a + (raw[c.key][i] || 0));
      cum.push(acc);
    }
    const order = [3, 2, 1, 0];
    const data = [xs, ...order.map((i) => cum[i].map((v, j) => (points[j].cost ? v : null)))];
    const fmtRaw = (key) => (u, v, si, idx) => (idx == null || !u._pdRaw ? fmt.DASH : fmt.money(u._pdRaw[key][idx]));

    if (this.charts.cost && this.charts.cost._pdLen === xs.length && this.charts.cost._pdStep === step) {
      this.charts.cost._pdRaw = raw;
      this.charts.cost.setData(data);
      return;
    }
    this.destroyChart("cost");
    const uPlot = window.uPlot;
    const opts = this.baseOpts(el, step);
    const barWidth = Math.max(2, Math.min(36, (this.chartWidth(el) - 80) / xs.length * 0.7));
    opts.axes[1].values = (u, splits) => moneyTicks(splits);
    opts.axes[1].size = 64;
    opts.scales.y = { range: (u, min, mx) => [0, mx > 0 ? mx * 1.1 : 1] };
    opts.series = [
      { label: step === 3600 ? "Hour" : "Day", value: (u, v) => (v == null ? fmt.DASH : fmt.shortDateTime(v)) },
      ...order.map((i) => {
        const c = COMPONENTS[i];
        const color = cssVar(`--pd-c-${c.key}`);
        return {
          label: c.label,
          stroke: color,
          fill: color,
          width: 0,
          points: { show: false },
          paths: uPlot.paths.bars({ size: [0.7, barWidth], align: 0 }),
          value: fmtRaw(c.key),
        };
      }),
    ];
    const u = new uPlot(opts, data, el);
    u._pdLen = xs.length;
    u._pdStep = step;
    u._pdRaw = raw;
    this.charts.cost = u;
  }

  drawLatencyChart() {
    const el = this.els.latencyChart;
    const { step, points } = this.buckets();
    const has = points.some((p) => num(p.avg_latency_ms) !== null || num(p.p95_latency_ms) !== null);
    el.closest(".pd-chart-card").dataset.empty = String(!has);
    if (!has) {
      this.destroyChart("latency");
      return;
    }
    const xs = points.map((p) => p.t);
    const data = [xs, points.map((p) => num(p.avg_latency_ms)), points.map((p) => num(p.p95_latency_ms))];
    if (this.charts.latency && this.charts.latency._pdLen === xs.length && this.charts.latency._pdStep === step) {
      this.charts.latency.setData(data);
      return;
    }
    this.destroyChart("latency");
    const uPlot = window.uPlot;
    const opts = this.baseOpts(el, step);
    opts.axes[1].values = (u, splits) => splits.map((v) => `${Math.round(v)} ms`);
    opts.axes[1].size = 64;
    opts.scales.y = { range: (u, min, mx) => [0, mx > 0 ? mx * 1.15 : 1] };
    const avg = cssVar("--pd-c-avg");
    const p95 = cssVar("--pd-c-p95");
    opts.series = [
      { label: step === 3600 ? "Hour" : "Day", value: (u, v) => (v == null ? fmt.DASH : fmt.shortDateTime(v)) },
      { label: "Average", stroke: avg, width: 2, points: { show: true, size: 5, fill: avg }, spanGaps: false, value: (u, v) => fmt.ms(v) },
      { label: "P95", stroke: p95, width: 2, dash: [6, 4], points: { show: true, size: 5, fill: p95 }, spanGaps: false, value: (u, v) => fmt.ms(v) },
    ];
    const u = new uPlot(opts, data, el);
    u._pdLen = xs.length;
    u._pdStep = step;
    this.charts.latency = u;
  }

  drawDonut() {
    const o = this.overview || {};
    const b = o.cost_breakdown || (this.costs && this.costs.breakdown) || {};
    const values = COMPONENTS.map((c) => Math.max(0, num(b[c.key]) || 0));
    const total = values.reduce((a, v) => a + v, 0);
    const shownTotal = num(o.total_cost) ?? total;
    const R = 62;
    const C = 2 * Math.PI * R;
    const ring = s("g", { transform: "rotate(-90 80 80)" },
      s("circle", { class: "pd-donut-track", cx: "80", cy: "80", r: String(R) }));
    let offset = 0;
    values.forEach((v, i) => {
      if (!v || !total) return;
      const len = (v / total) * C;
      ring.append(s("circle", {
        class: "pd-donut-seg",
        "data-comp": COMPONENTS[i].key,
        cx: "80", cy: "80", r: String(R),
        "stroke-dasharray": `${len} ${C - len}`,
        "stroke-dashoffset": String(-offset),
      }, s("title", null, `${COMPONENTS[i].label}: ${fmt.money(v)}`)));
      offset += len;
    });
    const svg = s("svg", { class: "pd-donut-svg", viewBox: "0 0 160 160", role: "img", "aria-label": `Cost by component, total ${fmt.money(shownTotal)}` },
      ring,
      s("text", { class: "pd-donut-total", x: "80", y: "78", "text-anchor": "middle" }, fmt.money(shownTotal)),
      s("text", { class: "pd-donut-caption", x: "80", y: "98", "text-anchor": "middle" }, "total"));
    const legend = h("ul", { class: "pd-donut-legend" }, COMPONENTS.map((c, i) => h("li", { dataset: { comp: c.key } },
      h("span", { class: "pd-swatch", dataset: { comp: c.key } }),
      h("span", { class: "pd-donut-name" }, c.label),
      h("span", { class: "pd-donut-value pd-num" }, fmt.money(values[i])),
      h("span", { class: "pd-donut-pct pd-num" }, total ? `${Math.round((values[i] / total) * 100)}%` : fmt.DASH))));
    this.els.donut.closest(".pd-chart-card").dataset.empty = String(!total);
    fill(this.els.donut, svg, legend);
  }

  resize() {
    if (!this.visible) return;
    for (const [key, el] of [["cost", this.els.costChart], ["latency", this.els.latencyChart]]) {
      const u = this.charts[key];
      if (u && el.clientWidth > 0) {
        const width = this.chartWidth(el);
        const height = this.chartHeight();
        if (u.width !== width || u.height !== height) u.setSize({ width, height });
      }
    }
  }

  destroyChart(key) {
    if (this.charts[key]) {
      this.charts[key].destroy();
      this.charts[key] = null;
    }
  }

  destroyCharts() {
    this.destroyChart("cost");
    this.destroyChart("latency");
  }
}
