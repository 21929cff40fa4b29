// Drawing one fill for verification: the prescription beside the evidence and the checks.

import { h, fill } from "./dom.js";
import {
  CHECK_HINTS, CHECK_LABELS, KIND_LABELS, PRIORITY_LABELS, formatDateTime, formatDob, formatNdc,
  formatQuantity, formatWhen,
} from "./format.js";
import { describeChecks, describeFlag, flagBadge } from "./flags.js";
import { isVideo } from "./prefetch.js";

export function checkBadge(result) {
  const r = result || "none";
  return h("span", { class: ["badge", `check-${r}`], title: CHECK_HINTS[r] || "" }, CHECK_LABELS[r] || r);
}

/** A controlled substance's DEA schedule (CII to CV): Schedule II stands out. */
export function scheduleBadge(schedule) {
  if (!schedule) return null;
  return h("span", {
    class: ["badge", "schedule", schedule === "CII" ? "schedule-ii" : null], "data-schedule": schedule,
    title: `Schedule ${schedule.slice(1)} controlled substance`,
  }, schedule);
}

export function priorityBadge(priority) {
  return h("span", { class: ["badge", `prio-${priority}`] }, PRIORITY_LABELS[priority] || priority);
}

function field(label, value, { cls, mono } = {}) {
  return h("div", { class: ["field", cls] },
    h("dt", {}, label),
    h("dd", { class: mono ? "mono" : null }, value === null || value === undefined || value === "" ? "–" : value));
}

function section(title, ...children) {
  return h("section", { class: "rx-section" }, h("h2", {}, title), ...children);
}

function alertSection(title, ...children) {
  return h("section", { class: "rx-section rx-alert" }, h("h2", {}, title), ...children);
}

function prescriptionSection(rx, schedule) {
  return section("Prescription",
    h("div", { class: "patient" },
      h("div", { class: "patient-name", "data-phi": "" }, rx.patient_name),
      h("div", { class: "patient-dob" }, "Born ", h("span", { "data-phi": "" }, formatDob(rx.patient_dob)))),
    h("div", { class: "drug" },
      h("div", { class: "drug-name" }, rx.drug),
      h("div", { class: "drug-strength" }, `${rx.strength} · ${rx.dosage_form}`)),
    h("dl", { class: "fields two" },
      field("Rx number", rx.rx_number, { mono: true }),
      field("Fill", rx.fill_type === "refill" ? "Refill" : "New"),
      field("Expected NDC", formatNdc(rx.expected_ndc), { mono: true }),
      field("Quantity", `${formatQuantity(rx.quantity)}${rx.days_supply ? ` · ${rx.days_supply} days` : ""}`),
      schedule ? field("Schedule", schedule, { cls: "warn" }) : null,
      field("Prescriber", rx.prescriber, { cls: "wide" }),
      field("Directions", rx.directions, { cls: "wide directions" })));
}

function inline(label, value, cls) {
  return h("span", { class: ["kv", cls] }, h("span", { class: "kv-k" }, label), " ", h("span", { class: "kv-v mono" }, value || "–"));
}

function barcodeRow(b, expectedNdc) {
  const ndc = b.matches ? expectedNdc : (b.ndc11_candidates || []).join(" / ") || b.ndc10;
  return h("li", { class: ["barcode", b.matches ? "is-match" : "is-bad"] },
    h("div", { class: "barcode-head" },
      h("span", { class: "barcode-src" }, b.sources.join(" · ")),
      h("span", { class: ["pill", b.matches ? "pill-ok" : "pill-bad"] }, b.matches ? "Matches Rx" : b.error ? "Not usable" : "Does not match")),
    ndc ? h("div", { class: "barcode-ndc" }, h("span", { class: "kv-k" }, b.matches ? "NDC " : "Barcode NDC "), h("span", { class: "mono" }, ndc)) : null,
    !b.matches && expectedNdc ? h("div", { class: "barcode-ndc" }, h("span", { class: "kv-k" }, "Prescribed NDC "), h("span", { class: "mono" }, expectedNdc)) : null,
    h("div", { class: "barcode-meta" },
      inline("GTIN", b.gtin), inline("Lot", b.lot), inline("Exp", b.expiry, b.expired ? "bad" : null)),
    b.error ? h("p", { class: "barcode-error" }, b.error) : null);
}

