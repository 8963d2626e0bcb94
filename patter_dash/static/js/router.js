/*
 * router.js — the page's addresses (the part after #).
 *
 * Owns: reading and writing the hash routes the dashboard answers to:
 *   #live, #history, #analytics, #providers, #alerts a view
 *   #history?status=failed&q=refund      history with its filters (shareable)
 *   #call/<percent-encoded call id>      that call's detail, over the last view
 * Nothing here touches the DOM; app.js decides what a route shows.
 */

export const VIEWS = ["live", "history", "analytics", "providers", "alerts"];
const CALL = "call/";

/** {view, callId, params} for a hash ("#history?q=x" → view "history", params q=x). */
export function parseHash(hash) {
  const raw = String(hash || "").replace(/^#/, "");
  if (raw.startsWith(CALL)) {
    const enc = raw.slice(CALL.length);
    let callId = enc;
    try {
      callId = decodeURIComponent(enc);
    } catch {
      // A hand-edited link with a stray "%": take it literally rather than fail.
    }
    return { view: null, callId, params: new URLSearchParams() };
  }
  const q = raw.indexOf("?");
  const name = q === -1 ? raw : raw.slice(0, q);
  const params = new URLSearchParams(q === -1 ? "" : raw.slice(q + 1));
  return { view: VIEWS.includes(name) ? name : "live", callId: null, params };
}

/** The hash of a call's detail; every character that could end or split the route is encoded. */
export function callHash(callId) {
  return `#${CALL}${encodeURIComponent(String(callId))}`;
}

/** The hash of a view, with its parameters when it has any. */
export function viewHash(view, params) {
  const qs = params ? new URLSearchParams(params).toString() : "";
  return `#${view}${qs ? `?${qs}` : ""}`;
}

/** Change the address without a new Back step (filters typed, a call closed that the page did not open). */
export function replaceHash(hash) {
  const url = window.location.pathname + window.location.search + hash;
  window.history.replaceState(window.history.state, "", url);
}
