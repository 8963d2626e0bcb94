/*
 * history.js — the "Call history" view.
 *
 * Owns: the filter form (status, direction, voice mode, date range, free-text
 * search), the server-side paginated table of calls, the pager, and the CSV /
 * JSON export links, which always carry the current filters. Paging and
 * filtering happen on the server; this module only asks and draws.
 * The filters and the page also live in the address (#history?status=…), so a
 * filtered view can be shared: urlParams() says them, applyUrl() takes them.
 */

import { h, setText, fill } from "./dom.js";
import * as fmt from "./format.js";
import { urls, withParams, latestOnly, isAbort } from "./api.js";
import { schedule, debounce, throttle } from "./scheduler.js";
import { statusBadge, directionTag, modeChip } from "./calls.js";
import { marked } from "./search.js";

const COLUMNS = [
  { key: "started", label: "Started" },
  { key: "caller", label: "From" },
  { key: "callee", label: "To" },
  { key: "direction", label: "Direction" },
  { key: "status", label: "Status" },
  { key: "duration", label: "Duration", num: true },
  { key: "cost", label: "Cost", num: true },
  { key: "latency", label: "Avg latency", num: true },
  { key: "p95", label: "P95 latency", num: true },
  { key: "providers", label: "Providers" },
  { key: "mode", label: "Voice mode" },
  { key: "tags", label: "Tags" },
];

// History lists finished calls; these are the final statuses Patter reports.
const BASE_STATUSES = ["completed", "no-answer", "busy", "failed", "canceled"];
const BASE_MODES = ["pipeline", "openai_realtime", "elevenlabs_convai"]; // plus any seen in data

const RANGES = ["min_duration", "max_duration", "min_cost", "max_cost", "min_latency", "max_latency"];
const TEXTS = ["tag", "provider", "model", ...RANGES];
const FILTERS = ["q", "status", "direction", "provider_mode", "has_notes", ...TEXTS, "from", "to"];
const PAGE_SIZES = [25, 50, 100];

