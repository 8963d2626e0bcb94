/*
 * announce.js — what a screen reader hears about live calls.
 *
 * Owns: the polite live region for calls (#pd-announcer) and its rate limit.
 * Only calls starting and ending are announced, never transcript lines: a busy
 * line would otherwise talk over the operator all day. Announcements come at
 * most once per INTERVAL; what piles up in between is said as one summary
 * ("3 calls started, 1 call ended"). say() speaks in another polite region
 * (#pd-notice) at once: the results of the user's own actions ("Call deleted").
 */

import { setText } from "./dom.js";
import { label } from "./format.js";

export const INTERVAL = 4000; // ms between two announcements
const MAX_IDS = 2000; // ids remembered to say each start and end once

const calls = (n) => `${n} ${n === 1 ? "call" : "calls"}`;

export class Announcer {
  /** @param {HTMLElement} region  a role="status" element (polite) */
  constructor(region, interval = INTERVAL) {
    this.region = region;
    this.interval = interval;
    this.queue = [];
    this.last = -Infinity;
    this.timer = null;
    this.said = new Set(); // "start:<id>" / "end:<id>"
  }

  callStarted(id, call) {
    if (this.once(`start:${id}`)) this.push("start", `Call started: ${parties(call)}`);
  }

  callEnded(id, call) {
    if (!this.once(`end:${id}`)) return;
    const status = call && call.status ? `, ${label(call.status)}` : "";
    this.push("end", `Call ended: ${parties(call)}${status}`);
  }

  once(key) {
    if (this.said.has(key)) return false;
    if (this.said.size >= MAX_IDS) this.said.clear();
    this.said.add(key);
    return true;
  }

  push(kind, text) {
    this.queue.push({ kind, text });
    if (this.timer !== null) return;
    const wait = this.last + this.interval - performance.now();
    if (wait <= 0) this.flush();
    else this.timer = setTimeout(() => this.flush(), wait);
  }

  flush() {
    this.timer = null;
    const items = this.queue;
    this.queue = [];
    if (!items.length) return;
    let text = items[0].text;
    if (items.length > 1) {
      const starts = items.filter((i) => i.kind === "start").length;
      const ends = items.length - starts;
      text = [starts ? `${calls(starts)} started` : "", ends ? `${calls(ends)} ended` : ""].filter(Boolean).join(", ");
    }
    this.last = performance.now();
    // Clear, then set on the next frame: a region whose text does not change is not read again.
    setText(this.region, "");
    requestAnimationFrame(() => setText(this.region, text));
  }
}

function parties(call) {
  const from = (call && call.caller) || "unknown caller";
  const to = (call && call.callee) || "unknown number";
  return `${from} to ${to}`;
}

/** Say `text` in a polite live region now; the same text twice is said twice. */
export function say(region, text) {
  setText(region, "");
  requestAnimationFrame(() => setText(region, text));
}
