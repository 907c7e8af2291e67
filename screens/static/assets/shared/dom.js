// Building the page without HTML strings: every text goes in as a text node, so a
// resident's "<img onerror=...>" shows as those characters and runs nothing. No module
// of the screens parses HTML from a string (tests/browser/test_shell.py checks).

/**
 * h("button", {class: "primary", onclick: fn, "aria-label": "…"}, "Text", child, …)
 * Attributes: `class`, `dataset` (object), `on<event>` (a function), `style` is refused
 * (the CSP forbids inline style attributes: use a class), anything else via setAttribute;
 * `true` sets an empty attribute, `false`/null/undefined leaves it out.
 * Children: strings and numbers become text nodes; null/undefined/false are skipped;
 * arrays are flattened.
 */
export function h(tag, attrs = {}, ...children) {
  const el = tag.includes(":")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.split(":")[1])
    : document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "style") throw new Error("h(): inline style attributes are refused by the CSP; use a class");
    if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on") && typeof value === "function") el.addEventListener(name.slice(2), value);
    else el.setAttribute(name === "className" ? "class" : name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Empty `el`, then add `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A live region that screen readers announce; `kind` "error" is assertive. */
export function announce(region, message, kind = "info") {
  region.setAttribute("role", kind === "error" ? "alert" : "status");
  region.dataset.kind = kind;
  replace(region, message);
}
