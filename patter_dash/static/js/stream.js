/*
 * stream.js — the live event stream (Server-Sent Events).
 *
 * Owns: the EventSource and its lifecycle, the connection indicator
 * (connecting / live / reconnecting / offline), and handing each parsed event
 * to the handlers the app registered.
 *
 * Protocol (see the backend's streaming blueprint):
 *   event: one of the server's event types (the page's data-event-types)
 *          data = {seq, type, call_id, call, line? | turn, cost_so_far, lines}
 *          call: the full summary on call_initiated/call_start/call_status/call_end
 *          and a call's first frame; on transcript and turn frames only the card
 *          fields those can change (status, flags; turn_count, latency, cost)
 *   event: reset     → our resume point is gone: refetch everything
 *   event: overflow  → we were too slow: reconnect (and refetch)
 *   event: shutdown  → the server is stopping; EventSource reconnects by itself
 * EventSource resends Last-Event-ID on its own reconnects. A new EventSource
 * (after CLOSED, or overflow) starts fresh, so the app refetches a snapshot.
 */

import { setText } from "./dom.js";
import { eventTypes } from "./api.js";

const LABELS = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Offline",
};

const TITLES = {
  connecting: "Opening the live event stream",
  live: "Receiving live call events",
  reconnecting: "Lost the live event stream; reconnecting automatically",
  offline: "No connection to the server; retrying",
};

export class LiveStream {
  /**
   * @param {string} url               SSE endpoint
   * @param {HTMLElement} indicator    element with a .pd-conn-label child
   * @param {object} handlers          {onEvent(type, data), onResync(reason), onState(state)}
   */
  constructor(url, indicator, handlers) {
    this.url = url;
    this.indicator = indicator;
    this.handlers = handlers;
    this.es = null;
    this.state = "connecting";
    this.wasOpen = false; // has the current EventSource ever been open?
    this.needResync = true; // must the app refetch a snapshot when the stream opens?
    this.retryMs = 1000;
    this.retryTimer = null;
    this.lastSeq = null;
    this.everOpened = false;
    window.addEventListener("online", () => this.wentOnline());
    window.addEventListener("offline", () => this.setState("offline"));
  }

  start() {
    this.open();
  }

  setState(state) {
    if (!navigator.onLine) state = "offline";
    if (state === this.state) return;
    this.state = state;
    this.indicator.dataset.state = state;
    this.indicator.title = TITLES[state];
    const label = this.indicator.querySelector(".pd-conn-label");
    if (label) setText(label, LABELS[state]);
    if (this.handlers.onState) this.handlers.onState(state);
  }

  open() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.es) this.es.close();
    const es = new EventSource(this.url, { withCredentials: false });
    this.es = es;
    this.wasOpen = false;

    es.addEventListener("open", () => {
      if (es !== this.es) return;
      const resync = this.needResync;
      const reason = this.everOpened ? "reconnected" : "open";
      this.everOpened = true;
      this.wasOpen = true;
      this.needResync = false;
      this.retryMs = 1000;
      this.setState("live");
      if (resync) this.handlers.onResync(reason);
    });

    es.addEventListener("error", () => {
      if (es !== this.es) return;
      if (es.readyState === EventSource.CLOSED) {
        // The browser gave up (HTTP error, wrong content type): we retry ourselves.
        this.needResync = true;
        this.setState("offline");
        this.scheduleRetry();
      } else {
        // CONNECTING: EventSource retries by itself and sends Last-Event-ID.
        this.needResync = true;
        this.setState("reconnecting");
      }
    });

    for (const type of eventTypes) {
      es.addEventListener(type, (ev) => {
        if (es !== this.es) return;
        let data;
        try {
          data = JSON.parse(ev.data);
        } catch {
          return; // ignore malformed frames
        }
        if (!data || typeof data !== "object") return;
        if (typeof data.seq === "number") this.lastSeq = data.seq;
        this.handlers.onEvent(type, data);
      });
    }

    es.addEventListener("reset", () => {
      if (es !== this.es) return;
      this.handlers.onResync("reset");
    });

    es.addEventListener("overflow", () => {
      if (es !== this.es) return;
      // We fell behind; a fresh stream plus a fresh snapshot brings us back.
      this.needResync = true;
      this.setState("reconnecting");
      this.open();
    });

    es.addEventListener("shutdown", () => {
      if (es !== this.es) return;
      this.needResync = true;
      this.setState("reconnecting");
    });
  }

  scheduleRetry() {
    if (this.retryTimer) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, 30000);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.setState("reconnecting");
      this.open();
    }, wait);
  }

  /**
   * The browser is back online. A stream that survived the blip (an open
   * connection often does) keeps flowing: show it as live again instead of
   * leaving the indicator on "Offline". A closed one is reopened at once.
   */
  wentOnline() {
    if (!this.es || this.es.readyState === EventSource.CLOSED) {
      this.connectNow();
    } else {
      this.setState(this.es.readyState === EventSource.OPEN ? "live" : "reconnecting");
    }
  }

  connectNow() {
    if (this.es && this.es.readyState !== EventSource.CLOSED) return;
    this.retryMs = 1000;
    this.needResync = true;
    this.open();
  }
}
