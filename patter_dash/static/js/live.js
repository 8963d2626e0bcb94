/*
 * live.js — the "Live calls" view.
 *
 * Owns: the in-memory model of the shown page of active calls (item +
 * transcript), applying pages from the active-calls endpoint and call events
 * from the stream, and the card per shown call (caller, callee, direction,
 * status, ticking duration, voice mode, providers, growing transcript). DOM
 * work is batched per animation frame through scheduler.js; durations tick
 * once a second.
 *
 * Only one page (PAGE_SIZE calls, newest first) is ever held or drawn: a
 * server with 100,000 live calls must not make the browser fetch or render
 * them all. Stream events update the shown cards; a change this page cannot
 * place by itself (a new call while the page is full, or a call ending that
 * may leave a gap) asks the app for a fresh page through opts.onStale().
 */

import { h, setText, fill } from "./dom.js";
import * as fmt from "./format.js";
import { schedule } from "./scheduler.js";
import {
  isEnded, statusBadge, directionTag, modeChip, elapsed, lineKey, normLine, placeLine, transcriptLine,
} from "./calls.js";

const MAX_LINES = 200; // per live card; older lines stay in the call's detail view
export const PAGE_SIZE = 50; // live calls per page

export class LiveView {
  /**
   * @param {HTMLElement} grid     container of the cards
   * @param {HTMLElement} empty    "no active calls" message
   * @param {object} opts          {onOpen(callId), onCount(total, first, shown), onStale()}
   */
  constructor(grid, empty, opts) {
    this.grid = grid;
    this.empty = empty;
    this.opts = opts;
    this.calls = new Map(); // call_id → entry, in display order (newest first)
    this.offset = 0; // the shown page
    this.total = 0; // live calls on the server, all pages
    this.removed = new Set(); // entries whose card must go
    this.dirty = new Set();
    this.timer = setInterval(() => this.tick(), 1000);
  }

  get count() {
    return this.total;
  }

  /** Whether every live call is on this page, so an unknown call id is a new call. */
  get showsAll() {
    return this.offset === 0 && this.calls.size >= this.total && this.calls.size < PAGE_SIZE;
  }

  has(callId) {
    return this.calls.has(callId);
  }

  /** Replace the whole model with one page of the active-calls endpoint's answer. */
  applySnapshot(items, pagination) {
    const page = new Map();
    for (const item of items.slice(0, PAGE_SIZE)) {
      if (!item || item.call_id == null || isEnded(item)) continue;
      const id = String(item.call_id);
      const entry = this.upsert(item);
      page.set(id, entry);
      for (const line of Array.isArray(item.transcript) ? item.transcript : []) this.addLine(entry, normLine(line));
    }
    for (const [id, entry] of this.calls) {
      if (!page.has(id)) this.remove(id, entry);
    }
    this.calls = page;
    const total = pagination && Number.isInteger(pagination.total) ? pagination.total : page.size;
    this.total = Math.max(total, page.size);
    if (pagination && Number.isInteger(pagination.offset)) this.offset = pagination.offset;
    this.reorder = true;
    this.render();
  }

  /**
   * Apply one stream event. Returns true when the event ended the call
   * (so the caller can refresh history and analytics).
   */
  applyEvent(type, data) {
    const id = data.call_id != null ? String(data.call_id) : data.call && data.call.call_id != null ? String(data.call.call_id) : null;
    if (id === null) return false;
    const call = data.call && typeof data.call === "object" ? data.call : null;
    if (type === "call_end" || (call && isEnded(call))) {
      const entry = this.calls.get(id);
      if (entry) {
        this.remove(id, entry);
        this.total = Math.max(this.calls.size, this.total - 1);
        // A later page's first call moves up into the gap.
        if (this.offset + this.calls.size < this.total) this.opts.onStale();
      } else if (type === "call_end" && !this.showsAll) {
        this.opts.onStale(); // maybe a live call on another page: the total changed
      }
      this.render();
      return true;
    }
    let entry = this.calls.get(id);
    if (!entry) {
      if (!call) return false;
      if (!this.showsAll) {
        // Not shown: a call on another page, or a new one that belongs on top of a full first page.
        if (type === "call_start" || type === "call_initiated") this.opts.onStale();
        return false;
      }
      if (typeof call.started_at !== "number") {
        // A line or a turn carries only the fields it changes, and a card needs the whole summary.
        this.opts.onStale();
        return false;
      }
      entry = this.upsert(call);
      this.calls = new Map([[id, entry], ...this.calls]); // newest first
      this.total += 1;
      this.reorder = true;
    } else if (call) {
      this.upsert(call);
    }
    // Exactly the lines the server stored for this event: its rule decides what is a repeat.
    if (type === "transcript" && data.line) {
      this.addLine(entry, normLine(data.line));
    } else if (type === "turn" && Array.isArray(data.lines)) {
      for (const line of data.lines) this.addLine(entry, normLine(line));
    }
    this.render();
    return false;
  }