/** Epoch seconds → a datetime-local value in the browser's zone (the inverse of localInputToEpoch). */
function epochToLocalInput(value) {
  const t = Number(value);
  if (!Number.isFinite(t) || String(value).trim() === "") return "";
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

/** datetime-local value ("2025-01-31T14:05") → epoch seconds in the browser's zone. */
function localInputToEpoch(value) {
  if (!value) return "";
  const t = new Date(value).getTime();
  return Number.isFinite(t) ? Math.floor(t / 1000) : "";
}

export class HistoryView {
  /**
   * @param {object} els   {form, body, summary, prev, next, pageSize, csv, json, error, table}
   * @param {object} opts  {onOpen(callId, row), onState(params)}: onState after filters or page change
   */
  constructor(els, opts) {
    this.els = els;
    this.opts = opts;
    this.offset = 0;
    this.limit = Number(els.pageSize.value) || 25;
    this.total = null;
    // False when a search matched more stored calls than the server counts: the total is a lower bound.
    this.totalExact = true;
    this.rows = []; // items currently shown
    this.fetcher = latestOnly();
    this.knownStatuses = new Set(BASE_STATUSES);
    this.knownModes = new Set(BASE_MODES);
    this.loaded = false;
    this.refreshSoon = throttle(() => this.load(), 1000, 150);
    this.retryTimer = null;

    this.buildHead();
    this.syncOptions();

    const form = els.form;
    const searchChanged = debounce(() => this.filtersChanged(), 300);
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      searchChanged.cancel();
      this.filtersChanged();
    });
    // Typed filters apply as one types (a field alone in a form gets no Enter-to-submit); choices at once.
    const typed = (ev) => ev.target && (ev.target.name === "q" || TEXTS.includes(ev.target.name));
    form.addEventListener("input", (ev) => {
      if (typed(ev)) searchChanged();
    });
    form.addEventListener("change", (ev) => {
      if (ev.target && !typed(ev)) this.filtersChanged();
    });
    form.addEventListener("reset", () => {
      searchChanged.cancel();
      // The form resets its controls after this event; read them afterwards.
      setTimeout(() => this.filtersChanged(), 0);
    });
    const toggle = form.querySelector(".pd-filters-toggle");
    if (toggle) {
      toggle.addEventListener("click", () => {
        const open = form.dataset.open !== "true";
        form.dataset.open = String(open);
        toggle.setAttribute("aria-expanded", String(open));
      });
    }
    els.prev.addEventListener("click", () => this.page(-1));
    els.next.addEventListener("click", () => this.page(1));
    els.pageSize.addEventListener("change", () => {
      this.limit = Number(els.pageSize.value) || 25;
      this.offset = 0;
      this.stateChanged();
      this.load();
    });
    els.body.addEventListener("click", (ev) => this.rowActivated(ev));
    els.body.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" || ev.key === " ") {
        ev.preventDefault();
        this.rowActivated(ev);
      }
    });
    this.updateExports();
  }

  buildHead() {
    const row = h("tr", null, COLUMNS.map((c) => h("th", { scope: "col", class: c.num ? "pd-num" : null }, c.label)));
    fill(this.els.table.tHead || this.els.table.createTHead(), row);
  }

  /** Current filters as API query parameters. */
  filters() {
    const f = new FormData(this.els.form);
    const get = (k) => String(f.get(k) || "").trim();
    return {
      q: get("q"),
      status: get("status"),
      direction: get("direction"),
      provider_mode: get("provider_mode"),
      has_notes: get("has_notes"),
      ...Object.fromEntries(TEXTS.map((k) => [k, get(k)])),
      from: localInputToEpoch(get("from")),
      to: localInputToEpoch(get("to")),
    };
  }

  hasFilters() {
    return Object.values(this.filters()).some((v) => v !== "");
  }

  filtersChanged() {
    const f = this.filters();
    this.els.form.dataset.active = String(Object.entries(f).some(([k, v]) => k !== "q" && v !== ""));
    this.offset = 0;
    this.updateExports();
    this.stateChanged();
    this.load();
  }

  /** The filters and page as address parameters: only what differs from the default, times in epoch seconds. */
  urlParams() {
    const f = this.filters();
    const out = {};
    for (const k of FILTERS) if (f[k] !== "") out[k] = String(f[k]);
    if (this.limit !== 25) out.limit = String(this.limit);
    if (this.offset) out.offset = String(this.offset);
    return out;
  }

  stateChanged() {
    if (this.opts.onState) this.opts.onState(this.urlParams());
  }

  /** Take filters and page from the address; reload when they differ from what is shown. */
  applyUrl(params) {
    const wanted = new URLSearchParams(params);
    const current = new URLSearchParams(this.urlParams());
    wanted.sort();
    current.sort();
    if (wanted.toString() === current.toString()) return false;
    const form = this.els.form;
    const status = wanted.get("status") || "";
    const mode = wanted.get("provider_mode") || "";
    if (status) this.knownStatuses.add(status);
    if (mode) this.knownModes.add(mode);
    this.syncOptions();
    form.elements.q.value = wanted.get("q") || "";
    form.elements.status.value = status;
    form.elements.direction.value = wanted.get("direction") || "";
    form.elements.provider_mode.value = mode;
    for (const k of TEXTS) form.elements[k].value = wanted.get(k) || "";
    form.elements.has_notes.value = ["0", "1"].includes(wanted.get("has_notes")) ? wanted.get("has_notes") : "";
    form.elements.from.value = epochToLocalInput(wanted.get("from") || "");
    form.elements.to.value = epochToLocalInput(wanted.get("to") || "");
    const limit = Number(wanted.get("limit"));
    this.limit = PAGE_SIZES.includes(limit) ? limit : 25;
    this.els.pageSize.value = String(this.limit);
    const offset = Number(wanted.get("offset"));
    this.offset = Number.isInteger(offset) && offset > 0 ? offset : 0;
    const f = this.filters();
    form.dataset.active = String(Object.entries(f).some(([k, v]) => k !== "q" && v !== ""));
    this.updateExports();
    this.stateChanged();
    if (this.loaded) this.load();
    return true;
  }

  /** Move focus to the next (delta 1) or previous (-1) row; from outside the table, to the first row. */
  moveFocus(delta) {
    const rows = Array.from(this.els.body.querySelectorAll("tr.pd-row"));
    if (!rows.length) return;
    const at = rows.indexOf(document.activeElement);
    const next = at === -1 ? 0 : Math.min(rows.length - 1, Math.max(0, at + delta));
    rows[next].focus();
  }

  updateExports() {
    const f = this.filters();
    this.els.csv.href = withParams(urls.exportCsv, f);
    this.els.json.href = withParams(urls.exportJson, f);
  }

  page(delta) {
    const next = Math.max(0, this.offset + delta * this.limit);
    if (delta > 0 && this.total !== null && this.totalExact && next >= this.total) return;
    this.offset = next;
    this.stateChanged();
    this.load();
  }

  async load() {
    const url = withParams(urls.calls, { ...this.filters(), limit: this.limit, offset: this.offset });
    this.els.table.setAttribute("aria-busy", "true");
    try {
      const body = await this.fetcher(url);
      const items = Array.isArray(body && body.data) ? body.data : [];
      const pg = (body && body.pagination) || {};
      this.total = typeof pg.total === "number" ? pg.total : null;
      this.totalExact = pg.total_exact !== false;
      if (!items.length && this.offset > 0 && this.total) {
        // The calls of this page were deleted: show the last page that has any.
        this.offset = Math.floor((this.total - 1) / this.limit) * this.limit;
        this.stateChanged();
        await this.load();
        return;
      }
      this.rows = items;
      this.loaded = true;
      this.els.error.hidden = true;
      for (const item of items) this.learn(item);
      schedule("history", () => this.draw());
    } catch (err) {
      if (isAbort(err)) return;
      setText(this.els.error, `Could not load call history${err && err.status ? ` (HTTP ${err.status})` : ""}. Retrying when the connection is back.`);
      this.els.error.hidden = false;
      // A network failure or a server error passes; a 4xx (a bad filter) would only repeat.
      if (!err || !err.status || err.status >= 500) this.retryLater();
    } finally {
      this.els.table.removeAttribute("aria-busy");
    }
  }

  retryLater() {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.refreshSoon();
    }, 5000);
  }

  /** Remember statuses and voice modes seen, so the filter menus offer them. */
  learn(item) {
    let changed = false;
    if (item.status && !this.knownStatuses.has(item.status)) {
      this.knownStatuses.add(String(item.status));
      changed = true;
    }
    if (item.provider_mode && !this.knownModes.has(item.provider_mode)) {
      this.knownModes.add(String(item.provider_mode));
      changed = true;
    }
    if (changed) schedule("history-options", () => this.syncOptions());
  }

  learnStatuses(statuses) {
    for (const s of statuses) this.learn({ status: s });
  }

  syncOptions() {
    const sync = (select, values, allLabel, labeller) => {
      const current = select.value;
      const opts = [h("option", { value: "" }, allLabel)];
      for (const v of Array.from(values).sort()) opts.push(h("option", { value: v }, labeller(v)));
      fill(select, opts);
      select.value = current;
    };
    sync(this.els.form.elements.status, this.knownStatuses, "All statuses", fmt.label);
    sync(this.els.form.elements.provider_mode, this.knownModes, "All voice modes", fmt.mode);
  }

  /** A call just ended: show it at the top at once when that is where it belongs, then reconcile. */
  noteEnded(call) {
    if (call && this.loaded && this.offset === 0 && !this.hasFilters() && call.call_id != null) {
      const id = String(call.call_id);
      const rows = this.rows.filter((r) => String(r.call_id) !== id);
      rows.unshift(call);
      if (rows.length > this.limit) rows.length = this.limit;
      const isNew = rows.length !== this.rows.length || !this.rows.some((r) => String(r.call_id) === id);
      this.rows = rows;
      if (isNew && this.total !== null) this.total += 1;
      this.learn(call);
      schedule("history", () => this.draw());
    }
    this.refreshSoon();
  }

  /** Calls were deleted: their rows go now, and the page is refilled from the server. */
  noteDeleted(ids) {
    const gone = new Set(ids);
    const rows = this.rows.filter((r) => !gone.has(String(r.call_id)));
    const removed = this.rows.length - rows.length;
    if (removed) {
      this.rows = rows;
      if (this.total !== null) this.total = Math.max(this.offset + rows.length, this.total - removed);
      schedule("history", () => this.draw());
    }
    // Rows of other pages may be among them (the total), or this page has room for the next ones.
    if (this.loaded) this.refreshSoon();
  }

  /** A call's tags, notes or rating changed: its row shows the new summary (a filter may now leave it out). */
  noteUpdated(call) {
    if (!call || call.call_id == null) return;
    const id = String(call.call_id);
    const at = this.rows.findIndex((r) => String(r.call_id) === id);
    if (at !== -1) {
      this.rows[at] = { ...this.rows[at], tags: call.tags, notes: call.notes, rating: call.rating };
      schedule("history", () => this.draw());
    }
    const f = this.filters();
    if (f.tag !== "" || f.has_notes !== "") this.refreshSoon();
  }

  /** Something changed on the server (a call started, a resync): reload the page we show. */
  refresh() {
    this.refreshSoon();
  }

  rowActivated(ev) {
    const tr = ev.target instanceof Element ? ev.target.closest("tr[data-call-id]") : null;
    if (tr) this.opts.onOpen(tr.dataset.callId, tr);
  }

  draw() {
    const { body } = this.els;
    // A redraw replaces every row: keep keyboard focus on the same call (or, if it went, on the row now in its place).
    const active = document.activeElement;
    const focusedRow = active instanceof HTMLTableRowElement && active.classList.contains("pd-row") && body.contains(active) ? active : null;
    const focusId = focusedRow ? focusedRow.dataset.callId : null;
    const focusAt = focusedRow ? Array.from(body.querySelectorAll("tr.pd-row")).indexOf(focusedRow) : -1;
    if (!this.rows.length) {
      fill(body, h("tr", { class: "pd-empty-row" },
        h("td", { colspan: String(COLUMNS.length) },
          this.hasFilters() ? "No calls match these filters." : "No finished calls yet. Calls appear here when they end.")));
    } else {
      fill(body, this.rows.flatMap((item) => [this.row(item), this.matchRow(item)]).filter(Boolean));
    }
    const shown = this.rows.length;
    const from = shown ? this.offset + 1 : 0;
    const to = this.offset + shown;
    const total = this.total === null ? "" : ` of ${this.totalExact ? "" : "at least "}${fmt.num(this.total)}`;
    setText(this.els.summary, shown ? `${fmt.num(from)}–${fmt.num(to)}${total} calls` : `0${total} calls`);
    this.els.prev.disabled = this.offset === 0;
    this.els.next.disabled = this.total !== null && this.totalExact ? to >= this.total : shown < this.limit;
    if (focusedRow) {
      const rows = Array.from(body.querySelectorAll("tr.pd-row"));
      const again = rows.find((r) => r.dataset.callId === focusId) || rows[Math.min(focusAt, rows.length - 1)];
      const target = again || body.closest(".pd-table-wrap");
      if (target) target.focus({ preventScroll: true });
    }
  }

  /** Under a searched row, the line where q was found, the terms marked (text nodes and <mark>, never HTML). */
  matchRow(item) {
    const m = item.match;
    if (!m || typeof m.text !== "string" || !m.text) return null;
    return h("tr", { class: "pd-match-row", dataset: { callId: String(item.call_id) } },
      h("td", { colspan: String(COLUMNS.length) },
        h("span", { class: "pd-match-who" }, `${fmt.speaker(m.role)}: `),
        h("span", { class: "pd-match-text" }, marked(m.text, m.spans))));
  }

  row(item) {
    const cost = item.cost && typeof item.cost.total === "number" ? item.cost.total : null;
    const cell = (key, content, cls) => h("td", { class: cls, dataset: { key, label: COLUMNS.find((c) => c.key === key).label } }, content);
    const tr = h("tr", { tabindex: "0", class: "pd-row", dataset: { callId: String(item.call_id) } },
      cell("started", h("time", { datetime: fmt.iso(item.started_at), title: fmt.dateTime(item.started_at) }, fmt.tableDateTime(item.started_at)), "pd-nowrap"),
      cell("caller", item.caller || fmt.DASH, "pd-party-cell"),
      cell("callee", item.callee || fmt.DASH, "pd-party-cell"),
      cell("direction", directionTag(item.direction)),
      cell("status", statusBadge(item.status)),
      cell("duration", typeof item.duration_seconds === "number" ? fmt.duration(item.duration_seconds) : fmt.DASH, "pd-num"),
      cell("cost", fmt.money(cost), "pd-num"),
      cell("latency", fmt.ms(item.latency_avg_ms), "pd-num"),
      cell("p95", fmt.ms(item.latency_p95_ms), "pd-num"),
      cell("providers", fmt.providerList(item.providers), "pd-providers"),
      cell("mode", item.provider_mode ? modeChip(item.provider_mode) : fmt.DASH),
      cell("tags", Array.isArray(item.tags) && item.tags.length
        ? item.tags.map((t) => h("span", { class: "pd-chip pd-chip-tag" }, String(t)))
        : fmt.DASH, "pd-tags-cell"));
    tr.setAttribute("aria-label", `Call from ${item.caller || "unknown"} to ${item.callee || "unknown"}; open details`);
    return tr;
  }
}
