/*
 * keys.js — the keyboard: shortcuts and dialog focus.
 *
 * Owns: the documented shortcuts (/ search, j / k next and previous history
 * row, ? the list of shortcuts), the rule that none fires while the user types
 * in a field or with a modifier held, and keeping Tab inside an open modal
 * dialog (wrapping from its last control to its first and back).
 */

const FOCUSABLE = "a[href], button:not([disabled]), input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex='-1'])";

/** Is the user typing into something that takes letters (so a letter is text, not a command)? */
export function isTyping(target) {
  if (!(target instanceof Element)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) {
    return !["button", "submit", "reset", "checkbox", "radio", "range", "color", "file", "image"].includes(target.type);
  }
  return false;
}

/**
 * Install the page's shortcuts.
 * @param {object} actions  {search(), move(delta), help()}
 */
export function installShortcuts(actions) {
  document.addEventListener("keydown", (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.isComposing) return;
    if (isTyping(ev.target)) return;
    if (document.querySelector("dialog[open]")) return; // a dialog has its own keys (Tab, Esc)
    const action = { "/": () => actions.search(), j: () => actions.move(1), k: () => actions.move(-1), "?": () => actions.help() }[ev.key];
    if (!action) return;
    ev.preventDefault();
    action();
  });
}

/** The controls Tab can reach inside el, in order, skipping hidden ones. */
export function focusables(el) {
  return Array.from(el.querySelectorAll(FOCUSABLE)).filter((e) => e.getClientRects().length > 0 && !e.closest("[hidden], [inert]"));
}

/** Keep Tab and Shift-Tab inside an open modal dialog: from its last control back to its first, and the other way. */
export function trapFocus(dialog) {
  dialog.addEventListener("keydown", (ev) => {
    if (ev.key !== "Tab" || !dialog.open) return;
    const items = focusables(dialog);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const active = document.activeElement;
    if (ev.shiftKey && (active === first || !dialog.contains(active))) {
      ev.preventDefault();
      last.focus();
    } else if (!ev.shiftKey && (active === last || !dialog.contains(active))) {
      ev.preventDefault();
      first.focus();
    }
  });
}
