// Building the page's DOM: every element is made here, and text from the wire goes in only as text.

const SVG_NS = "http://www.w3.org/2000/svg";

/** An HTML element with attributes (an `on...` function becomes a listener) and children (nodes or text). */
export function el(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element, made like el()'s. */
export function svg(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [name, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) {
      // Only the page's own functions become handlers: a string here would be script made of data.
      if (typeof value !== "function") throw new TypeError(`${name}: expected a function`);
      node.addEventListener(name.slice(2), value);
    } else {
      node.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

/** Replaces a node's children, made as el() makes them (text as text, null and false skipped). */
export function fill(node, ...children) {
  node.replaceChildren();
  return build(node, null, children);
}

/** Sets a node's text only when it differs: most cells do not change from one frame to the next. */
export function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Sets an attribute only when it differs. */
export function setAttr(node, name, value) {
  if (node.getAttribute(name) !== value) node.setAttribute(name, value);
}
