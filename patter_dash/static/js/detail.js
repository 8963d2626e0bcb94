/*
 * detail.js — the call detail drawer.
 *
 * Owns: the <dialog> that opens when a history row or live card is chosen:
 * the call's facts (times, duration, status, voice mode, providers and
 * models), the cost breakdown per component, average and P95 latency, a
 * stacked STT/LLM/TTS bar per turn, the timeline (tool calls, each collapsible with its
 * arguments and result, size-capped; barge-ins; the error code), and the transcript as a conversation.
 * While the call is live, stream events for it trigger a throttled refetch.
 * Keyboard: the dialog's body takes focus on open (so arrow keys scroll the
 * call), Tab stays inside, and on close focus goes back to the row or card
 * that opened it, found again by call id if a redraw replaced it.
 * Its "Delete call" button asks deletion.js (through opts.onDelete); once the
 * call is deleted here the drawer closes and focus goes to the row or card
 * next to where the call was. Deleted elsewhere (another window, retention),
 * the drawer stays and says so in its own live region.
 * A call's recording (recording.js) plays above the annotations; the transcript line
 * being spoken is highlighted, and a line clicked seeks there.
 */

import { h, fill, setText } from "./dom.js";
import * as fmt from "./format.js";
import { callUrl, latestOnly, isAbort } from "./api.js";
import { throttle } from "./scheduler.js";
import { trapFocus } from "./keys.js";
import { AnnotationForm } from "./annotate.js";
import { RecordingPlayer } from "./recording.js";
import { statusBadge, directionTag, modeChip, elapsed, isEnded, normLine, transcriptLine, linesFromTurn } from "./calls.js";
import { queryTerms } from "./search.js";

const COMPONENTS = [
  { key: "stt", label: "STT" },
  { key: "llm", label: "LLM" },
  { key: "tts", label: "TTS" },
  { key: "telephony", label: "Telephony" },
];

/* Characters of a tool's arguments or result shown: a tool can return a whole document. */
const TOOL_TEXT_CAP = 2000;

/** A value as readable text (JSON for objects), cut to TOOL_TEXT_CAP with what was left out said. */
function capped(value) {
  let text;
  if (value === null || value === undefined) text = "";
  else if (typeof value === "string") text = value;
  else {
    try { text = JSON.stringify(value, null, 2); } catch { text = String(value); }
  }
  if (text.length <= TOOL_TEXT_CAP) return text;
  return `${text.slice(0, TOOL_TEXT_CAP)}… (${fmt.num(text.length - TOOL_TEXT_CAP)} more characters)`;
}

const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : null);

export class DetailView {
  /**
   * @param {HTMLDialogElement} dialog
   * @param {object} opts  {onClose(callId)}: the dialog closed (Esc, ✕, backdrop or close());
   *                       {onDelete(call, button)}: the user asked to delete the call shown
   */
  constructor(dialog, opts = {}) {
    this.opts = opts;
    this.returnTo = null; // {el, id}: where focus goes back to on close
    this.dialog = dialog;
    this.body = dialog.querySelector(".pd-detail-body");
    this.title = dialog.querySelector(".pd-detail-title");
    this.callId = null;
    this.call = null;
    this.fetcher = latestOnly();
    this.refreshSoon = throttle(() => this.load(), 1000, 300);
    this.timerEl = null;
    this.notice = dialog.querySelector(".pd-detail-notice");
    this.deleteButton = dialog.querySelector(".pd-detail-delete");
    this.head = h("div", { class: "pd-detail-part" });
    this.annotations = new AnnotationForm();
    this.player = new RecordingPlayer();
    this.tail = h("div", { class: "pd-detail-part" });

    dialog.querySelector(".pd-detail-close").addEventListener("click", () => this.close());
    this.deleteButton.addEventListener("click", () => {
      if (!this.call || !this.opts.onDelete) return;
      // Where focus goes once the call is gone, found now: its row may vanish before the answer comes.
      this.afterDelete = this.neighbour(this.callId);
      this.opts.onDelete(this.call, this.deleteButton);
    });
    dialog.addEventListener("click", (ev) => {
      if (ev.target === dialog) this.close(); // click on the backdrop
    });
    dialog.addEventListener("close", () => {
      // The event is a task queued by close(); Back then Forward can reopen the dialog before it
      // runs. That close is over: acting on it would forget the call now shown and its address.
      if (dialog.open) return;
      const id = this.callId;
      this.callId = null;
      this.call = null;
      this.player.stop();
      this.restoreFocus(id);
      if (this.opts.onClose) this.opts.onClose(id);
    });
    trapFocus(dialog);
    setInterval(() => this.tick(), 1000);
  }

