// The administrator's compliance view: for one site, the state rules in force (each with its source, or
// "unknown" and what was read) and the figures from the system's own records.

import { get } from "./api.js";
import { h, fill } from "./dom.js";
import { KIND_LABELS } from "./format.js";

const RULE_NAMES = {
  telepharmacy_allowed: "Telepharmacy sites allowed",
  max_sites_per_pharmacist: "Sites one pharmacist supervises at once",
  counselling_fills: "Fills that need counselling",
  counselling_kind: "Counselling given or offered",
  counselling_by_video: "Counselling by video",
  counselling_may_decline: "Patient may decline counselling",
  schedules_allowed: "DEA schedules at a remote site",
  photos: "Views per dosage form",
  recording_consent: "Consent to record a call",
  retention_prescription_days: "Prescription records kept (days)",
  retention_verification_days: "Verification records kept (days)",
  retention_audit_days: "Audit records kept (days)",
  retention_recording_days: "Call recordings kept (days)",
  retention_surveillance_days: "Surveillance video kept (days)",
};

function shownValue(value) {
  if (value === true) return "Yes";
  if (value === false) return "No";
  if (Array.isArray(value)) return value.length ? value.join(", ") : "None";
  if (value && typeof value === "object") {
    // The views by dosage form, named as the console names them elsewhere.
    return Object.entries(value).map(([form, kinds]) => `${form.replace("_", " / ")}: ${kinds.map((k) => KIND_LABELS[k] || k).join(", ")}`).join("; ");
  }
  return String(value).replace("_", " ");
}

function isoDay(d) {
  return d.toISOString().slice(0, 10);
}

/** The site's controlled-substance log for an inspector: a range of days (UTC) and a CSV to download. */
function controlledLog(siteId, days) {
  const today = new Date();
  const from = h("input", { type: "date", id: "comp-log-from", value: isoDay(new Date(today.getTime() - days * 86400000)), "aria-label": "First day" });
  const to = h("input", { type: "date", id: "comp-log-to", value: isoDay(today), "aria-label": "Last day" });
  const link = h("a", { class: "btn small", id: "comp-log-csv", download: "" }, "Download CSV");
  const update = () => {
    const q = new URLSearchParams({ from: from.value, to: to.value });
    link.href = `/api/v1/sites/${encodeURIComponent(siteId)}/controlled-log?${q}`;
  };
  from.addEventListener("change", update);
  to.addEventListener("change", update);
  update();
  return h("div", { class: "controlled-log" },
    h("h3", {}, "Controlled-substance log"),
    h("p", { class: "card-sub" }, "Every controlled fill decided in the days chosen (UTC), for an inspector. Each download is audited."),
    h("div", { class: "controlled-log-range" }, from, " to ", to, " ", link));
}

export class CompliancePanel {
  constructor({ site, body, note }) {
    this.site = site;
    this.body = body;
    this.note = note;
    this.seq = 0;
    site.addEventListener("change", () => this.load());
  }

  /** Fills the site picker once; then shows the chosen (or first) site. */
  async open(sites) {
    if (!this.site.options.length) {
      fill(this.site, sites.map((s) => h("option", { value: s.id }, `${s.code} · ${s.name} (${s.state})`)));
    }
    await this.load();
  }

  async load() {
    const seq = ++this.seq;
    if (!this.site.value) {
      fill(this.body, h("p", { class: "no-data" }, "No site yet."));
      return;
    }
    this.note.textContent = "Loading…";
    let data;
    try {
      data = await get(`/api/v1/sites/${encodeURIComponent(this.site.value)}/compliance`);
    } catch (err) {
      if (seq === this.seq) this.note.textContent = `Could not load the site's compliance: ${err.message}`;
      return;
    }
    if (seq !== this.seq) return;
    this.note.textContent = "";
    this.render(data);
  }

  render(data) {
    if (!data.rules) {
      fill(this.body, h("p", { class: "no-data" }, `The rules file has no rules for ${data.site.state}: nothing is enforced there.`));
      return;
    }
    const rows = Object.entries(data.rules.rules).map(([name, rule]) => h("tr", { class: rule.value === "unknown" ? "rule-unknown" : null },
      h("th", { scope: "row" }, RULE_NAMES[name] || name),
      h("td", {}, shownValue(rule.value), rule.site ? h("div", { class: "rule-site" }, `Site's own rule: ${rule.site}`) : null),
      h("td", { class: "rule-source" }, rule.source || `Not settled. Read: ${rule.read}`)));
    const f = data.figures;
    const supervising = f.supervising_now.length
      ? h("ul", {}, f.supervising_now.map((p) => h("li", {}, `${p.pharmacist}: ${p.sites_now.length} site${p.sites_now.length === 1 ? "" : "s"} now (${p.sites_now.join(", ")})${p.limit ? `, limit ${p.limit}` : ""}`)))
      : h("p", { class: "no-data" }, "No pharmacist supervises this site now.");
    const schedules = Object.entries(f.controlled_fills.by_schedule);
    const oldest = Object.entries(f.oldest_record).map(([what, at]) => h("li", {}, `${what.replace("_", " ")}: ${at ? new Date(at).toLocaleDateString() : "none"}`));
    fill(this.body,
      h("section", { class: "card wide" },
        h("h2", {}, `Rules in force: ${data.rules.name}`),
        h("p", { class: "card-sub" }, `Read: ${data.rules.read}`),
        h("table", { class: "rules-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "Rule"), h("th", {}, "Value"), h("th", {}, "Source"))),
          h("tbody", {}, rows))),
      h("section", { class: "card" }, h("h2", {}, "Supervising now"),
        h("p", { class: "card-sub" }, `Fills in review, and fills decided in the last ${data.supervision_minutes} minutes`), supervising),
      h("section", { class: "card", id: "compliance-counselling" }, h("h2", {}, "Counselling"),
        h("ul", {},
          h("li", { dataset: { figure: "fills_due_counselling" } }, `Fills approved with counselling due now: ${f.counselling.fills_due}`),
          h("li", { dataset: { figure: "declined_this_month" } }, `Counselling declined this month: ${f.counselling.declined_this_month}`))),
      h("section", { class: "card" }, h("h2", {}, `Controlled-substance fills, last ${f.controlled_fills.days} days`),
        schedules.length ? h("ul", {}, schedules.map(([s, n]) => h("li", {}, `${s}: ${n}`))) : h("p", { class: "no-data" }, "None."),
        controlledLog(data.site.id, f.controlled_fills.days)),
      h("section", { class: "card", id: "compliance-oldest" }, h("h2", {}, "Oldest record kept"), h("ul", {}, oldest)));
  }
}
