/*
 * recording.js — the call detail's recording: player, waveform, and the transcript line being spoken.
 *
 * Owns: one section of the detail drawer, kept across the drawer's redraws (as the
 * annotation form is). For a call with a recording it shows an <audio> element (the
 * server's /call/recording?id=, with Range, so seeking is instant) and a waveform per
 * channel drawn from the server's peaks (top: the caller, Patter's left channel;
 * bottom: the agent, its right channel) with a marker at each turn and the playhead.
 * As it plays, the transcript line being spoken is highlighted (aria-current); clicking
 * a line, or its "play from" button, seeks there; clicking the waveform seeks too.
 * A call that names a recording the server cannot serve says "Recording not available";
 * a call without one shows nothing. Line and turn times are their timestamps less the
 * call's start (Patter's recording starts with the call).
 */

import { h, fill, setText } from "./dom.js";
import * as fmt from "./format.js";
import { recordingUrl, peaksUrl, getJSON, isAbort } from "./api.js";

const ROWS = [
  { key: "caller", label: "Caller", color: "--pd-caller-text" },
  { key: "agent", label: "Agent", color: "--pd-agent-text" },
  { key: "mixed", label: "Both", color: "--pd-accent" },
];

export class RecordingPlayer {
  constructor() {
    this.callId = null;
    this.call = null;
    this.peaks = null;
    this.lines = []; // [{el, at}] in reading order: the detail's transcript lines with a time
    this.current = null;
    this.status = h("p", { class: "pd-muted pd-recording-status", role: "status" });
    this.audio = h("audio", { class: "pd-recording-audio", controls: "", preload: "metadata" });
    this.canvas = h("canvas", { class: "pd-waveform", height: "96", role: "img", "aria-label": "Waveform" });
    this.legend = h("ul", { class: "pd-legend pd-recording-legend", "aria-label": "Waveform channels" });
    this.body = h("div", { class: "pd-recording-body", hidden: "" }, this.audio, this.canvas, this.legend);
    this.el = h("section", { class: "pd-detail-section pd-recording", hidden: "", "aria-labelledby": "pd-recording-title" },
      h("h3", { id: "pd-recording-title" }, "Recording"), this.status, this.body);
    this.audio.addEventListener("timeupdate", () => this.follow());
    this.audio.addEventListener("seeked", () => this.follow());
    this.audio.addEventListener("error", () => {
      if (this.audio.getAttribute("src")) this.unavailable();
    });
    this.canvas.addEventListener("click", (ev) => {
      const box = this.canvas.getBoundingClientRect();
      const duration = this.duration();
      if (!duration || !box.width) return;
      this.seek(((ev.clientX - box.left) / box.width) * duration, false);
    });
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this.draw()).observe(this.canvas);
  }

  /** The drawer shows `call` (again, after a redraw, or another one). */
  show(call) {
    const id = String(call.call_id);
    this.call = call;
    if (id === this.callId) {
      this.draw();
      return;
    }
    this.reset();
    this.callId = id;
    this.load(id);
  }

  reset() {
    this.callId = null;
    this.peaks = null;
    this.image = null;
    this.current = null;
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load(); // drops the old call's connection and buffered audio
    this.el.hidden = true;
    this.body.hidden = true;
    setText(this.status, "");
  }

  /** The drawer closed: stop playing. */
  stop() {
    this.audio.pause();
  }

  async load(id) {
    try {
      const answer = await getJSON(peaksUrl(id));
      if (id !== this.callId) return;
      this.peaks = answer && answer.data ? answer.data : null;
      if (!this.peaks) {
        this.el.hidden = true; // no recording: nothing to say
        return;
      }
      this.el.hidden = false;
      this.body.hidden = false;
      setText(this.status, "");
      this.audio.src = recordingUrl(id);
      fill(this.legend, (this.peaks.channels || []).map((c) => {
        const row = ROWS.find((r) => r.key === c.name) || ROWS[2];
        return h("li", null, h("span", { class: "pd-swatch", dataset: { channel: row.key } }), row.label);
      }));
      this.draw();
      this.mark();
    } catch (err) {
      if (isAbort(err) || id !== this.callId) return;
      if (err && err.status === 404 && err.body && err.body.recorded === false) {
        this.el.hidden = true; // no recording: nothing to say
        return;
      }
      this.unavailable();
    }
  }

  unavailable() {
    this.el.hidden = false;
    this.body.hidden = true;
    this.audio.removeAttribute("src");
    setText(this.status, "Recording not available.");
    this.mark();
  }

  available() {
    return !this.body.hidden && this.peaks !== null;
  }

  duration() {
    const d = this.audio.duration;
    if (Number.isFinite(d) && d > 0) return d;
    return this.peaks && typeof this.peaks.duration === "number" ? this.peaks.duration : 0;
  }

  /** Seconds into the recording of an epoch time, or null. */
  offset(at) {
    if (typeof at !== "number" || !this.call || typeof this.call.started_at !== "number") return null;
    return Math.max(0, at - this.call.started_at);
  }

  /**
   * The detail drew its transcript (`list`: its <li> elements, each with data-at = the line's epoch time).
   * With a recording, each line can be clicked, and gets a button for the keyboard.
   */
  attach(list) {
    this.lines = [];
    this.current = null;
    if (!list) return;
    for (const el of list.querySelectorAll("li[data-at]")) {
      const at = this.offset(Number(el.dataset.at));
      if (at !== null) this.lines.push({ el, at });
    }
    this.mark();
  }

  /** Lines become seekable (button, click) when the recording is there; the highlight is put back after a redraw. */
  mark() {
    const on = this.available();
    for (const line of this.lines) {
      const { el, at } = line;
      let button = el.querySelector(".pd-line-seek");
      if (on && !button) {
        button = h("button", { type: "button", class: "pd-line-seek", "aria-label": `Play from ${fmt.clock(at)}` }, `▶ ${fmt.clock(at)}`);
        button.addEventListener("click", (ev) => {
          ev.stopPropagation();
          this.seek(at, true);
        });
        el.append(button);
        el.classList.add("pd-line-seekable");
        el.addEventListener("click", (ev) => {
          if (this.available() && !(ev.target instanceof HTMLElement && ev.target.closest("a, button, details"))) this.seek(at, true);
        });
      } else if (!on && button) {
        button.remove();
        el.classList.remove("pd-line-seekable");
      }
    }
    this.follow(true);
  }

  seek(seconds, play) {
    if (!this.available()) return;
    this.audio.currentTime = Math.min(Math.max(0, seconds), this.duration() || seconds);
    this.follow();
    if (play) this.audio.play().catch(() => {}); // refused (no gesture, no audio device): the seek still stands
  }

  /** Highlight the line being spoken: the last one that started at or before the playhead. */
  follow(force = false) {
    const t = this.audio.currentTime || 0;
    let now = null;
    if (this.available() && (t > 0 || !this.audio.paused || force)) {
      for (const line of this.lines) {
        if (line.at <= t + 0.05) now = line;
        else break;
      }
    }
    if (now !== this.current || force) {
      for (const line of this.lines) {
        const on = line === now;
        line.el.classList.toggle("pd-line-playing", on);
        if (on) line.el.setAttribute("aria-current", "true");
        else line.el.removeAttribute("aria-current");
      }
      this.current = now;
    }
    this.drawHead();
  }

  draw() {
    const canvas = this.canvas;
    const peaks = this.peaks;
    if (!peaks || this.body.hidden) return;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const style = getComputedStyle(canvas);
    const channels = Array.isArray(peaks.channels) ? peaks.channels : [];
    const rowHeight = height / Math.max(1, channels.length);
    // Scaled to the loudest sample of the call (a phone line is quiet), at most 8 times.
    let loudest = 0;
    for (const c of channels) {
      for (const v of [...(Array.isArray(c.min) ? c.min : []), ...(Array.isArray(c.max) ? c.max : [])]) {
        if (typeof v === "number" && Math.abs(v) > loudest) loudest = Math.abs(v);
      }
    }
    const gain = 0.95 / Math.max(loudest, 0.95 / 8);
    channels.forEach((channel, row) => {
      const spec = ROWS.find((r) => r.key === channel.name) || ROWS[2];
      const mins = Array.isArray(channel.min) ? channel.min : [];
      const maxs = Array.isArray(channel.max) ? channel.max : [];
      const mid = rowHeight * row + rowHeight / 2;
      const half = rowHeight / 2 - 2;
      ctx.fillStyle = style.getPropertyValue(spec.color).trim() || "#4f46e5";
      const n = maxs.length;
      for (let x = 0; x < width; x += 1) {
        // Every bucket under this pixel column: the loudest of them.
        const from = Math.floor((x / width) * n);
        const to = Math.max(from + 1, Math.floor(((x + 1) / width) * n));
        let lo = 0;
        let hi = 0;
        for (let i = from; i < to && i < n; i += 1) {
          if (typeof mins[i] === "number" && mins[i] < lo) lo = mins[i];
          if (typeof maxs[i] === "number" && maxs[i] > hi) hi = maxs[i];
        }
        const top = mid - hi * gain * half;
        const bottom = mid - lo * gain * half;
        ctx.fillRect(x, top, 1, Math.max(1, bottom - top));
      }
    });
    // Turn markers: where each turn's caller words and agent answer were logged.
    const duration = this.duration();
    ctx.fillStyle = style.getPropertyValue("--pd-text-faint").trim() || "#5c6776";
    const turns = this.call && Array.isArray(this.call.turns) ? this.call.turns : [];
    const marks = [];
    for (const turn of turns) {
      const at = this.offset(turn && turn.timestamp);
      if (at === null || !duration || at > duration) continue;
      const x = Math.round((at / duration) * width);
      ctx.fillRect(x, 0, 1, height);
      marks.push(fmt.clock(at));
    }
    canvas.setAttribute("aria-label",
      `Waveform of the recording, ${fmt.duration(duration)}: ${channels.map((c) => (ROWS.find((r) => r.key === c.name) || ROWS[2]).label.toLowerCase()).join(" above, ")} below` +
      (marks.length ? `; turns at ${marks.join(", ")}` : ""));
    this.image = ctx.getImageData(0, 0, canvas.width, canvas.height);
    this.drawHead();
  }

  /** The playhead over the drawn waveform (the waveform itself is kept, not redrawn). */
  drawHead() {
    if (!this.image || !this.available()) return;
    const canvas = this.canvas;
    const ctx = canvas.getContext("2d");
    ctx.putImageData(this.image, 0, 0);
    const duration = this.duration();
    if (!duration) return;
    const ratio = window.devicePixelRatio || 1;
    const x = Math.round((this.audio.currentTime / duration) * canvas.width);
    ctx.save();
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = getComputedStyle(canvas).getPropertyValue("--pd-bad").trim() || "#b91c1c";
    ctx.fillRect(Math.min(x, canvas.width - 2 * ratio), 0, 2 * ratio, canvas.height);
    ctx.restore();
  }
}
