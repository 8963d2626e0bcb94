/*
 * api.js — talking to the patter-dash backend.
 *
 * Owns: reading the endpoint URLs that the server rendered into data-*
 * attributes of the #patter-dash root (every URL comes from url_for, so the page
 * works under any URL prefix), building query strings, and JSON requests (reads,
 * and the one write: deleting a call) with timeouts and cancellation. Nothing here touches the DOM beyond reading the
 * root's dataset.
 */

const root = document.getElementById("patter-dash");
const ds = root ? root.dataset : {};

export const urls = Object.freeze({
  calls: ds.apiCalls,
  active: ds.apiActive,
  callTemplate: ds.apiCall, // contains the placeholder "__ID__"
  recordingTemplate: ds.apiRecording, // the same
  peaksTemplate: ds.apiRecordingPeaks, // the same
  overview: ds.apiOverview,
  costs: ds.apiCosts,
  providers: ds.apiProviders,
  quality: ds.apiQuality,
  health: ds.apiHealth,
  alerts: ds.apiAlerts,
  exportCsv: ds.exportCsv,
  exportJson: ds.exportJson,
  events: ds.events,
});

/** The stream's call event types, as the server's vocabulary names them (rendered into data-event-types). */
export const eventTypes = Object.freeze(String(ds.eventTypes || "").split(" ").filter(Boolean));

const ID_PLACEHOLDER = "__ID__";

/** Resolve a URL relative to the page and add query parameters (empty ones are skipped). */
export function withParams(base, params) {
  const url = new URL(base, window.location.href);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined || v === null || v === "") continue;
      url.searchParams.set(k, String(v));
    }
  }
  return url.origin === window.location.origin ? url.pathname + url.search : url.href;
}

/** A call's URL: the id goes in the query string (/call?id=), which carries any id; a path cannot carry "active" or "..". */
export function callUrl(callId) {
  return urls.callTemplate.replace(ID_PLACEHOLDER, encodeURIComponent(String(callId)));
}

/** A call's recording (audio/wav, with Range) and its waveform peaks (JSON), by the same query form. */
export function recordingUrl(callId) {
  return urls.recordingTemplate.replace(ID_PLACEHOLDER, encodeURIComponent(String(callId)));
}

export function peaksUrl(callId) {
  return urls.peaksTemplate.replace(ID_PLACEHOLDER, encodeURIComponent(String(callId)));
}

export class HttpError extends Error {
  constructor(status, message, body = null) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.body = body; // the JSON answer, when there was one (a 404 says whether the call has a recording)
  }
}

/**
 * GET a JSON document. Rejects with HttpError on a non-2xx answer and with
 * an AbortError (name === "AbortError") when cancelled; callers ignore the latter.
 */
export function getJSON(url, { signal, timeoutMs = 15000 } = {}) {
  return requestJSON("GET", url, { signal, timeoutMs });
}

/**
 * DELETE something and read the JSON answer; rejects like getJSON. The session
 * cookie goes along (same origin only), and so does the page's Origin, which
 * the server checks for every write.
 */
export function deleteJSON(url, { timeoutMs = 35000 } = {}) {
  return requestJSON("DELETE", url, { timeoutMs });
}

/** PATCH a JSON body (a call's tags, notes, rating) and read the JSON answer; rejects like getJSON. */
export function patchJSON(url, data, { timeoutMs = 35000 } = {}) {
  return requestJSON("PATCH", url, { timeoutMs, data });
}

async function requestJSON(method, url, { signal, timeoutMs, data }) {
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort();
  if (signal) {
    if (signal.aborted) ctrl.abort();
    else signal.addEventListener("abort", onAbort, { once: true });
  }
  // A timeout is a failure to show ("could not load"), not a cancellation to ignore.
  const timer = setTimeout(() => ctrl.abort(new DOMException(`No answer within ${timeoutMs / 1000} s`, "TimeoutError")), timeoutMs);
  try {
    const resp = await fetch(url, {
      method,
      signal: ctrl.signal,
      credentials: "same-origin",
      headers: data === undefined ? { Accept: "application/json" } : { Accept: "application/json", "Content-Type": "application/json" },
      body: data === undefined ? undefined : JSON.stringify(data),
      cache: "no-store",
    });
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    if (resp.status === 401) sessionExpired();
    if (!resp.ok) {
      let message = body && typeof body.error === "string" ? body.error : null;
      const first = body && Array.isArray(body.details) ? body.details[0] : null;
      if (message && first && typeof first.field === "string" && typeof first.error === "string") {
        message = `${message}: ${first.field} ${first.error}`; // which field, and what it must be
      }
      throw new HttpError(resp.status, message, body);
    }
    return body;
  } finally {
    clearTimeout(timer);
    if (signal) signal.removeEventListener("abort", onAbort);
  }
}

/**
 * The session cookie stopped working (token changed, cookie cleared): reload, so
 * the server shows its sign-in page. At most once every 30 s, so never a loop.
 */
function sessionExpired() {
  try {
    const last = Number(sessionStorage.getItem("patter-dash-reauth") || 0);
    if (Date.now() - last < 30000) return;
    sessionStorage.setItem("patter-dash-reauth", String(Date.now()));
  } catch {
    return; // no storage: stay on the page rather than risk a reload loop
  }
  window.location.reload();
}

/** Cancelled by the page (a newer request replaced it), so nothing to show; a timeout is not this. */
export const isAbort = (err) => err && err.name === "AbortError";

/**
 * A fetcher that cancels its previous request whenever a new one starts,
 * so a slow old answer never overwrites a newer one.
 */
export function latestOnly() {
  let ctrl = null;
  return (url, opts = {}) => {
    if (ctrl) ctrl.abort();
    ctrl = new AbortController();
    return getJSON(url, { ...opts, signal: ctrl.signal });
  };
}