/** The same barcode scanned at the site and read again from the photo is shown once, with both sources. */
function mergeBarcodes(list, scannedCount, today) {
  const out = new Map();
  list.forEach((b, i) => {
    const key = [b.gtin, b.lot, b.expiry, b.matches, b.error].join("|");
    const source = i < scannedCount ? "Scanned at the site" : "Read from the photo";
    const hit = out.get(key);
    if (hit) {
      if (!hit.sources.includes(source)) hit.sources.push(source);
      return;
    }
    out.set(key, { ...b, sources: [source], expired: Boolean(b.expiry && b.expiry < today) });
  });
  return [...out.values()];
}

function checkSection(d) {
  const detail = d.product_check_detail || {};
  const today = new Date().toISOString().slice(0, 10);
  const barcodes = mergeBarcodes(detail.barcodes || [], (d.barcodes || []).length, today);
  return section("Product check",
    h("div", { class: "check-head" }, checkBadge(d.product_check),
      h("span", { class: "check-hint" }, CHECK_HINTS[d.product_check] || "")),
    barcodes.length ? h("ul", { class: "barcodes" }, barcodes.map((b) => barcodeRow(b, detail.expected_ndc11))) : null,
    d.override_reason || (d.overridden_checks || []).length
      ? h("div", { class: "override" },
          h("p", {}, h("strong", {}, "Technician override: "), d.override_reason || "no reason given"),
          (d.overridden_checks || []).length
            ? h("p", { class: "override-checks" }, "Overridden: ", describeChecks(d.overridden_checks))
            : null)
      : null);
}

/** Every flag the server set on the fill; each must be acknowledged before it can be approved. */
function flagsSection(d) {
  const flags = d.flags || [];
  if (!flags.length) return null;
  return alertSection(`Flags to acknowledge (${flags.length})`,
    h("ul", { class: "flags", id: "v-flags" }, flags.map((f) => h("li", { class: "flag-row", "data-flag": f.code },
      flagBadge(f, { long: true }), h("span", { class: "flag-text" }, describeFlag(f))))));
}

/** What a controlled substance's schedule asks of this decision (the server says, in d.controlled). */
function controlledSection(d) {
  const c = d.controlled;
  if (!c || (c.undo !== false && !c.count_confirmation)) return null;
  return h("section", { class: "rx-section rx-alert controlled", id: "v-controlled" },
    h("h2", {}, `Schedule ${c.schedule.slice(1)} controlled substance`),
    c.count_confirmation
      ? h("p", {}, "Count the units in the counted-units photo: you type your count before approving, and it must match the site's count.")
      : null,
    c.undo === false
      ? h("p", {}, "Your decision is sent at once, with no Undo: a Schedule II record stands as it is made.")
      : null);
}

const OUTCOME = { approve: "Approved", reject: "Rejected" };

function historyRows(list) {
  return h("table", { class: "history-table" },
    h("thead", {}, h("tr", {},
      h("th", { scope: "col" }, "Date"), h("th", { scope: "col" }, "Rx"), h("th", { scope: "col", class: "num" }, "Qty"),
      h("th", { scope: "col", class: "num" }, "Days"), h("th", { scope: "col" }, "Decision"), h("th", { scope: "col" }, "Pharmacist"))),
    h("tbody", {}, list.map((e) => h("tr", { "data-fill": e.fill_id },
      h("td", {}, formatDateTime(e.decided_at || e.submitted_at)),
      h("td", { class: "mono" }, e.rx_number || "–"),
      h("td", { class: "num" }, e.counted_quantity !== null && e.counted_quantity !== undefined && Number(e.counted_quantity) !== Number(e.quantity)
        ? `${formatQuantity(e.counted_quantity)} of ${formatQuantity(e.quantity)}` : formatQuantity(e.quantity ?? e.counted_quantity)),
      h("td", { class: "num" }, e.days_supply ?? "–"),
      h("td", { class: e.outcome === "reject" ? "bad" : e.outcome === "approve" ? "ok" : null },
        OUTCOME[e.outcome] || (e.state ? e.state.replace("_", " ") : "–")),
      h("td", {}, e.pharmacist?.name || "–")))));
}

/** Earlier fills of this prescription and of the same patient and drug, newest first. */
function historySection(d) {
  const hist = d.history;
  if (!hist) return null;
  const same = hist.same_prescription || [];
  const other = hist.same_patient_drug || [];
  return h("section", { class: "rx-section history", id: "v-history" },
    h("h2", {}, "History ", h("span", { class: "history-key" }, h("kbd", {}, "H"), " compare pills")),
    h("h3", {}, `This prescription (${same.length})`),
    same.length ? historyRows(same) : h("p", { class: "muted" }, "No earlier fills."),
    h("h3", {}, `Same patient and drug (${other.length})`),
    other.length ? historyRows(other) : h("p", { class: "muted" }, "No other prescriptions."));
}

