// The instance page's charts: inline SVG, one per series, over the last hour.

import { el, fill, svg } from "./dom.js";
import { DASH, formatCpu, formatMemory } from "./format.js";

/** Samples further apart than this (two missed ones at the console's 30 s spacing) leave a gap in the chart, not a slope. */
const CHART_GAP_MS = 90 * 1000;
const HOUR_MS = 3600 * 1000;
const CHART = { width: 560, height: 132, left: 52, right: 10, top: 10, bottom: 22 };

export function drawCharts(parts, trend) {
  const last = trend.at(-1);
  fill(
    parts.legend,
    el("span", { class: "key cpu" }, "CPU ", el("b", null, last ? formatCpu(last.cpu_percent) : DASH)),
    el("span", { class: "key memory" }, "Memory ", el("b", null, last ? formatMemory(last.memory_mb) : DASH)),
  );
  if (!trend.length) {
    fill(
      parts.charts,
      el("p", { class: "muted" }, "No samples yet: the console keeps one every 30 s from the heartbeats, for an hour."),
    );
    return;
  }
  fill(
    parts.charts,
    lineChart(trend, (s) => s.cpu_percent, "%", "cpu", "CPU"),
    lineChart(trend, (s) => s.memory_mb, " MiB", "memory", "Memory"),
  );
}

/** 1, 2, 2.5 or 5 times a power of ten: the smallest at or above `v`, for the axis' top. */
function niceCeiling(v) {
  if (!(v > 0)) return 1;
  const power = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * power).find((n) => n >= v);
}

/** An hour of `samples` as a line over a faint area, with its scale on the left and minutes below. */
function lineChart(samples, pick, unit, tone, label) {
  const { width, height, left, right, top, bottom } = CHART;
  const [plotWidth, plotHeight] = [width - left - right, height - top - bottom];
  const format = (v) => `${Number(v.toFixed(2))}${unit}`;
  // The samples' clock is the server's: the window ends at the newest one if it is ahead of ours.
  const end = Math.max(Date.now(), samples.at(-1).at_ms);
  const start = end - HOUR_MS;
  const points = samples.filter((s) => s.at_ms >= start && pick(s) != null).map((s) => [s.at_ms, pick(s)]);
  const top_ = niceCeiling(Math.max(...points.map(([, v]) => v)) * 1.1);
  const x = (t) => left + ((t - start) / HOUR_MS) * plotWidth;
  const y = (v) => top + plotHeight - (v / top_) * plotHeight;
  const grid = [0, top_ / 2, top_].map((v) => [
    svg("line", { class: "grid", x1: left, x2: width - right, y1: y(v), y2: y(v) }),
    svg("text", { class: "tick", x: left - 8, y: y(v) + 4, "text-anchor": "end" }, format(v)),
  ]);
  const minutes = [60, 45, 30, 15, 0].map((m, n, all) =>
    svg(
      "text",
      {
        class: "tick",
        x: x(end - m * 60000),
        y: height - 4,
        "text-anchor": n === 0 ? "start" : n === all.length - 1 ? "end" : "middle",
      },
      m ? `−${m} min` : "now",
    ),
  );
  const segments = [];
  for (const p of points) {
    const segment = segments.at(-1);
    if (segment && p[0] - segment.at(-1)[0] <= CHART_GAP_MS) segment.push(p);
    else segments.push([p]);
  }
  const path = (segment) =>
    segment.map(([t, v], n) => `${n ? "L" : "M"}${x(t).toFixed(1)},${y(v).toFixed(1)}`).join("");
  const base = y(0).toFixed(1);
  const shapes = segments.map((segment) =>
    segment.length === 1
      ? svg("circle", { class: "point", cx: x(segment[0][0]), cy: y(segment[0][1]), r: 2.5 })
      : [
          svg("path", {
            class: "area",
            d: `${path(segment)}L${x(segment.at(-1)[0]).toFixed(1)},${base}L${x(segment[0][0]).toFixed(1)},${base}Z`,
          }),
          svg("path", { class: "line", d: path(segment) }),
        ],
  );
  const [lastT, lastV] = points.at(-1) ?? [end, 0];
  return svg(
    "svg",
    {
      class: `chart ${tone}`,
      viewBox: `0 0 ${width} ${height}`,
      role: "img",
      "aria-label": `${label} over the last hour`,
    },
    svg("title", null, `${label}: ${format(lastV)} now`),
    grid,
    minutes,
    shapes,
    points.length ? svg("circle", { class: "now", cx: x(lastT), cy: y(lastV), r: 3.5 }) : null,
  );
}
