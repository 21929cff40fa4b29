// Small SVG charts drawn from data with DOM calls (no innerHTML, no library).

import { s } from "./dom.js";

const W = 640;

const TICKS = 4;
// Steps that read well on a duration axis, in seconds: 15 s up to a day.
const TIME_STEPS = [15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];

/** The axis top and its step: a round number of ticks above the largest value. */
export function niceScale(v, { integer = false, seconds = false } = {}) {
  const raw = Math.max(v, integer ? TICKS : 1e-9) / TICKS;
  let step;
  if (seconds) step = TIME_STEPS.find((st) => st >= raw) ?? Math.ceil(raw / 86400) * 86400;
  else {
    const p = 10 ** Math.floor(Math.log10(raw));
    step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((st) => st >= raw && (!integer || Number.isInteger(st))) ?? 10 * p;
    if (integer) step = Math.max(1, Math.ceil(step));
  }
  return { max: step * TICKS, step };
}

/**
 * Horizontal bars, one group per row: rows [{label, values: {key: number|null}}], series [{key, cls, name}].
 */
export function barChart(rows, series, { format, labelWidth = 170, integer = false, seconds = false } = {}) {
  const barH = 14;
  const gap = 4;
  const groupH = series.length * (barH + gap) + 10;
  const top = 6;
  const height = top + rows.length * groupH + 22;
  const plotW = W - labelWidth - 60;
  const { max, step } = niceScale(Math.max(0, ...rows.flatMap((r) => series.map((se) => r.values[se.key] ?? 0))), { integer, seconds });
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${height}`, role: "img" });
  const x = (v) => labelWidth + (v / max) * plotW;
  for (let i = 0; i <= TICKS; i += 1) {
    const v = step * i;
    svg.append(s("line", { class: "grid", x1: x(v), x2: x(v), y1: top, y2: height - 20 }));
    svg.append(s("text", { x: x(v), y: height - 6, "text-anchor": "middle" }, format(v)));
  }
  rows.forEach((row, i) => {
    const y0 = top + i * groupH;
    const label = row.label.length > 30 ? `${row.label.slice(0, 29)}…` : row.label;
    const text = s("text", { x: labelWidth - 8, y: y0 + groupH / 2, "text-anchor": "end", "dominant-baseline": "middle" }, label);
    text.append(s("title", {}, row.label));
    svg.append(text);
    series.forEach((se, j) => {
      const v = row.values[se.key];
      const y = y0 + 4 + j * (barH + gap);
      const w = v ? Math.max(1, x(v) - labelWidth) : 0;
      const rect = s("rect", { class: se.cls, x: labelWidth, y, width: w, height: barH, rx: 2 });
      rect.append(s("title", {}, `${row.label} · ${se.name}: ${v === null || v === undefined ? "–" : format(v)}`));
      svg.append(rect);
      svg.append(s("text", { class: "value", x: labelWidth + w + 5, y: y + barH / 2, "dominant-baseline": "middle" },
        v === null || v === undefined ? "–" : format(v)));
    });
  });
  svg.append(s("line", { class: "axis", x1: labelWidth, x2: labelWidth, y1: top, y2: height - 20 }));
  return svg;
}

const HOUR = 3600000;
const DAY = 24 * HOUR;

/** Tick times on local clock boundaries (hours or midnights), at most eight of them. */
export function timeTicks(t0, t1) {
  const span = t1 - t0;
  const step = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 28 * DAY]
    .find((st) => span / st <= 8) ?? 28 * DAY;
  const start = new Date(t0);
  if (step >= DAY) start.setHours(0, 0, 0, 0);
  else start.setMinutes(0, 0, 0);
  const out = [];
  for (let t = start.getTime(); t <= t1; ) {
    const hours = new Date(t).getHours();
    if (t > t0 && (step >= DAY || hours % (step / HOUR) === 0)) out.push(t);
    // Step by local calendar so daylight-saving days still land on midnight.
    const next = new Date(t);
    if (step >= DAY) next.setDate(next.getDate() + step / DAY);
    else next.setHours(next.getHours() + 1);
    t = next.getTime();
  }
  return out;
}

/** Lines over time: points [{at, ...}], lines [{key, cls}] (the first also gets a filled area). */
export function timeChart(points, lines, { formatTick }) {
  const height = 230;
  const left = 44;
  const right = 12;
  const top = 10;
  const bottom = 28;
  const plotW = W - left - right;
  const plotH = height - top - bottom;
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${height}`, role: "img" });
  if (!points.length) return svg;
  const t0 = Date.parse(points[0].at);
  const t1 = Date.parse(points[points.length - 1].at);
  const span = Math.max(1, t1 - t0);
  const { max, step } = niceScale(Math.max(1, ...points.flatMap((p) => lines.map((l) => p[l.key] || 0))), { integer: true });
  const x = (at) => left + ((Date.parse(at) - t0) / span) * plotW;
  const y = (v) => top + plotH - (v / max) * plotH;
  for (let i = 0; i <= TICKS; i += 1) {
    const v = step * i;
    svg.append(s("line", { class: "grid", x1: left, x2: W - right, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: left - 6, y: y(v), "text-anchor": "end", "dominant-baseline": "middle" }, Number.isInteger(v) ? String(v) : v.toFixed(1)));
  }
  for (const t of timeTicks(t0, t1)) {
    const at = new Date(t).toISOString();
    svg.append(s("line", { class: "grid", x1: x(at), x2: x(at), y1: top + plotH, y2: top + plotH + 4 }));
    svg.append(s("text", { x: x(at), y: height - 8, "text-anchor": "middle" }, formatTick(at)));
  }
  lines.forEach((line, li) => {
    const d = points.map((p, i) => `${i ? "L" : "M"}${x(p.at).toFixed(1)},${y(p[line.key] || 0).toFixed(1)}`).join(" ");
    if (li === 0) {
      const area = `${d} L${x(points[points.length - 1].at).toFixed(1)},${y(0)} L${x(points[0].at).toFixed(1)},${y(0)} Z`;
      svg.append(s("path", { class: "area", d: area }));
    }
    svg.append(s("path", { class: line.cls, d }));
  });
  svg.append(s("line", { class: "axis", x1: left, x2: W - right, y1: y(0), y2: y(0) }));
  return svg;
}
