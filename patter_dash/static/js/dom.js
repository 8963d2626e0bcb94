/*
 * dom.js — the only way the dashboard builds DOM.
 *
 * Owns: element construction (HTML and SVG) from createElement /
 * createElementNS + textContent, attribute setting that refuses event-handler
 * attributes and string-to-code sinks, and small helpers (clear, toggle).
 *
 * Everything a caller says is hostile: no function here ever parses markup.
 * The page runs with `require-trusted-types-for 'script'; trusted-types 'none'`,
 * so an innerHTML assignment anywhere would throw — by design.
 */

const SVG_NS = "http://www.w3.org/2000/svg";

/* Attributes we never set from data, whatever the caller asks for. */
const FORBIDDEN_ATTR = /^(on|style$|srcdoc$|formaction$)/i;

function applyAttrs(el, attrs) {
  if (!attrs) return;
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (FORBIDDEN_ATTR.test(name)) throw new Error(`refusing attribute ${name}`);
    if (name === "class") {
      el.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : String(value));
    } else if (name === "dataset") {
      for (const [k, v] of Object.entries(value)) el.dataset[k] = String(v);
    } else if (name === "text") {
      el.textContent = String(value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
}

function appendChildren(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** h("div", {class: "x"}, "text", otherNode) — text children become Text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  applyAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Same as h() for SVG elements. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  applyAttrs(el, attrs);
  appendChildren(el, children);
  return el;
}

/** Remove all children (never via innerHTML). */
export function clear(el) {
  el.replaceChildren();
  return el;
}

/** Replace the children of el with the given nodes/strings. */
export function fill(el, ...children) {
  el.replaceChildren();
  appendChildren(el, children);
  return el;
}

/** Set textContent only if it changed (avoids layout churn on hot paths). */
export function setText(el, text) {
  const t = text === null || text === undefined ? "" : String(text);
  if (el.textContent !== t) el.textContent = t;
}

/** Look up a required element by id. */
export function byId(id) {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}