  /** Calls were deleted: their cards go; a later page may have calls to move up. */
  removeCalls(ids) {
    let removed = 0;
    for (const id of ids) {
      const entry = this.calls.get(id);
      if (entry) {
        this.remove(id, entry);
        removed += 1;
      }
    }
    if (removed) {
      this.total = Math.max(this.calls.size, this.total - removed);
      this.render();
    }
    // Not every live call is on this page: one of another page may be among them (the total changes).
    if ((removed && this.offset + this.calls.size < this.total) || (!removed && !this.showsAll)) this.opts.onStale();
  }

  upsert(item) {
    const id = String(item.call_id);
    let entry = this.calls.get(id);
    if (!entry) {
      entry = { id, item, pending: [], keys: new Set(), el: null, refs: null };
      this.calls.set(id, entry);
    } else {
      entry.item = { ...entry.item, ...item };
    }
    this.dirty.add(entry);
    return entry;
  }

  remove(id, entry) {
    if (this.calls.get(id) === entry) this.calls.delete(id);
    this.dirty.delete(entry);
    this.removed.add(entry);
  }

  /** Add a stored line; the only check is against the same frame replayed (a resync, a snapshot that held it). */
  addLine(entry, line) {
    if (!line.text) return;
    const key = lineKey(line);
    if (entry.keys.has(key)) return;
    entry.keys.add(key);
    entry.pending.push(line);
    if (entry.pending.length > MAX_LINES) entry.pending.splice(0, entry.pending.length - MAX_LINES);
    this.dirty.add(entry);
  }

  render() {
    schedule("live", () => this.flush());
  }

  flush() {
    for (const entry of this.removed) {
      if (entry.el) entry.el.remove();
      entry.el = null;
    }
    this.removed.clear();
    // Read every scroll position first, then write: one layout per frame, however many cards changed.
    const dirty = Array.from(this.dirty);
    this.dirty.clear();
    const stick = dirty.map((entry) => {
      const list = entry.refs && entry.refs.transcript;
      return !list || list.scrollTop + list.clientHeight >= list.scrollHeight - 24;
    });
    for (const entry of dirty) {
      if (!entry.el) this.build(entry);
      this.update(entry);
    }
    if (this.reorder) this.placeCards();
    dirty.forEach((entry, i) => {
      if (stick[i] && entry.scrolled) entry.refs.transcript.scrollTop = entry.refs.transcript.scrollHeight;
      entry.scrolled = false;
    });
    this.empty.hidden = this.calls.size > 0;
    this.opts.onCount(this.total, this.offset, this.calls.size);
  }

  /** Put the cards in display order, moving only those out of place (a moved card loses its scroll position). */
  placeCards() {
    this.reorder = false;
    let next = this.grid.firstElementChild;
    for (const entry of this.calls.values()) {
      if (!entry.el) continue;
      if (entry.el === next) next = next.nextElementSibling;
      else this.grid.insertBefore(entry.el, next);
    }
  }

