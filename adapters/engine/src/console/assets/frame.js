// Drawing batched per animation frame: the other modules say what changed, and each part of the page redraws at most once a frame.

/** What the next frame redraws: "fleet" (data changed), "clock" (ages moved on), "options", "events", "send". */
const dirty = new Set();
let frameRequested = false;

/** Who draws what: each part of the page says which changes it follows, in the order drawn. */
const drawers = [];

/** Has `draw` run in the next frame after any of `parts` changed. */
export function draws(parts, draw) {
  drawers.push({ parts, draw });
}

/** Marks parts of the page to redraw in the next animation frame. */
export function invalidate(...parts) {
  for (const part of parts) dirty.add(part);
  if (!frameRequested) {
    frameRequested = true;
    requestAnimationFrame(drawFrame);
  }
}

function drawFrame() {
  frameRequested = false;
  const changed = new Set(dirty);
  dirty.clear();
  for (const { parts, draw } of drawers) {
    if (parts.some((part) => changed.has(part))) draw();
  }
}