function countSection(d) {
  const rxq = d.prescription.quantity;
  const counted = d.counted_quantity;
  const differs = counted !== null && counted !== undefined && Number(counted) !== Number(rxq);
  return section("Count",
    h("div", { class: ["count", differs ? "count-bad" : counted === null || counted === undefined ? "count-none" : "count-ok"] },
      h("span", { class: "count-value" }, counted === null || counted === undefined ? "Not entered" : formatQuantity(counted)),
      h("span", { class: "count-of" }, `counted · ${formatQuantity(rxq)} prescribed`),
      differs ? h("span", { class: "pill pill-bad" }, "Differs") : null));
}

function fillSection(d) {
  return section("Fill",
    h("dl", { class: "fields two compact" },
      field("Technician", d.technician?.name),
      field("Site", `${d.site.code} · ${d.site.state}`),
      field("Started", formatWhen(d.created_at)),
      field("Submitted", formatWhen(d.submitted_at)),
      field("Priority", PRIORITY_LABELS[d.priority] || d.priority),
      field("Fill id", d.id.slice(0, 8), { mono: true })));
}

function earlierSection(d, reasonLabels) {
  const earlier = d.earlier_rejections || [];
  if (!earlier.length && !d.previous_fill_id) return null;
  return alertSection(`Earlier attempt${earlier.length === 1 ? "" : "s"} rejected (${earlier.length})`,
    earlier.length
      ? h("ol", { class: "earlier" }, earlier.map((e) => h("li", {},
          h("div", { class: "earlier-when" }, `Rejected ${formatDateTime(e.decided_at)}`),
          h("div", { class: "earlier-reasons" }, (e.reason_codes || []).map((c) => h("span", { class: "pill pill-bad" }, reasonLabels.get(c) || c))),
          e.note ? h("p", { class: "earlier-note" }, e.note) : null)))
      : h("p", { class: "muted" }, "This fill is a resubmission."));
}

/** The left column: prescription, product check, count, fill facts, earlier rejections. */
export function renderRxPanel(panel, d, reasonLabels) {
  fill(panel,
    flagsSection(d),
    controlledSection(d),
    prescriptionSection(d.prescription, d.schedule),
    earlierSection(d, reasonLabels),
    checkSection(d),
    countSection(d),
    historySection(d),
    fillSection(d));
}

/** The header line above the evidence. */
export function renderTitle(el, d) {
  fill(el,
    priorityBadge(d.priority),
    scheduleBadge(d.schedule),
    h("span", { class: "title-site" }, d.site.name),
    h("span", { class: "title-code" }, `${d.site.code} · ${d.site.state}`),
    checkBadge(d.product_check),
    (d.flags || []).filter((f) => f.code !== "product_check").map((f) => flagBadge(f)),
    d.previous_fill_id ? h("span", { class: "badge badge-resub" }, "Resubmission") : null);
}

/** One thumbnail button per medium; `thumb(media)` gives a decoded image element or null. */
export function renderStrip(strip, media, selected, thumb, onSelect) {
  fill(strip, media.map((m, i) => {
    const img = thumb(m);
    const button = h("button", {
      type: "button", role: "tab", class: ["thumb", "is-unseen", i === selected ? "is-selected" : null, isVideo(m) ? "is-video" : null],
      "data-media": m.id, "data-kind": m.kind,
      "aria-selected": i === selected ? "true" : "false", title: `${KIND_LABELS[m.kind] || m.kind} (${i + 1})`,
      onclick: () => onSelect(i),
    },
    img || h("span", { class: "thumb-missing" }, "…"),
    h("span", { class: "thumb-label" }, KIND_LABELS[m.kind] || m.kind),
    isVideo(m) ? h("span", { class: "thumb-play", "aria-hidden": "true" }, "▶") : null,
    h("span", { class: "thumb-unseen" }, "Not seen"));
    return button;
  }));
}

export function selectInStrip(strip, index) {
  [...strip.children].forEach((el, i) => {
    el.classList.toggle("is-selected", i === index);
    el.setAttribute("aria-selected", i === index ? "true" : "false");
  });
}

/** Marks which thumbnails have been seen. */
export function markSeen(strip, isSeen) {
  for (const el of strip.children) el.classList.toggle("is-unseen", !isSeen(Number(el.dataset.media)));
}