  get openId() {
    return this.callId;
  }

  /** Show a call; `q`: the history search it was opened from, whose terms its transcript marks. */
  openSearched(callId, q, opener) {
    this.terms = queryTerms(q);
    this.open(callId, opener, true);
  }

  /** Show a call; `opener` is the element focus returns to on close (default: whatever has focus now). */
  open(callId, opener, searched = false) {
    if (!searched) this.terms = [];
    if (!this.dialog.open || opener) {
      const el = opener || document.activeElement;
      this.returnTo = { el: el instanceof HTMLElement && el !== document.body ? el : null, id: String(callId) };
    }
    if (this.callId !== String(callId)) this.player.reset();
    this.callId = String(callId);
    this.call = null;
    this.afterDelete = undefined;
    this.deleteButton.disabled = true;
    setText(this.notice, "");
    setText(this.title, "Call details");
    fill(this.body, h("p", { class: "pd-muted pd-detail-loading" }, "Loading call…"));
    if (!this.dialog.open) this.dialog.showModal();
    this.body.scrollTop = 0;
    this.body.focus({ preventScroll: true });
    this.load();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  /** Focus the opener again, or (a redraw replaced it) the row or card of the same call, else the main area. */
  restoreFocus(callId) {
    const back = this.returnTo;
    this.returnTo = null;
    let target = back && back.el && back.el.isConnected && back.el.getClientRects().length ? back.el : null;
    if (back && back.id !== undefined) callId = back.id; // after a deletion: the call beside it
    if (!target && callId !== null) {
      const sel = `[data-call-id="${CSS.escape(callId)}"]`;
      target = document.querySelector(`tr${sel}`) || document.querySelector(`${sel} .pd-live-open`);
      if (target && !target.getClientRects().length) target = null;
    }
    if (!target) target = document.getElementById("pd-main");
    if (target) target.focus({ preventScroll: false });
  }

  /** The id of the history row or live card next to a call's own (after it, else before it), or null. */
  neighbour(callId) {
    if (callId === null) return null;
    const sel = `[data-call-id="${CSS.escape(callId)}"]`;
    const el = [document.querySelector(`tr${sel}`), document.querySelector(`article${sel}`)]
      .find((e) => e && e.getClientRects().length);
    const next = el && (el.nextElementSibling || el.previousElementSibling);
    return next && next.dataset.callId != null ? next.dataset.callId : null;
  }

  /**
   * Calls were deleted. The one shown closes when this page deleted it (`mine`),
   * focus going to its neighbour; deleted elsewhere, the drawer says so and stays.
   */
  noteDeleted(ids, mine = false) {
    if (this.callId === null || !this.dialog.open || !ids.includes(this.callId)) return;
    if (mine) {
      this.returnTo = { el: null, id: this.afterDelete !== undefined ? this.afterDelete : null };
      this.close();
      return;
    }
    this.call = null;
    this.player.reset();
    this.deleteButton.disabled = true;
    this.timerEl = null;
    setText(this.title, "Call deleted");
    setText(this.notice, "This call was deleted, from another window or by the retention policy. It is no longer in history or analytics.");
    fill(this.body);
  }

  /** A stream event concerns a call: refetch if that call is on screen. */
  noteEvent(callId) {
    if (this.callId !== null && this.dialog.open && String(callId) === this.callId) this.refreshSoon();
  }

  async load() {
    const id = this.callId;
    if (id === null) return;
    try {
      const body = await this.fetcher(callUrl(id));
      if (id !== this.callId || !this.dialog.open) return;
      this.call = body && body.data ? body.data : null;
      this.deleteButton.disabled = !this.call;
      if (this.call) this.draw(this.call);
    } catch (err) {
      if (isAbort(err) || id !== this.callId) return;
      if (this.call) return; // keep showing what we have; a later event retries
      const msg = err && err.status === 404 ? "This call was not found." : "Could not load this call. Check the connection and try again.";
      fill(this.body, h("p", { class: "pd-alert" }, msg));
    }
  }

  tick() {
    if (this.timerEl && this.call && !isEnded(this.call)) setText(this.timerEl, fmt.clock(elapsed(this.call)));
  }

  draw(call) {
    const scrollTop = this.body.scrollTop;
    const live = !isEnded(call);
    setText(this.title, `${call.caller || "Unknown"} → ${call.callee || "Unknown"}`);
    this.timerEl = h("span", null, live ? fmt.clock(elapsed(call)) : fmt.duration(call.duration_seconds));
    if (!this.body.contains(this.annotations.el)) fill(this.body, this.head, this.player.el, this.annotations.el, this.tail);
    this.annotations.show(call);
    this.player.show(call);
    fill(this.head,
      h("div", { class: "pd-detail-tags" },
        statusBadge(call.status), directionTag(call.direction), modeChip(call.provider_mode),
        live ? h("span", { class: "pd-chip pd-chip-live" }, "Live") : null,
        (Array.isArray(call.flags) ? call.flags : []).map((f) => h("span", { class: "pd-chip pd-chip-flag", title: String(f) }, fmt.flag(f)))),
      h("p", { class: "pd-detail-id" }, h("span", { class: "pd-k" }, "Call ID "), h("code", null, String(call.call_id))),
      this.facts(call),
      h("div", { class: "pd-detail-grid" }, this.costs(call), this.providers(call)));
    fill(this.tail, this.turns(call), this.timeline(call), this.transcript(call));
    this.player.attach(this.tail.querySelector(".pd-transcript"));
    this.body.scrollTop = scrollTop;
  }

  facts(call) {
    const cost = call.cost && num(call.cost.total);
    const items = [
      ["Started", h("time", { datetime: fmt.iso(call.started_at) }, fmt.dateTime(call.started_at))],
      ["Ended", isEnded(call) ? h("time", { datetime: fmt.iso(call.ended_at) }, fmt.dateTime(call.ended_at)) : "In progress"],
      ["Duration", this.timerEl],
      ["Turns", fmt.num(call.turn_count)],
      ["Avg latency", fmt.ms(call.latency_avg_ms)],
      ["P95 latency", fmt.ms(call.latency_p95_ms)],
      ["Total cost", fmt.money(cost)],
      call.error_code ? ["Error code", h("code", { class: "pd-error-code" }, String(call.error_code))] : null,
      ["Cost per minute", cost !== null && num(call.duration_seconds) ? fmt.money(cost / (call.duration_seconds / 60)) : fmt.DASH],
      ...this.quality(call.quality),
    ];
    return h("dl", { class: "pd-facts" },
      items.filter(Boolean).map(([k, v]) => h("div", { class: "pd-fact" }, h("dt", null, k), h("dd", null, v))));
  }

  /** Conversation quality facts (model/quality.py); the source says whether the recording was measured. */
  quality(q) {
    if (!q) return [];
    const from = q.source === "recording" ? "recording" : "events";
    const deadAir = num(q.dead_air_count) ? `${fmt.ms(q.dead_air_ms)} (${fmt.num(q.dead_air_count)}×)` : "None";
    return [
      ["Interruptions", fmt.num(q.interruptions)],
      ["Dead air", deadAir],
      ["Talk-over", q.talk_over_ms === null ? `${fmt.DASH} (from ${from})` : fmt.ms(q.talk_over_ms)],
      ["First word", fmt.ms(q.first_word_ms)],
      ["Tool calls", num(q.tool_calls) ? `${fmt.num(q.tool_calls)}, ${fmt.num(q.tool_failures)} failed` : "None"],
    ];
  }

  costs(call) {
    const cost = call.cost || {};
    const total = num(cost.total);
    const max = Math.max(0, ...COMPONENTS.map((c) => num(cost[c.key]) || 0));
    const rows = COMPONENTS.map((c) => {
      const v = num(cost[c.key]);
      const bar = h("span", { class: "pd-hbar-fill", dataset: { comp: c.key } });
      bar.style.width = `${max > 0 && v ? Math.max(1, (v / max) * 100) : 0}%`;
      return h("li", { class: "pd-cost-row", dataset: { comp: c.key } },
        h("span", { class: "pd-swatch", dataset: { comp: c.key } }),
        h("span", { class: "pd-cost-name" }, c.label),
        h("span", { class: "pd-hbar" }, bar),
        h("span", { class: "pd-cost-value pd-num" }, fmt.money(v)));
    });
    return h("section", { class: "pd-detail-section" },
      h("h3", null, "Cost breakdown"),
      h("ul", { class: "pd-cost-list" }, rows),
      h("p", { class: "pd-cost-total" }, h("span", null, "Total"), h("strong", { class: "pd-num" }, fmt.money(total))));
  }

  providers(call) {
    const p = call.providers || {};
    const m = call.models || {};
    const row = (label, provider, model) => h("div", { class: "pd-fact" },
      h("dt", null, label),
      h("dd", null, provider || fmt.DASH, model ? h("span", { class: "pd-model" }, String(model)) : null));
    return h("section", { class: "pd-detail-section" },
      h("h3", null, "Providers"),
      h("dl", { class: "pd-facts pd-facts-stacked" },
        h("div", { class: "pd-fact" }, h("dt", null, "Voice mode"), h("dd", null, fmt.mode(call.provider_mode))),
        row("STT", p.stt, m.stt),
        row("LLM", p.llm, m.llm),
        row("TTS", p.tts, m.tts),
        row("Telephony", p.telephony, null)));
  }

  turns(call) {
    const turns = Array.isArray(call.turns) ? call.turns : [];
    const section = h("section", { class: "pd-detail-section" },
      h("div", { class: "pd-section-head" },
        h("h3", null, "Response latency per turn"),
        h("ul", { class: "pd-legend", "aria-label": "Legend" },
          ["stt", "llm", "tts"].map((k) => h("li", null, h("span", { class: "pd-swatch", dataset: { comp: k } }), k.toUpperCase())),
          h("li", null, h("span", { class: "pd-swatch", dataset: { comp: "other" } }), "Other"))));
    if (!turns.length) {
      section.append(h("p", { class: "pd-muted" }, isEnded(call) ? "No turns were recorded for this call." : "No turns recorded yet."));
      return section;
    }
    // The headline is what the caller waited (Patter's rule: agent_response_ms, else total_ms);
    // the bar splits it into STT, LLM (time to first token) and TTS, and "other" for the rest.
    const parts = (t) => {
      const l = t.latency || {};
      const stt = num(l.stt_ms);
      const llm = num(l.llm_ms);
      const tts = num(l.tts_ms);
      const sum = (stt || 0) + (llm || 0) + (tts || 0);
      const response = (num(l.agent_response_ms) || null) ?? (num(l.total_ms) || null) ?? (sum || null);
      // A remainder of a few ms is rounding, not a stage worth drawing.
      const rest = response !== null ? response - sum : 0;
      const other = rest > Math.max(15, 0.03 * (response || 0)) ? rest : 0;
      return { stt, llm, tts, other, total: response, extent: Math.max(sum + other, response || 0) };
    };
    const all = turns.map(parts);
    const max = Math.max(1, ...all.map((p) => p.extent));
    const rows = turns.map((t, i) => {
      const p = all[i];
      const bar = h("span", { class: "pd-stack", role: "img" });
      const desc = [];
      const split = (p.stt || 0) + (p.llm || 0) + (p.tts || 0) > 0;
      for (const k of ["stt", "llm", "tts", "other"]) {
        const v = p[k];
        if (k !== "other" && split) desc.push(`${k.toUpperCase()} ${fmt.ms(v)}`);
        if (!v) continue;
        const seg = h("span", { class: "pd-stack-seg", dataset: { comp: k } });
        seg.style.width = `${(v / max) * 100}%`;
        bar.append(seg);
      }
      if (!split) desc.push(!t.user_text && (t.turn_index === 0 || i === 0) ? "Greeting: no STT/LLM/TTS split" : "No STT/LLM/TTS split reported");
      else if (p.other) desc.push(`other ${fmt.ms(p.other)}`);
      bar.setAttribute("aria-label", desc.join(", "));
      bar.title = desc.join(" · ");
      const index = typeof t.turn_index === "number" ? t.turn_index + 1 : i + 1;
      const l = t.latency || {};
      const extra = [
        num(l.total_ms) !== null && num(l.total_ms) !== p.total ? `total incl. speech ${fmt.ms(l.total_ms)}` : null,
        num(l.llm_ttft_ms) !== null && num(l.llm_ttft_ms) !== p.llm ? `TTFT ${fmt.ms(l.llm_ttft_ms)}` : null,
        num(l.endpoint_ms) !== null ? `endpoint ${fmt.ms(l.endpoint_ms)}` : null,
        num(l.bargein_ms) !== null ? `barge-in ${fmt.ms(l.bargein_ms)}` : null,
      ].filter(Boolean);
      return h("li", { class: "pd-turn" },
        h("span", { class: "pd-turn-index" }, `#${index}`),
        h("div", { class: "pd-turn-main" },
          bar,
          h("p", { class: "pd-turn-split" }, desc.join(" · "), extra.length ? ` · ${extra.join(" · ")}` : ""),
          t.user_text ? h("p", { class: "pd-turn-text" }, String(t.user_text)) : null),
        h("span", { class: "pd-turn-total pd-num", title: "Response latency" }, fmt.ms(p.total)));
    });
    section.append(h("ol", { class: "pd-turns" }, rows));
    return section;
  }

  /** Tool calls (collapsible: arguments and result), barge-ins and the error code, in time order. */
  timeline(call) {
    const entries = Array.isArray(call.timeline) ? call.timeline : [];
    const section = h("section", { class: "pd-detail-section" }, h("h3", null, "Timeline"));
    if (!entries.length) {
      section.append(h("p", { class: "pd-muted" }, "No tool calls, barge-ins or errors."));
      return section;
    }
    const when = (at) => (num(at) !== null ? h("time", { class: "pd-event-time", datetime: fmt.iso(at) }, fmt.time(at)) : null);
    const items = entries.map((e) => {
      if (e.kind === "tool_call") {
        const name = e.name ? String(e.name) : "tool";
        const pending = e.result === null || e.result === undefined;
        // Focusable: a long value scrolls inside its box, and the keyboard must reach it too.
        const pre = (text) => h("pre", { tabindex: "0" }, text);
        const body = e.name
          ? h("dl", { class: "pd-tool-io" },
            h("dt", null, "Arguments"), h("dd", null, pre(capped(e.arguments) || "{}")),
            h("dt", null, "Result"), h("dd", null, pending ? h("span", { class: "pd-muted" }, "No result") : pre(capped(e.result))))
          : pre(capped(e.text));
        return h("li", { class: "pd-event pd-event-tool" },
          h("details", null,
            h("summary", null,
              h("span", { class: "pd-event-kind" }, "Tool call"), " ",
              h("code", null, name), pending && e.name ? h("span", { class: "pd-muted" }, " · no result") : null,
              " ", when(e.at)),
            body));
      }
      if (e.kind === "barge_in") {
        const turn = typeof e.turn_index === "number" ? ` in turn #${e.turn_index + 1}` : "";
        return h("li", { class: "pd-event pd-event-bargein" },
          h("span", { class: "pd-event-kind" }, "Barge-in"),
          ` The caller interrupted the agent${turn}`,
          num(e.bargein_ms) !== null ? ` (playback stopped in ${fmt.ms(e.bargein_ms)})` : "",
          " ", when(e.at));
      }
      if (e.kind === "error") {
        return h("li", { class: "pd-event pd-event-error" },
          h("span", { class: "pd-event-kind" }, "Error"), " ",
          h("code", { class: "pd-error-code" }, String(e.error_code)), " ", when(e.at));
      }
      return null;
    });
    section.append(h("ol", { class: "pd-timeline" }, items));
    return section;
  }

  transcript(call) {
    let lines = (Array.isArray(call.transcript) ? call.transcript : []).map(normLine).filter((l) => l.text);
    if (!lines.length && Array.isArray(call.turns)) lines = call.turns.flatMap(linesFromTurn);
    const dropped = typeof call.dropped_lines === "number" && call.dropped_lines > 0 ? call.dropped_lines : 0;
    return h("section", { class: "pd-detail-section" },
      h("h3", null, "Transcript"),
      dropped
        ? h("p", { class: "pd-muted pd-dropped" },
          `${fmt.num(dropped)} later ${dropped === 1 ? "line was" : "lines were"} not kept: the call reached its transcript size limit.`)
        : null,
      lines.length
        ? h("ol", { class: "pd-transcript pd-conversation" }, lines.map((l) => {
          const el = transcriptLine(l, { terms: this.terms });
          if (l.timestamp !== null) el.dataset.at = String(l.timestamp); // where the recording plays it
          return el;
        }))
        : h("p", { class: "pd-muted" }, "Nothing said yet."));
  }
}
