/*
 * app.js — entry point of the patter-dash page.
 *
 * Owns: wiring the views together (live, history, detail, analytics, providers, the
 * delete confirmation, the history-storage badge, the alerts view and its
 * firing badge) with the event stream, the
 * routes (#live, #history?filters, #analytics, #providers, #call/<id>: see router.js) and
 * what Back does, the shortcuts' actions, the time-zone note, the page title,
 * and removing a ?token= from the address bar once the server has turned it
 * into a session cookie. Views never talk to each other directly; they go
 * through the callbacks set up here. A deleted call (call_deleted from the
 * stream, or this page's own DELETE) leaves every view at once.
 */

import { byId, setText } from "./dom.js";
import { TIME_ZONE, num } from "./format.js";
import { urls, getJSON, isAbort, withParams } from "./api.js";
import { throttle } from "./scheduler.js";
import { LiveStream } from "./stream.js";
import { LiveView, PAGE_SIZE } from "./live.js";
import { HistoryView } from "./history.js";
import { DetailView } from "./detail.js";
import { AnalyticsView } from "./analytics.js";
import { ProvidersView } from "./providers.js";
import { VIEWS, parseHash, callHash, viewHash, replaceHash } from "./router.js";
import { Announcer, say } from "./announce.js";
import { installShortcuts, trapFocus } from "./keys.js";
import { DeleteDialog } from "./deletion.js";
import { StorageBadge } from "./storage.js";
import { AlertsView } from "./alerts.js";

/* The token, if any, served its purpose when the server answered; keep it out of history and screenshots. */
function dropTokenFromUrl() {
  const url = new URL(window.location.href);
  if (!url.searchParams.has("token")) return;
  url.searchParams.delete("token");
  window.history.replaceState(window.history.state, "", url.pathname + url.search + url.hash);
}

