/*
 * alerts.js — the alert rules: the header's firing badge and the Alerts view.
 *
 * Owns: #pd-firing (how many rules fire now, a link to #alerts; hidden while
 * none does) and #pd-view-alerts (a card per rule: its state, what it
 * measures, what fires now, its last notifications; then the destinations'
 * delivery counters), drawn from GET /api/v1/alerts. Refreshed when the
 * stream says a rule fired or resolved (alert_firing / alert_resolved, at
 * most once a second), on resync, and every 30 s (cooldowns end on their
 * own). A firing is said aloud through opts.onNotice. Rule names, call ids,
 * scopes and messages come from the server or from callers: textContent only.
 */

import { byId, h, fill, setText } from "./dom.js";
import * as fmt from "./format.js";
import { urls, getJSON } from "./api.js";
import { throttle } from "./scheduler.js";
import { callHash } from "./router.js";

const POLL_MS = 30000;
const STATES = { ok: "OK", firing: "Firing", resolved: "Resolved" };
const KINDS = {
  turn_latency: "Turn response latency of a live call",
  stuck_call: "Live call with no event",
  p95_latency: "P95 turn response latency",
  failure_rate: "Failure rate (failed, no-answer, busy, timeout)",
  cost_per_call: "Cost per call",
  cost_per_hour: "Cost per hour",
  cost_per_day: "Cost per day",
  no_calls: "No call started",
};

function amount(value, unit) {
  if (value === null || value === undefined || typeof value !== "number") return "—";
  if (unit === "USD") return `$${value.toFixed(value < 1 ? 4 : 2)}`;
  if (unit === "%") return `${value.toFixed(1)} %`;
  if (unit === "s") return `${fmt.num(Math.round(value))} s`;
  return `${fmt.num(Math.round(value))} ms`;
}

export class AlertsView {
  /** @param {object} opts {onNotice(text)} */
  constructor(opts) {
    this.opts = opts;
    this.badge = byId("pd-firing");
    this.badgeLabel = this.badge.querySelector(".pd-firing-label");
    this.rules = byId("pd-alert-rules");
    this.off = byId("pd-alerts-off");
    this.error = byId("pd-alerts-error");
    this.destsCard = byId("pd-alert-dests-card");
    this.dests = byId("pd-alert-dests").querySelector("tbody");
    this.timer = null;
    this.onEventThrottled = throttle(() => this.refresh(), 1000, 100);
  }

  /** An alert_firing / alert_resolved frame from the stream. */
  noteEvent(type, data) {
    if (type === "alert_firing" && data && typeof data.message === "string") this.opts.onNotice(`Alert: ${data.message}`);
    this.onEventThrottled();
  }

  async refresh() {
    clearTimeout(this.timer);
    this.timer = null;
    try {
      const body = await getJSON(urls.alerts, { timeoutMs: 10000 });
      if (body && body.data && typeof body.data === "object") this.show(body.data);
      this.error.hidden = true;
    } catch (err) {
      if (err && err.name === "AbortError") return;
      setText(this.error, "Could not load the alert rules; retrying.");
      this.error.hidden = false;
    }
    if (this.timer === null) this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  show(state) {
    const rules = Array.isArray(state.rules) ? state.rules : [];
    const firing = rules.filter((r) => r && r.state === "firing").length;
    this.badge.hidden = firing === 0;
    this.badge.dataset.count = String(firing);
    setText(this.badgeLabel, firing === 1 ? "1 alert firing" : `${fmt.num(firing)} alerts firing`);
    this.badge.title = rules.filter((r) => r && r.state === "firing").map((r) => String(r.name)).join(", ");
    this.off.hidden = Boolean(state.enabled);
    fill(this.rules, ...rules.map((rule, i) => this.card(rule, i)));
    const dests = Array.isArray(state.destinations) ? state.destinations : [];
    this.destsCard.hidden = dests.length === 0;
    fill(this.dests, ...dests.map((d) => h("tr", null,
      h("th", { scope: "row" }, String(d.name)),
      h("td", null, d.type === "slack" ? "Slack" : "Webhook"),
      h("td", null, fmt.num(d.delivered)),
      h("td", null, fmt.num(d.pending)),
      h("td", null, fmt.num(d.failed_attempts)),
      h("td", null, fmt.num((d.dropped || 0) + (d.given_up || 0))),
      h("td", null, d.last_error == null ? "—" : String(d.last_error)),
    )));
  }

  card(rule, index) {
    const state = STATES[rule.state] ? rule.state : "ok";
    const headingId = `pd-rule-${index}`;
    const scope = rule.scope && typeof rule.scope === "object" ? Object.entries(rule.scope) : [];
    const condition = [
      `${KINDS[rule.kind] || String(rule.kind)} above ${amount(rule.threshold, rule.unit)}`,
      rule.window ? ` over ${fmt.num(rule.window)} s` : "",
      rule.min_calls > 1 ? ` (at least ${fmt.num(rule.min_calls)} calls)` : "",
    ].join("");
    const facts = h("dl", { class: "pd-rule-facts" },
      h("dt", null, "When"), h("dd", null, condition),
      h("dt", null, "Calls"), h("dd", null, scope.length ? scope.map(([k, v]) => `${k} = ${String(v)}`).join(", ") : "all"),
      h("dt", null, "Now"), h("dd", null, rule.value === null || rule.value === undefined ? "—" : amount(rule.value, rule.unit)),
      h("dt", null, "Sends to"), h("dd", null, rule.destinations && rule.destinations.length ? rule.destinations.join(", ") : "nowhere"),
    );
    const parts = [
      h("div", { class: "pd-rule-head" },
        h("h2", { class: "pd-rule-name", id: headingId }, String(rule.name)),
        h("span", { class: "pd-rule-state", "data-state": state }, STATES[state])),
      facts,
    ];
    const firing = Array.isArray(rule.firing) ? rule.firing : [];
    if (firing.length) {
      const items = firing.map((f) => {
        const when = `since ${fmt.time(f.since)}, ${amount(f.value, rule.unit)}`;
        if (f.call_id === null || f.call_id === undefined) return h("li", null, `Firing ${when}`);
        return h("li", null, h("a", { href: callHash(f.call_id) }, `Call ${String(f.call_id)}`), ` ${when}`);
      });
      const more = rule.firing_count > firing.length ? [h("li", null, `and ${fmt.num(rule.firing_count - firing.length)} more`)] : [];
      parts.push(h("ul", { class: "pd-rule-firing", "aria-label": `Firing now for ${String(rule.name)}` }, ...items, ...more));
    }
    const history = Array.isArray(rule.history) ? rule.history.slice(0, 10) : [];
    parts.push(h("h3", { class: "pd-rule-sub" }, "Last notifications"));
    if (history.length) {
      parts.push(h("ol", { class: "pd-rule-history" }, ...history.map((n) => h("li", { "data-state": n.state === "firing" ? "firing" : "resolved" },
        h("time", { datetime: fmt.iso(n.at) }, fmt.dateTime(n.at)), " ", String(n.message)))));
    } else {
      parts.push(h("p", { class: "pd-muted" }, "None since the server started."));
    }
    if (rule.suppressed) parts.push(h("p", { class: "pd-muted" }, `${fmt.num(rule.suppressed)} held back by the ${fmt.num(rule.cooldown)} s cooldown`));
    return h("article", { class: "pd-card pd-rule", "data-state": state, "aria-labelledby": headingId }, ...parts);
  }
}
