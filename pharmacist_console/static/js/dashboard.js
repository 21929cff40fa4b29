// The dashboard: turnaround by site and by pharmacist, rejections by reason, queue depth over time.

import { get } from "./api.js";
import { barChart, timeChart } from "./charts.js";
import { h, fill } from "./dom.js";
import { formatDuration } from "./format.js";

function card(title, sub, body, { wide = false } = {}) {
  return h("section", { class: ["card", wide ? "wide" : null] }, h("h2", {}, title), sub ? h("p", { class: "card-sub" }, sub) : null, body);
}

function noData(text) {
  return h("p", { class: "no-data" }, text);
}

const legend = () => h("div", { class: "legend" }, h("span", { class: "lg-p50" }, "Median (p50)"), h("span", { class: "lg-p90" }, "p90"));
const TURNAROUND_SERIES = [
  { key: "p50_seconds", cls: "bar-p50", name: "p50" },
  { key: "p90_seconds", cls: "bar-p90", name: "p90" },
];

function stepName(seconds) {
  if (seconds % 86400 === 0) return seconds === 86400 ? "day" : `${seconds / 86400} days`;
  if (seconds % 3600 === 0) return seconds === 3600 ? "hour" : `${seconds / 3600} hours`;
  return `${Math.round(seconds / 60)} minutes`;
}

export class Dashboard {
  constructor({ grid, days, note }) {
    this.grid = grid;
    this.days = days;
    this.note = note;
    this.seq = 0;
    days.addEventListener("change", () => this.load());
  }

  async load() {
    const seq = ++this.seq;
    this.note.textContent = "Loading…";
    let data;
    try {
      data = await get(`/api/v1/dashboard?days=${encodeURIComponent(this.days.value)}`);
    } catch (err) {
      if (seq === this.seq) this.note.textContent = `Could not load the figures: ${err.message}`;
      return;
    }
    if (seq !== this.seq) return;
    this.note.textContent = data.scope === "all" ? "All sites" : `Sites in ${data.scope.join(", ") || "no licensed state"}`;
    this.render(data);
  }

  render(data) {
    const t = data.totals;
    const kpi = (label, value) => h("div", { class: "kpi" }, h("div", { class: "kpi-value" }, value), h("div", { class: "kpi-label" }, label));
    const days = Number(data.days);
    const tick = days <= 1
      ? (at) => new Date(at).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" })
      : (at) => new Date(at).toLocaleDateString(undefined, { month: "short", day: "numeric" });
    const sites = data.turnaround_by_site.map((r) => ({ label: `${r.code} (${r.count})`, values: r }));
    const rphs = data.turnaround_by_pharmacist.map((r) => ({ label: `${r.name} (${r.count})`, values: r }));
    const reasons = data.rejections_by_reason.map((r) => ({ label: r.label, values: r }));
    const points = data.queue_depth.points;
    fill(this.grid,
      card("Summary", null, h("div", { class: "kpis" },
        kpi("Decided", String(t.decided)), kpi("Approved", String(t.approved)), kpi("Rejected", String(t.rejected)),
        kpi("Turnaround p50", formatDuration(t.p50_seconds)), kpi("Turnaround p90", formatDuration(t.p90_seconds)),
        kpi("Open now", String(t.open_now))), { wide: true }),
      card("Turnaround by site", "Submitted to decided; fills decided in the period (count in brackets).",
        sites.length ? [legend(), barChart(sites, TURNAROUND_SERIES, { format: formatDuration, seconds: true })] : noData("No decisions in this period.")),
      card("Turnaround by pharmacist", "Submitted to decided, by who decided.",
        rphs.length ? [legend(), barChart(rphs, TURNAROUND_SERIES, { format: formatDuration, seconds: true, labelWidth: 230 })] : noData("No decisions in this period.")),
      card("Rejections by reason", "A rejection with several reasons counts once for each.",
        reasons.length ? barChart(reasons, [{ key: "count", cls: "bar-reason", name: "rejections" }], { format: (v) => String(v), labelWidth: 200, integer: true }) : noData("No rejections in this period.")),
      card("Queue depth over time", `The most fills open (waiting or in review) and in review at once, per ${stepName(data.queue_depth.bucket_seconds)}.`,
        [h("div", { class: "legend" }, h("span", { class: "lg-open" }, "Open"), h("span", { class: "lg-review" }, "In review")),
          timeChart(points, [{ key: "peak_open", cls: "line" }, { key: "peak_in_review", cls: "line-review" }], { formatTick: tick })]));
  }
}