function main() {
  dropTokenFromUrl();
  setText(byId("pd-tz"), `Times in ${TIME_ZONE}`);
  byId("pd-tz").title = "All times are shown in your browser's time zone";

  /* ---- a URL per call ----
   * Opening a call adds #call/<id> to the tab's history, so Back closes it; closing it
   * (Esc, ✕) goes back to the address it was opened from. A #call link loaded fresh has
   * no such step under it: closing it replaces the address with the view behind it. */
  let background = "live"; // the view shown behind the detail
  let historyParams = {}; // history's filters, kept for its address
  let pushedCall = false; // is the current #call/… entry one this page added?
  let returning = false; // our own Back after a close is under way (the user may already be typing)
  const backgroundHash = () => viewHash(background, background === "history" ? historyParams : null);

  const notice = byId("pd-notice");
  let deletion = null;
  const detail = new DetailView(byId("pd-detail"), {
    onDelete(call, button) {
      deletion.open(call, button);
    },
    onClose() {
      deletion.close(); // closed under it (Back): a question about a call no longer shown is moot
      if (parseHash(window.location.hash).callId === null) return; // closed by Back: the address is right
      if (pushedCall) {
        pushedCall = false;
        returning = true;
        window.history.back();
      } else {
        replaceHash(backgroundHash());
      }
    },
  });
  // Opened over the history, a call's transcript marks the search's terms.
  const showCall = (id) => {
    const q = background === "history" && historyParams ? historyParams.q : "";
    if (q) detail.openSearched(id, q);
    else detail.open(id);
  };
  const openDetail = (id) => {
    const hash = callHash(id);
    if (window.location.hash === hash) {
      showCall(id);
      return;
    }
    pushedCall = parseHash(window.location.hash).callId === null;
    window.location.hash = hash; // → hashchange → route() opens it
  };
  const announcer = new Announcer(byId("pd-announcer"));

  const liveCount = byId("pd-live-count");
  const liveSub = byId("pd-live-sub");
  const livePager = byId("pd-live-pager");
  const livePrev = byId("pd-live-prev");
  const liveNext = byId("pd-live-next");
  let analytics = null;
  let refreshLive = () => {};
  const historyTab = document.querySelector(".pd-tab[data-view=history]");
  const tabs = Array.from(document.querySelectorAll(".pd-tab[data-view]"));
  const live = new LiveView(byId("pd-live-grid"), byId("pd-live-empty"), {
    onOpen: openDetail,
    onCount: (n, offset, shown) => {
      setText(liveCount, num(n));
      const paged = offset > 0 || shown < n;
      let sub = n === 1 ? "1 call in progress" : `${num(n)} calls in progress`;
      if (paged) sub = shown ? `Showing ${num(offset + 1)}–${num(offset + shown)} of ${num(n)} live calls` : `Showing 0 of ${num(n)} live calls`;
      setText(liveSub, sub);
      livePager.hidden = !paged;
      livePrev.disabled = offset === 0;
      liveNext.disabled = offset + shown >= n;
      document.title = n > 0 ? `(${num(n)}) Calls · patter-dash` : "Calls · patter-dash";
      if (analytics) analytics.setActiveCount(n);
    },
    onStale: () => refreshLive(),
  });

  const history = new HistoryView({
    form: byId("pd-filters"),
    table: byId("pd-history-table"),
    body: byId("pd-history-body"),
    summary: byId("pd-history-summary"),
    prev: byId("pd-prev"),
    next: byId("pd-next"),
    pageSize: byId("pd-page-size"),
    csv: byId("pd-export-csv"),
    json: byId("pd-export-json"),
    error: byId("pd-history-error"),
  }, {
    onOpen: openDetail,
    onState(params) {
      historyParams = params;
      const hash = viewHash("history", params);
      historyTab.setAttribute("href", hash); // the History tab keeps the filters
      if (background === "history" && parseHash(window.location.hash).callId === null) replaceHash(hash);
    },
  });

  analytics = new AnalyticsView({
    controls: byId("pd-analytics-controls"),
    tiles: byId("pd-tiles"),
    costChart: byId("pd-chart-cost"),
    latencyChart: byId("pd-chart-latency"),
    donut: byId("pd-chart-components"),
    error: byId("pd-analytics-error"),
    charts: byId("pd-charts"),
  });

  const providers = new ProvidersView({
    controls: byId("pd-providers-controls"),
    kinds: byId("pd-providers-kinds"),
    sub: byId("pd-providers-sub"),
    table: byId("pd-providers-table"),
    chart: byId("pd-chart-distribution"),
    chartCard: byId("pd-dist-card"),
    summary: byId("pd-chart-distribution-summary"),
    chartTable: byId("pd-chart-distribution-table"),
    toggle: byId("pd-chart-distribution-toggle"),
    error: byId("pd-providers-error"),
  });

  /* ---- deleted calls leave every view ----
   * `mine`: this page asked (the drawer closes); otherwise another window or the
   * retention purge did (an open drawer says so). The frame for this page's own
   * request may come before its answer: that id is not "elsewhere". */
  function callsDeleted(ids, mine) {
    if (!ids.length) return;
    detail.noteDeleted(mine ? ids : ids.filter((id) => id !== deletion.pendingId), mine);
    live.removeCalls(ids);
    history.noteDeleted(ids);
    analytics.invalidate();
    providers.invalidate();
  }
  deletion = new DeleteDialog(byId("pd-delete-dialog"), {
    onDeleted(ids, message) {
      callsDeleted(ids, true);
      say(notice, message);
    },
  });
  const storage = new StorageBadge(byId("pd-store"), {
    onChange(text) {
      say(notice, text);
    },
  });

  const alerts = new AlertsView({
    onNotice(text) {
      say(notice, text);
    },
  });

  /* ---- active-call snapshots, with stream events buffered while one loads ----
   * Events that arrive while a snapshot is in flight are replayed on top of it,
   * so a snapshot taken before an event never undoes that event. Only the newest
   * of overlapping loads is applied. */
  let snapshotGen = 0;
  let snapshotting = false;
  let buffered = [];

  function handleEvent(type, data) {
    if (type === "call_deleted") {
      callsDeleted(Array.isArray(data.call_ids) ? data.call_ids.map(String) : [], false);
      return;
    }
    if (type === "call_updated") {
      // Tags, notes or a rating: history rows and an open drawer show them; analytics do not change.
      history.noteUpdated(data.call);
      detail.noteEvent(data.call_id);
      return;
    }
    const id = data.call_id != null ? String(data.call_id) : data.call && data.call.call_id != null ? String(data.call.call_id) : null;
    if (id !== null && (type === "call_start" || type === "call_initiated")) announcer.callStarted(id, data.call);
    const ended = live.applyEvent(type, data);
    if (ended && id !== null) announcer.callEnded(id, data.call);
    detail.noteEvent(data.call_id);
    if (ended) {
      // History and analytics hold finished calls only: they change when a call ends.
      history.noteEnded(data.call);
      analytics.invalidate();
      providers.invalidate();
    }
  }

  /** Load the active calls; true when applied, false when it failed, null when a newer load took over. */
  async function loadSnapshot() {
    const gen = ++snapshotGen;
    snapshotting = true;
    let items = null;
    let failed = false;
    let pagination = null;
    try {
      const body = await getJSON(withParams(urls.active, { limit: PAGE_SIZE, offset: live.offset || "", turns: 0 }));
      items = Array.isArray(body && body.data) ? body.data : [];
      pagination = body && body.pagination;
    } catch (err) {
      failed = !isAbort(err); // keep what we show; resync() tries again
    }
    if (gen !== snapshotGen) return null; // a newer load is running; it replays the buffer
    const lastPage = pagination && pagination.total > 0 ? Math.floor((pagination.total - 1) / PAGE_SIZE) * PAGE_SIZE : 0;
    if (items && !items.length && pagination && pagination.offset > lastPage) {
      // The calls of this page ended: show the last page that has any.
      live.offset = lastPage;
      return loadSnapshot();
    }
    snapshotting = false;
    if (items) live.applySnapshot(items, pagination);
    const pending = buffered;
    buffered = [];
    for (const [type, data] of pending) handleEvent(type, data);
    return items ? true : failed ? false : null;
  }

  /* ---- resync: the stream (re)opened or said "reset", so what we show may be stale ----
   * Reload the active calls, and (except on the very first open) history,
   * analytics and an open detail. A failed snapshot is retried with backoff:
   * the stream may stay open with nothing more to say, so no later event
   * would ever repair a stale live view. */
  let resyncTimer = null;
  let resyncDelay = 2000;

  async function resync(full) {
    clearTimeout(resyncTimer);
    resyncTimer = null;
    if (full) {
      history.refresh();
      analytics.invalidate();
      providers.invalidate();
      storage.refresh();
      alerts.refresh();
      if (detail.openId !== null) detail.noteEvent(detail.openId);
    }
    const ok = await loadSnapshot();
    if (ok === true) {
      resyncDelay = 2000;
    } else if (ok === false && resyncTimer === null) {
      resyncTimer = setTimeout(() => resync(true), resyncDelay);
      resyncDelay = Math.min(resyncDelay * 2, 30000);
    }
  }

  // A page the stream cannot keep right by itself is refetched, at most once a second.
  refreshLive = throttle(() => loadSnapshot(), 1000, 100);
  const goLive = (offset) => {
    live.offset = Math.max(0, offset);
    loadSnapshot();
  };
  livePrev.addEventListener("click", () => goLive(live.offset - PAGE_SIZE));
  liveNext.addEventListener("click", () => goLive(live.offset + PAGE_SIZE));

  const stream = new LiveStream(urls.events, byId("pd-conn"), {
    onEvent(type, data) {
      if (type === "alert_firing" || type === "alert_resolved") {
        alerts.noteEvent(type, data); // not a call event: nothing for the call views
        return;
      }
      if (snapshotting) buffered.push([type, data]);
      else handleEvent(type, data);
    },
    onResync(reason) {
      resync(reason !== "open");
    },
    onState() {},
  });

  /* ---- views and routes ---- */
  function show(view) {
    if (!VIEWS.includes(view)) view = "live";
    background = view;
    for (const name of VIEWS) {
      const section = byId(`pd-view-${name}`);
      section.hidden = name !== view;
    }
    for (const tab of tabs) {
      if (tab.dataset.view === view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    analytics.setVisible(view === "analytics");
    providers.setVisible(view === "providers");
    document.documentElement.dataset.view = view;
  }
  // The address last acted on: search() routes at once, and the hashchange that follows must not
  // route again, or it would reset the search field to the address while the user types in it.
  let routedHash = null;
  function route() {
    if (window.location.hash === routedHash) return;
    routedHash = window.location.hash;
    const r = parseHash(window.location.hash);
    if (r.callId !== null) {
      show(background);
      if (!detail.dialog.open || detail.openId !== r.callId) showCall(r.callId);
      return;
    }
    show(r.view);
    if (returning) {
      // The entry we return to holds the filters as they were; what the page shows now is newer.
      returning = false;
      replaceHash(backgroundHash());
    } else if (r.view === "history") {
      history.applyUrl(r.params);
    }
    if (detail.dialog.open) {
      pushedCall = false;
      detail.close();
    }
  }
  window.addEventListener("hashchange", route);
  route();

  /* ---- keyboard shortcuts (keys.js says when they fire) ---- */
  const shortcuts = byId("pd-shortcuts");
  trapFocus(shortcuts);
  shortcuts.querySelector(".pd-detail-close").addEventListener("click", () => shortcuts.close());
  byId("pd-shortcuts-open").addEventListener("click", () => shortcuts.showModal());
  installShortcuts({
    search() {
      if (background !== "history") {
        window.location.hash = viewHash("history", historyParams);
        route(); // now, not at hashchange: a hidden field cannot take focus
      }
      const q = byId("pd-q");
      q.focus();
      q.select();
    },
    move(delta) {
      if (background === "history") history.moveFocus(delta);
    },
    help() {
      shortcuts.showModal();
    },
  });

  history.load();
  analytics.refresh();
  storage.refresh();
  alerts.refresh();
  loadSnapshot();
  stream.start();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
else main();
