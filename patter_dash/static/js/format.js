/*
 * format.js — how numbers, money, durations and times are shown.
 *
 * Owns: every human-readable rendering of a value coming from the API.
 * Times are shown in the browser's own time zone (TIME_ZONE), which the header
 * names. Missing values (null/undefined/NaN) render as an em dash.
 */

export const DASH = "—";
export const TIME_ZONE = (() => {
  try {
    return Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  } catch {
    return "local time";
  }
})();

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

const intFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const oneDecFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 1 });
const moneyFmt = new Intl.NumberFormat(undefined, {
  style: "currency", currency: "USD", minimumFractionDigits: 2, maximumFractionDigits: 2,
});
const smallMoneyFmt = new Intl.NumberFormat(undefined, {
  style: "currency", currency: "USD", minimumFractionDigits: 4, maximumFractionDigits: 4,
});
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const shortDateTimeFmt = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});
const sameYearFmt = new Intl.DateTimeFormat(undefined, {
  month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeFmt = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

export function num(v) {
  return isNum(v) ? intFmt.format(v) : DASH;
}

export function num1(v) {
  return isNum(v) ? oneDecFmt.format(v) : DASH;
}

/** US dollars; sub-cent amounts keep four decimals so they are not shown as $0.00. */
export function money(v) {
  if (!isNum(v)) return DASH;
  if (v !== 0 && Math.abs(v) < 1) return smallMoneyFmt.format(v);
  return moneyFmt.format(v);
}

export function ms(v) {
  return isNum(v) ? `${intFmt.format(Math.round(v))} ms` : DASH;
}

/** Seconds → "m:ss" or "h:mm:ss". */
export function clock(seconds) {
  if (!isNum(seconds)) return DASH;
  const total = Math.max(0, Math.floor(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = String(total % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Seconds → "1h 02m", "3m 07s", "42s". */
export function duration(seconds) {
  if (!isNum(seconds)) return DASH;
  const total = Math.max(0, Math.round(seconds));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const sec = total % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/** A size in bytes: "812 KB", "1.2 MB" (binary multiples, as file managers show them). */
export function bytes(v) {
  if (!isNum(v) || v < 0) return DASH;
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let n = v;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${intFmt.format(n)} ${units[0]}` : `${n < 10 ? oneDecFmt.format(n) : intFmt.format(n)} ${units[i]}`;
}

export function minutes(v) {
  return isNum(v) ? `${oneDecFmt.format(v)} min` : DASH;
}

/** Epoch seconds → date and time in the browser's zone. */
export function dateTime(epochSeconds) {
  return isNum(epochSeconds) ? dateTimeFmt.format(new Date(epochSeconds * 1000)) : DASH;
}

/** Compact date and time for tables: the year only when it is not this year. */
export function tableDateTime(epochSeconds) {
  if (!isNum(epochSeconds)) return DASH;
  const d = new Date(epochSeconds * 1000);
  return d.getFullYear() === new Date().getFullYear() ? sameYearFmt.format(d) : dateTimeFmt.format(d);
}

export function shortDateTime(epochSeconds) {
  return isNum(epochSeconds) ? shortDateTimeFmt.format(new Date(epochSeconds * 1000)) : DASH;
}

export function time(epochSeconds) {
  return isNum(epochSeconds) ? timeFmt.format(new Date(epochSeconds * 1000)) : DASH;
}

const axisHourFmt = new Intl.DateTimeFormat(undefined, { hour: "numeric", minute: "2-digit" });
const axisDayFmt = new Intl.DateTimeFormat(undefined, { month: "short", day: "numeric" });

/**
 * Time-axis tick labels in the browser's zone and locale: days for daily
 * ticks, else times, with the date under the first tick of each day.
 */
export function axisTicks(splits, incrementSeconds) {
  let prevDay = null;
  return splits.map((v) => {
    if (!isNum(v)) return null;
    const d = new Date(v * 1000);
    if (incrementSeconds >= 86400) return axisDayFmt.format(d);
    const day = d.toDateString();
    const label = axisHourFmt.format(d);
    const withDay = day !== prevDay ? `${label}\n${axisDayFmt.format(d)}` : label;
    prevDay = day;
    return withDay;
  });
}

/** ISO 8601 string for a machine-readable <time datetime>. */
export function iso(epochSeconds) {
  return isNum(epochSeconds) ? new Date(epochSeconds * 1000).toISOString() : "";
}

/** "in-progress" / "no_answer" → "In progress" / "No answer". */
export function label(v) {
  if (v === null || v === undefined || v === "") return DASH;
  const t = String(v).replace(/[-_]+/g, " ").trim();
  return t.charAt(0).toUpperCase() + t.slice(1);
}

/** Provider mode names as operators know them. */
const MODE_NAMES = {
  pipeline: "Pipeline",
  openai_realtime: "OpenAI Realtime",
  realtime: "Realtime",
  elevenlabs_convai: "ElevenLabs ConvAI",
  convai: "ConvAI",
};

export function mode(v) {
  if (v === null || v === undefined || v === "") return DASH;
  return MODE_NAMES[v] || label(v);
}

/** Who said a line: the caller or the agent. */
export function speaker(role) {
  const r = String(role || "").toLowerCase();
  if (r === "user" || r === "caller" || r === "human") return "Caller";
  if (r === "assistant" || r === "agent" || r === "bot" || r === "ai") return "Agent";
  if (r === "system") return "System";
  if (r === "tool" || r === "function") return "Tool";
  return label(role);
}

export function speakerClass(role) {
  const who = speaker(role);
  return who === "Caller" ? "caller" : who === "Agent" ? "agent" : "other";
}

/** Flags the backend sets on a call ("clock_skew") as words. */
const FLAG_NAMES = {
  clock_skew: "Clock skew",
  no_start: "No start event",
  late_turn: "Late turn",
  late_status: "Late status",
  transcript_truncated: "Transcript truncated",
  evicted_idle: "Closed when idle",
  stale_timeout: "Closed after no events",
  number_masked: "Number masked",
};

export function flag(v) {
  return FLAG_NAMES[v] || label(v);
}

/** "deepgram · openai · elevenlabs" from {stt, llm, tts, telephony}. */
export function providerList(providers) {
  if (!providers || typeof providers !== "object") return DASH;
  const parts = ["stt", "llm", "tts", "telephony"]
    .map((k) => providers[k])
    .filter((v) => v !== null && v !== undefined && v !== "");
  return parts.length ? parts.join(" · ") : DASH;
}

export { isNum };
