/*
 * scheduler.js — when the page redraws and refetches.
 *
 * Owns: per-animation-frame coalescing of DOM work (hundreds of events per
 * second become one redraw per frame: a job scheduled several times before
 * the next frame runs once), and the debounce/throttle helpers used for
 * refetches triggered by live events.
 */

const jobs = new Map();
let frameRequested = false;

function flush() {
  frameRequested = false;
  const batch = Array.from(jobs.values());
  jobs.clear();
  for (const job of batch) {
    try {
      job();
    } catch (err) {
      // A broken renderer must not stop the others; report it once.
      reportError(err);
    }
  }
}

function reportError(err) {
  if (typeof window.reportError === "function") window.reportError(err);
  else setTimeout(() => { throw err; });
}

/** Run fn on the next animation frame; scheduling the same key again before then replaces it. */
export function schedule(key, fn) {
  jobs.set(key, fn);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(flush);
  }
}

/** Call fn once, `wait` ms after the last call. */
export function debounce(fn, wait) {
  let timer = null;
  const debounced = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn(...args);
    }, wait);
  };
  debounced.cancel = () => {
    clearTimeout(timer);
    timer = null;
  };
  return debounced;
}

/**
 * Run fn soon (after `delay` ms) but at most once every `interval` ms, however
 * often it is asked for; the last request in a burst is always honoured.
 */
export function throttle(fn, interval, delay = 0) {
  let last = 0;
  let timer = null;
  return () => {
    if (timer) return;
    const wait = Math.max(delay, last + interval - Date.now());
    timer = setTimeout(() => {
      timer = null;
      last = Date.now();
      fn();
    }, wait);
  };
}
