/*
 * search.js — where the history search (q) was found, marked in text.
 *
 * The server says where: a history row's `match` carries the matching line and
 * the [start, end) spans of the terms in it. The call detail marks its lines
 * itself, with the query's terms read by the server's rules (model/search.py:
 * words, "quoted phrases", a trailing * dropped, case-insensitive). Marks are
 * <mark> elements and text nodes, never HTML: the text is the caller's.
 */

import { h } from "./dom.js";

/** The terms of a q, lowercased, as the server reads them (longest first). */
export function queryTerms(q) {
  const found = [];
  const re = /"([^"]*)"?|(\S+)/g;
  let m;
  while ((m = re.exec(String(q || ""))) !== null) {
    let term = (m[1] !== undefined ? m[1] : m[2].replace(/"/g, "")).replace(/\0/g, "").replace(/\n/g, " ").toLowerCase();
    if (m[2] !== undefined) term = term.replace(/\*+$/, "");
    if (term && !found.includes(term)) found.push(term);
  }
  return found.sort((a, b) => b.length - a.length);
}

/** [start, end) ranges of the terms in text (case-insensitive), merged; [] when none. */
export function termSpans(text, terms) {
  const lower = String(text).toLowerCase();
  // Lowercasing that changes a length (rare letters) would misplace marks: mark nothing rather than the wrong part.
  if (!terms.length || lower.length !== String(text).length) return [];
  const ranges = [];
  for (const term of terms) {
    for (let at = lower.indexOf(term); at >= 0; at = lower.indexOf(term, at + 1)) ranges.push([at, at + term.length]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  const merged = [];
  for (const [s, e] of ranges) {
    const last = merged[merged.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else merged.push([s, e]);
  }
  return merged;
}

/** text as children: plain pieces and <mark> for each span (spans as the server or termSpans gives them). */
export function marked(text, spans) {
  const s = String(text);
  const out = [];
  let at = 0;
  for (const span of Array.isArray(spans) ? spans : []) {
    const start = Math.max(at, Number(span[0]) || 0);
    const end = Math.min(s.length, Number(span[1]) || 0);
    if (end <= start) continue;
    if (start > at) out.push(s.slice(at, start));
    out.push(h("mark", { class: "pd-hit" }, s.slice(start, end)));
    at = end;
  }
  if (at < s.length) out.push(s.slice(at));
  return out;
}
