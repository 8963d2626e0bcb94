/*
 * storage.js — where history is kept, in the header.
 *
 * Owns: the #pd-store badge, drawn from /api/v1/health's history block: in
 * memory (lost when the server restarts), saved to a file (engine, size and
 * path), or not saved (the file cannot be written now, and why); on a
 * database several processes share, also how far this process is behind. Polled every
 * 30 s (every 10 s while not saved) and when the stream reconnects; a change
 * from one state to another is handed to opts.onChange to be said aloud.
 * Every word of it may come from the server: textContent only.
 */

import { setText } from "./dom.js";
import * as fmt from "./format.js";
import { urls, getJSON } from "./api.js";

const ENGINES = { sqlite: "SQLite", postgres: "PostgreSQL" };
const POLL_MS = 30000;
const POLL_DEGRADED_MS = 10000;

export class StorageBadge {
  /**
   * @param {HTMLElement} el   #pd-store, with .pd-store-state and .pd-store-detail
   * @param {object} opts      {onChange(text)}: the state changed (not on the first look)
   */
  constructor(el, opts) {
    this.el = el;
    this.opts = opts;
    this.label = el.querySelector(".pd-store-state");
    this.detail = el.querySelector(".pd-store-detail");
    this.state = null;
    this.timer = null;
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    try {
      const body = await getJSON(urls.health, { timeoutMs: 10000 });
      if (body && body.history && typeof body.history === "object") this.show(body.history);
    } catch {
      // Unreachable server: the connection badge says so; keep what we showed.
    }
    if (this.timer === null) {
      this.timer = setTimeout(() => this.refresh(), this.state === "degraded" ? POLL_DEGRADED_MS : POLL_MS);
    }
  }

  show(history) {
    const mode = String(history.mode || "");
    let state;
    let label;
    let detail;
    if (mode === "memory") {
      state = "memory";
      label = "in memory";
      detail = "lost when the server restarts";
    } else {
      state = history.status === "degraded" ? "degraded" : "ok";
      label = state === "degraded" ? "not saved" : "saved";
      const where = [ENGINES[mode] || mode || "file"];
      if (typeof history.bytes === "number") where.push(fmt.bytes(history.bytes));
      // Shared with other processes (PostgreSQL): how far this one is behind the others' events.
      const log = history.log && typeof history.log === "object" ? history.log : null;
      if (log && typeof log.behind === "number") {
        where.push(log.behind > 0 ? `${fmt.num(log.behind)} events behind` : "up to date");
      }
      if (history.database === "unreachable") where.push("database unreachable");
      detail = where.join(", ");
      if (history.path != null && history.path !== "") detail += `: ${String(history.path)}`;
      if (state === "degraded" && history.error) detail = `${String(history.error)}; ${detail}`;
    }
    const previous = this.state;
    this.state = state;
    this.el.dataset.state = state;
    setText(this.label, label);
    setText(this.detail, detail);
    this.el.title = `History ${label}: ${detail}`;
    this.el.hidden = false;
    if (previous !== null && previous !== state) {
      this.opts.onChange(state === "degraded" ? `History cannot be saved: ${detail}` : `History ${label}.`);
    }
  }
}