  build(entry) {
    const refs = {
      status: h("span", { class: "pd-live-status" }),
      dir: h("span", { class: "pd-live-dir" }),
      timer: h("span", { class: "pd-live-timer", title: "Duration" }),
      caller: h("span", { class: "pd-party-num" }),
      callee: h("span", { class: "pd-party-num" }),
      mode: h("span", { class: "pd-live-mode" }),
      providers: h("span", { class: "pd-providers" }),
      // Not a live region: a screen reader would read every line. announce.js says starts and ends instead.
      transcript: h("ol", { class: "pd-transcript pd-transcript-live", "aria-label": "Transcript" }),
      waiting: h("p", { class: "pd-live-waiting" }, "Waiting for the first words…"),
      turns: h("span"),
      latency: h("span"),
      cost: h("span"),
    };
    const open = h("button", { type: "button", class: "pd-btn pd-btn-small pd-live-open" }, "Details");
    refs.open = open;
    open.addEventListener("click", () => this.opts.onOpen(entry.id));
    const el = h("article", { class: "pd-card pd-live-card", dataset: { callId: entry.id } },
      h("header", { class: "pd-live-head" }, refs.status, refs.dir, refs.timer),
      h("div", { class: "pd-live-parties" },
        h("div", { class: "pd-party" }, h("span", { class: "pd-k" }, "From"), refs.caller),
        h("span", { class: "pd-party-arrow", "aria-hidden": "true" }, "→"),
        h("div", { class: "pd-party" }, h("span", { class: "pd-k" }, "To"), refs.callee)),
      h("div", { class: "pd-live-meta" }, refs.mode, refs.providers),
      h("div", { class: "pd-live-body" }, refs.transcript, refs.waiting),
      h("footer", { class: "pd-live-foot" },
        h("span", { class: "pd-live-stats" }, refs.turns, refs.latency, refs.cost),
        open));
    entry.el = el;
    entry.refs = refs;
    this.grid.prepend(el);
    this.reorder = true;
  }

  update(entry) {
    const { item, refs } = entry;
    const shown = entry.shown || (entry.shown = {});
    if (shown.status !== item.status) fill(refs.status, statusBadge(item.status));
    if (shown.direction !== item.direction) fill(refs.dir, directionTag(item.direction));
    if (shown.mode !== item.provider_mode) {
      if (item.provider_mode) fill(refs.mode, modeChip(item.provider_mode));
      else fill(refs.mode);
    }
    shown.status = item.status;
    shown.direction = item.direction;
    shown.mode = item.provider_mode;
    // Every card has a "Details" button: its name says which call (and starts with the visible word).
    const label = `Details of the call from ${item.caller || "unknown"} to ${item.callee || "unknown"}`;
    if (refs.open.getAttribute("aria-label") !== label) refs.open.setAttribute("aria-label", label);
    setText(refs.caller, item.caller || fmt.DASH);
    setText(refs.callee, item.callee || fmt.DASH);
    setText(refs.providers, fmt.providerList(item.providers));
    setText(refs.timer, fmt.clock(elapsed(item)));
    const turns = typeof item.turn_count === "number" ? item.turn_count : null;
    setText(refs.turns, turns === null ? "" : `${fmt.num(turns)} ${turns === 1 ? "turn" : "turns"}`);
    setText(refs.latency, typeof item.latency_avg_ms === "number" ? `avg ${fmt.ms(item.latency_avg_ms)}` : "");
    const total = item.cost && typeof item.cost.total === "number" ? item.cost.total : null;
    setText(refs.cost, total === null ? "" : fmt.money(total));

    if (entry.pending.length) {
      const list = refs.transcript;
      for (const line of entry.pending) placeLine(list, transcriptLine(line, { compact: true }), line);
      entry.pending = [];
      while (list.childElementCount > MAX_LINES) list.firstElementChild.remove();
      entry.scrolled = true; // flush() scrolls it to the end if the reader was at the end
    }
    refs.waiting.hidden = refs.transcript.childElementCount > 0;
  }

  tick() {
    const now = Date.now();
    for (const entry of this.calls.values()) {
      if (entry.refs) setText(entry.refs.timer, fmt.clock(elapsed(entry.item, now)));
    }
  }
}
