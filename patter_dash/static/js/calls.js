/*
 * calls.js — shared knowledge about a call item from the API.
 *
 * Owns: deciding whether a call is still live, building the small DOM pieces
 * every view shows the same way (status badge, direction, provider chips,
 * transcript lines), and transcript de-duplication keys.
 */

import { h } from "./dom.js";
import * as fmt from "./format.js";
import { termSpans, marked } from "./search.js";

const TERMINAL = new Set([
  "completed", "complete", "ended", "finished", "failed", "error", "busy", "no-answer",
  "no_answer", "noanswer", "canceled", "cancelled", "hangup", "hung-up", "rejected", "timeout",
]);

/** Is this call over? (ended_at set, or a terminal status) */
export function isEnded(call) {
  if (!call) return true;
  if (typeof call.ended_at === "number") return true;
  return TERMINAL.has(String(call.status || "").toLowerCase());
}

/** Status → tone used by CSS (ok, warn, bad, live, neutral). */
export function statusTone(status) {
  const s = String(status || "").toLowerCase();
  if (s === "in-progress" || s === "in_progress" || s === "active" || s === "answered" || s === "connected") return "live";
  if (s === "initiated" || s === "ringing" || s === "queued" || s === "dialing" || s === "started") return "warn";
  if (s === "completed" || s === "complete" || s === "ended" || s === "finished") return "ok";
  if (s === "failed" || s === "error" || s === "rejected" || s === "timeout") return "bad";
  if (s === "busy" || s === "no-answer" || s === "no_answer" || s === "canceled" || s === "cancelled") return "muted";
  return "neutral";
}

export function statusBadge(status) {
  return h("span", { class: "pd-badge", dataset: { tone: statusTone(status) } }, fmt.label(status));
}

export function directionTag(direction) {
  const d = String(direction || "").toLowerCase();
  const arrow = d === "inbound" ? "↙" : d === "outbound" ? "↗" : "";
  return h("span", { class: "pd-dir", dataset: { dir: d || "unknown" } },
    arrow ? h("span", { class: "pd-dir-arrow", "aria-hidden": "true" }, arrow) : null,
    fmt.label(direction));
}

export function modeChip(providerMode) {
  const text = fmt.mode(providerMode);
  return h("span", { class: "pd-chip pd-chip-mode", title: text }, text);
}

/** Seconds elapsed for a call: its final duration, or now − started_at while live. */
export function elapsed(call, nowMs = Date.now()) {
  if (!call) return null;
  if (typeof call.duration_seconds === "number" && isEnded(call)) return call.duration_seconds;
  if (typeof call.started_at === "number") {
    const end = typeof call.ended_at === "number" ? call.ended_at : nowMs / 1000;
    return Math.max(0, end - call.started_at);
  }
  return typeof call.duration_seconds === "number" ? call.duration_seconds : null;
}

export function lineKey(line) {
  return `${line.role}\u0000${line.timestamp}\u0000${line.text}`;
}

/** Normalise a transcript line from the API (anything not a string becomes text). */
export function normLine(line) {
  const turn = line ? line.turnIndex : null;
  return {
    role: line && line.role != null ? String(line.role) : "",
    text: line && line.text != null ? String(line.text) : "",
    timestamp: line && typeof line.timestamp === "number" ? line.timestamp : null,
    // Patter's turn index (Realtime and ConvAI): where the line belongs, see placeLine().
    turn: Number.isInteger(turn) && turn >= 0 ? turn : null,
  };
}

const ROLE_RANK = { user: 0, assistant: 1 };
const roleRank = (role) => (role in ROLE_RANK ? ROLE_RANK[role] : 2);

/**
 * Put a line's element into a transcript list in reading order, as the server orders a transcript
 * (model/records.ordered): a line with a turn index goes above the lines just before it that carry
 * a greater one, or the same one and a later role (user, assistant, others); a line without one, or
 * the first line without one met on the way up, stays put. So a caller's words that arrive after the
 * agent's answer to them are shown above it.
 */
export function placeLine(list, el, line) {
  let before = null;
  if (line.turn !== null) {
    const rank = roleRank(line.role);
    for (let prev = list.lastElementChild; prev && prev.dataset.turn !== undefined; prev = prev.previousElementSibling) {
      const turn = Number(prev.dataset.turn);
      if (turn < line.turn || (turn === line.turn && roleRank(prev.dataset.role) <= rank)) break;
      before = prev;
    }
  }
  list.insertBefore(el, before);
}

/** One transcript line as a list item; `compact` for live cards, bubbles otherwise. */
export function transcriptLine(line, { compact = false, terms = null } = {}) {
  const who = fmt.speaker(line.role);
  const cls = fmt.speakerClass(line.role);
  const spans = terms && terms.length ? termSpans(line.text, terms) : [];
  const children = [
    h("span", { class: "pd-who" }, who),
    h("span", { class: "pd-text" }, spans.length ? marked(line.text, spans) : line.text),
  ];
  if (!compact && line.timestamp !== null) {
    children.push(h("time", { class: "pd-line-time", datetime: fmt.iso(line.timestamp) }, fmt.time(line.timestamp)));
  }
  const dataset = line.turn != null ? { turn: String(line.turn), role: line.role } : undefined;
  return h("li", { class: ["pd-line", `pd-line-${cls}`, spans.length ? "pd-line-hit" : null], dataset }, children);
}

/** Lines derived from a turn (user then agent), for streams that carry turns only. */
export function linesFromTurn(turn) {
  const out = [];
  if (!turn) return out;
  const ts = typeof turn.timestamp === "number" ? turn.timestamp : null;
  if (turn.user_text) out.push({ role: "user", text: String(turn.user_text), timestamp: ts });
  if (turn.agent_text) out.push({ role: "assistant", text: String(turn.agent_text), timestamp: ts });
  return out;
}
