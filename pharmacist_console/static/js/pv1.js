// Data-entry verification (PV1): the prescriptions waiting for a pharmacist, and one of them beside its
// source (an e-prescription's message with every difference highlighted, or the paper original's pages
// with zoom), the NDC's reference data and the patient's other prescriptions. Verify (A) or return to
// the site with reasons (R). A claim is a lease, renewed while the view is open, as for fills.
// A decision the server will want a proof of identity for (the prescription's record says so, `step_up`)
// asks for it before it is sent, naming the prescription; cancelled, nothing is sent and the prescription
// stays open and claimed.

import { api, get, ApiError } from "./api.js";
import { dataEntryRows, initials } from "./queue.js";
import { h, fill, isTyping, toast } from "./dom.js";
import { formatNdc } from "./format.js";
import { stepUpNeeded, stepUpWhy } from "./second_factor.js";

const FIELDS = [
  ["patient_name", "Patient"],
  ["patient_dob", "Date of birth"],
  ["prescriber", "Prescriber"],
  ["drug", "Drug"],
  ["strength", "Strength"],
  ["dosage_form", "Form"],
  ["expected_ndc", "NDC"],
  ["quantity", "Quantity"],
  ["days_supply", "Days supply"],
  ["directions", "Directions"],
  ["dea_schedule", "DEA schedule"],
  ["refills_authorized", "Refills"],
];
const SOURCE_LABELS = { fhir: "E-prescription (FHIR)", ncpdp: "E-prescription (NCPDP SCRIPT)", csv: "Pharmacy system export", entered: "Entered at the site" };
const ZOOMS = [1, 1.5, 2, 3, 4];

export class DataEntry {
  constructor({ root, onCount = () => {}, now = () => Date.now() }) {
    this.root = root;
    this.onCount = onCount;
    this.now = now; // the server's time, as the console reckons it
    this.confirmIdentity = null; // set by main.js: the step-up prompt
    // What asks for a proof, in the server's words, by reason code (/api/v1/reasons).
    this.stepUpReasons = {};
    this.deciding = false; // a decision is being proved or sent
    this.rows = [];
    this.selected = 0;
    this.current = null; // the open prescription's view
    this.page = 0;
    this.zoom = 0;
    this.reasons = [];
    this.heartbeat = null;
    this.reloadTimer = null;
    this.build();
    // Closing the tab gives the prescription back at once rather than when its lease runs out.
    window.addEventListener("pagehide", () => {
      const rx = this.current?.prescription;
      if (rx) api("POST", `/api/v1/prescriptions/${rx.id}/release`, {}, { keepalive: true }).catch(() => {});
    });
  }

  build() {
    this.list = h("tbody", { id: "pv1-body" });
    this.empty = h("p", { class: "empty", id: "pv1-empty", hidden: true }, "No prescription waits for data-entry verification.");
    this.listPanel = h("div", { class: "pv1-list" },
      h("div", { class: "queue-head" }, h("h1", { class: "view-title" }, "Data entry (PV1)")),
      h("div", { class: "table-wrap" },
        h("table", { class: "queue-table", id: "pv1-table" },
          h("thead", {}, h("tr", {},
            h("th", { scope: "col" }, "Rx · drug"), h("th", { scope: "col" }, "Patient"), h("th", { scope: "col" }, "Site"),
            h("th", { scope: "col" }, "Source"), h("th", { scope: "col" }, "Waiting since"), h("th", { scope: "col" }, "Status"))),
          this.list),
        this.empty),
      h("p", { class: "hint" }, "Open with a click or ", h("kbd", {}, "Enter"), "; move with ", h("kbd", {}, "↑"), " ", h("kbd", {}, "↓"), "."));
    this.review = h("div", { class: "pv1-review", hidden: true, id: "pv1-review" });
    fill(this.root, this.listPanel, this.review);
  }

  /** Forgets everything (signing out). */
  reset() {
    clearInterval(this.heartbeat);
    this.current = null;
    this.review.hidden = true;
    this.listPanel.hidden = false;
    this.setRows([]);
  }

  setReasons(reasons, { stepUpReasons } = {}) {
    this.reasons = reasons || [];
    if (stepUpReasons) this.stepUpReasons = stepUpReasons;
  }

  // -- the list ------------------------------------------------------------------------------------

  async load() {
    const queue = await get("/api/v1/queue");
    this.setRows(await dataEntryRows(queue.data_entry, queue.data_entry_next));
  }

  /** The data-entry rows of the queue, as a load of the queue (this one's or the fills') found them. */
  setRows(rows) {
    this.rows = rows || [];
    this.onCount(this.rows.filter((r) => r.verification_state === "awaiting_verification").length);
    this.renderList();
  }

  renderList() {
    this.selected = Math.min(this.selected, Math.max(0, this.rows.length - 1));
    fill(this.list, this.rows.map((r, i) => h("tr", {
      class: ["pv1-row", i === this.selected && "selected"], tabindex: "0", dataset: { id: r.prescription_id },
      onclick: () => this.open(r.prescription_id),
    },
    h("td", {}, h("b", {}, `Rx ${r.rx_number}`), ` ${r.drug} ${r.strength}`),
    h("td", {}, r.patient_initials),
    h("td", {}, `${r.site_code} (${r.site_state})`),
    h("td", {}, SOURCE_LABELS[r.source_kind] || r.source_kind),
    h("td", {}, r.awaiting_since ? new Date(r.awaiting_since).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "–"),
    h("td", {}, r.verification_state === "in_review" ? "In review" : "Waiting"))));
    this.empty.hidden = this.rows.length > 0;
  }

  onEvent(ev) {
    if (!String(ev.type || "").startsWith("prescription.")) return;
    clearTimeout(this.reloadTimer);
    this.reloadTimer = setTimeout(() => this.load().catch(() => {}), 200);
    const open = this.current?.prescription;
    if (open && ev.prescription_id === open.id && ev.type === "prescription.corrected") {
      this.stale = true;
      this.banner("The site corrected this prescription while you had it open: reload it to see the correction before you decide.", "warn",
        ["Reload", "L", () => this.open(open.id)]);
      this.updatePending();
    }
  }

  // -- one prescription ----------------------------------------------------------------------------

  async open(id) {
    try {
      this.current = await api("POST", `/api/v1/prescriptions/${id}/claim`);
    } catch (err) {
      toast(err instanceof ApiError ? err.message : "Could not open the prescription.", "error");
      return;
    }
    this.page = 0;
    this.zoom = 0;
    this.confirmed = new Set();
    this.pagesSeen = new Set(this.current.original.slice(0, 1).map((p) => p.id));
    this.stale = false;
    this.listPanel.hidden = true;
    this.review.hidden = false;
    this.renderReview();
    this.keepLease(id);
  }

  keepLease(id) {
    clearInterval(this.heartbeat);
    this.heartbeat = setInterval(() => {
      api("POST", `/api/v1/prescriptions/${id}/heartbeat`).catch((err) => {
        clearInterval(this.heartbeat);
        this.banner(err instanceof ApiError ? err.message : "The claim could not be renewed.", "error");
      });
    }, 30000);
  }

  async close({ release = true } = {}) {
    clearInterval(this.heartbeat);
    const rx = this.current?.prescription;
    this.current = null;
    this.review.hidden = true;
    this.listPanel.hidden = false;
    if (release && rx) await api("POST", `/api/v1/prescriptions/${rx.id}/release`).catch(() => {});
    await this.load().catch(() => {});
  }

  banner(text, kind, action = null) {
    const el = this.review.querySelector(".pv1-banner");
    if (!el) return;
    el.hidden = false;
    el.dataset.kind = kind;
    this.bannerAction = action;
    fill(el, h("span", {}, text), action
      ? h("button", { type: "button", class: "btn small", onclick: action[2] }, `${action[0]} `, h("kbd", {}, action[1]))
      : null);
  }

  /** What is left to check before Verify: each difference from the message confirmed, each page of the
   * original seen, a correction made meanwhile loaded. The server refuses a verification without them. */
  pending() {
    const v = this.current;
    if (!v) return [];
    const left = [];
    if (this.stale) left.push("reload the corrected prescription");
    const unconfirmed = v.source.differences.filter((k) => !this.confirmed.has(k));
    if (unconfirmed.length) left.push(`confirm ${unconfirmed.length === 1 ? "the difference" : "each difference"} from the message (${unconfirmed.map(label).join(", ")})`);
    // Pages by their place in the original as shown (several uploads each start at their own page 1).
    const unseen = v.original.flatMap((p, i) => (this.pagesSeen.has(p.id) ? [] : [i + 1]));
    if (unseen.length) left.push(`look at page ${unseen.join(", ")} of the original (PgDn)`);
    return left;
  }

  updatePending() {
    const left = this.pending();
    const status = this.review.querySelector("#pv1-pending");
    if (status) status.textContent = left.length ? `Before verifying: ${left.join("; ")}.` : "";
    const button = this.review.querySelector("#pv1-verify");
    if (button) button.disabled = left.length > 0;
  }

  /** C: ticks the first difference not yet confirmed as checked, after the pharmacist has compared it. */
  confirmNext() {
    const next = this.current?.source.differences.find((k) => !this.confirmed.has(k));
    if (!next) return;
    const box = this.review.querySelector(`.pv1-confirm input[data-field="${next}"]`);
    if (box) {
      box.checked = true;
      box.dispatchEvent(new Event("change"));
      box.focus();
    }
  }

  renderReview() {
    const v = this.current;
    const rx = v.prescription;
    const diffs = new Set(v.source.differences);
    const said = v.source.fields;
    const rows = FIELDS.map(([key, label]) => h("tr", { class: diffs.has(key) ? "pv1-diff" : null, dataset: { field: key } },
      h("th", { scope: "row" }, label),
      // The entered NDC as the console shows NDCs (5-4-2); the message's stays as it came.
      h("td", { class: "pv1-entered" }, key === "expected_ndc" ? formatNdc(rx[key]) : show(rx[key])),
      said ? h("td", { class: "pv1-said" }, show(said[key])) : null,
      said ? h("td", { class: "pv1-mark" }, diffs.has(key) ? h("label", { class: "pv1-confirm" },
        h("input", { type: "checkbox", dataset: { field: key }, checked: this.confirmed.has(key), onchange: (e) => {
          if (e.target.checked) this.confirmed.add(key); else this.confirmed.delete(key);
          this.updatePending();
        } }), " Checked") : "") : null));
    const head = h("tr", {}, h("th", {}), h("th", { scope: "col" }, "Entered"),
      said ? h("th", { scope: "col" }, "The message says") : null, said ? h("th", {}) : null);
    fill(this.review,
      h("div", { class: "verify-head" },
        h("button", { type: "button", class: "btn ghost small", onclick: () => this.close() }, "Release and back ", h("kbd", {}, "Esc")),
        h("div", { class: "verify-title" }, h("b", {}, `PV1 · Rx ${rx.rx_number}`), ` · ${v.site.code} (${v.site.state}) · version ${rx.version}`),
        h("div", { class: "lease" }, v.lease_expires_at ? "Claimed by you" : "")),
      h("div", { class: "pv1-banner banner", role: "status", hidden: true }),
      h("div", { class: "pv1-body" },
        h("section", { class: "pv1-fields", "aria-label": "Entered fields" },
          h("h2", {}, SOURCE_LABELS[v.source.kind] || v.source.kind),
          said && diffs.size ? h("p", { class: "pv1-diff-count", role: "status" }, `${diffs.size} field${diffs.size === 1 ? " differs" : "s differ"} from the message: compare each, then tick it as checked (`, h("kbd", {}, "C"), ")") : null,
          said && !diffs.size ? h("p", { class: "pv1-same" }, "Every field agrees with the message.") : null,
          h("table", { class: "pv1-compare" }, h("thead", {}, head), h("tbody", {}, rows)),
          this.referencePanel(v),
          this.othersPanel(v),
          this.historyPanel(v)),
        this.sourcePanel(v)),
      h("div", { class: "decision-bar pv1-actions" },
        h("p", { class: "pv1-pending", id: "pv1-pending", role: "status" }),
        h("div", { class: "decision-actions" },
          h("button", { type: "button", class: "btn approve", id: "pv1-verify", onclick: () => this.verify() }, "Verify ", h("kbd", {}, "A")),
          h("button", { type: "button", class: "btn reject", id: "pv1-return", onclick: () => this.openReturn() }, "Return to site ", h("kbd", {}, "R")))),
      this.returnPicker());
    this.updatePending();
  }

  sourcePanel(v) {
    if (v.original.length) {
      const shown = Math.min(this.page, v.original.length - 1) + 1;
      const page = v.original[shown - 1];
      const img = h("img", {
        class: ["pv1-page", `zoom-${this.zoom}`], id: "pv1-page", alt: `Original, page ${shown} of ${v.original.length}`,
        src: `${page.url}?variant=${this.zoom > 1 ? "full" : "2048"}`,
      });
      return h("section", { class: "pv1-original", "aria-label": "The paper original" },
        h("div", { class: "pv1-original-tools" },
          h("span", {}, `Original · page ${shown} of ${v.original.length}`),
          h("button", { type: "button", class: "btn small", onclick: () => this.setZoom(this.zoom - 1) }, "−"),
          h("span", { class: "zoom-label", id: "pv1-zoom" }, this.zoom ? `${ZOOMS[this.zoom]}×` : "Fit"),
          h("button", { type: "button", class: "btn small", id: "pv1-zoom-in", onclick: () => this.setZoom(this.zoom + 1) }, "+"),
          v.original.length > 1 ? h("button", { type: "button", class: "btn small", onclick: () => this.turn(1) }, "Next page ", h("kbd", {}, "PgDn")) : null),
        h("div", { class: "pv1-page-frame", onclick: () => this.setZoom(this.zoom ? 0 : 2) }, img));
    }
    if (v.source.body) {
      return h("section", { class: "pv1-message", "aria-label": "The message as received" },
        h("h2", {}, "As received"), h("pre", { class: "pv1-raw" }, pretty(v.source.body)));
    }
    return h("section", { class: "pv1-message" }, h("h2", {}, "Source"),
      h("p", { class: "pv1-none" }, "No original is attached: ask the site for an image of the prescription before verifying."));
  }

  referencePanel(v) {
    const r = v.reference;
    if (!v.reference_loaded) return h("p", { class: "pv1-ref" }, "No drug reference is loaded: the NDC cannot be checked here.");
    if (!r) return h("p", { class: "pv1-ref pv1-warn" }, "The drug reference does not know this NDC.");
    return h("div", { class: "pv1-ref" }, h("h3", {}, `NDC ${r.ndc11} in the reference`),
      h("p", {}, [r.proprietary_name, r.nonproprietary_name, r.strength, r.dosage_form, r.labeler].filter(Boolean).join(" · ")),
      r.package_description ? h("p", {}, r.package_description) : null,
      r.discontinued ? h("p", { class: "pv1-warn" }, "Discontinued") : null);
  }

  othersPanel(v) {
    if (!v.other_prescriptions.length) return h("p", { class: "pv1-others" }, "No other prescriptions for this patient at this site.");
    return h("div", { class: "pv1-others" }, h("h3", {}, "The patient's other prescriptions"),
      h("ul", {}, v.other_prescriptions.map((o) => h("li", {}, `Rx ${o.rx_number}: ${o.drug} ${o.strength} · ${o.directions} (${o.verification_state.replaceAll("_", " ")})`))));
  }

  historyPanel(v) {
    const items = [
      ...v.verifications.map((x) => ({ at: x.decided_at, text: `${x.outcome} by ${x.pharmacist.name}${x.reason_codes.length ? `: ${x.reason_codes.join(", ")}` : ""}${x.note ? ` (“${x.note}”)` : ""}` })),
      ...v.revisions.map((x) => ({ at: x.edited_at, text: `corrected by ${x.edited_by.name}: ${Object.entries(x.changes).map(([k, c]) => `${k} ${show(c.old)} → ${show(c.new)}`).join("; ")}` })),
    ].sort((a, b) => a.at.localeCompare(b.at));
    if (!items.length) return null;
    return h("div", { class: "pv1-history" }, h("h3", {}, "History"), h("ul", {}, items.map((i) => h("li", {}, i.text))));
  }

  returnPicker() {
    this.picker = h("div", { class: "reason-picker", id: "pv1-reasons", role: "dialog", "aria-labelledby": "pv1-reasons-title", hidden: true },
      h("h2", { id: "pv1-reasons-title" }, "Return to the site: choose the reasons"),
      h("p", { class: "picker-sub" }, "Toggle with ", h("kbd", {}, "1"), "–", h("kbd", {}, String(this.reasons.length)), ". “Other” needs a note."),
      h("ul", { class: "reason-list" }, this.reasons.map((r, i) => h("li", {},
        h("label", {}, h("input", { type: "checkbox", value: r.code, dataset: { key: String(i + 1) } }), ` ${i + 1} ${r.label}`)))),
      h("label", { for: "pv1-note", class: "note-label" }, "Note to the technician"),
      h("textarea", { id: "pv1-note", rows: "2", maxlength: "2000" }),
      h("p", { class: "form-error", id: "pv1-reason-error", role: "alert", hidden: true }),
      h("div", { class: "picker-actions" },
        h("button", { type: "button", class: "btn", onclick: () => { this.picker.hidden = true; } }, "Cancel ", h("kbd", {}, "Esc")),
        h("button", { type: "button", class: "btn reject", id: "pv1-return-confirm", onclick: () => this.sendReturn() }, "Return ", h("kbd", {}, "Ctrl"), "+", h("kbd", {}, "Enter"))));
    return this.picker;
  }

  openReturn() {
    this.picker.hidden = false;
    this.picker.querySelector("input")?.focus();
  }

  async verify() {
    const left = this.pending();
    if (left.length) {
      this.banner(`Not verified yet: ${left.join("; ")}.`, "warn", this.stale ? ["Reload", "L", () => this.open(this.current.prescription.id)] : null);
      return;
    }
    await this.decide({ outcome: "verify", differences_confirmed: [...this.confirmed], original_seen: [...this.pagesSeen] });
  }

  async sendReturn() {
    const codes = [...this.picker.querySelectorAll("input:checked")].map((i) => i.value);
    const note = this.picker.querySelector("textarea").value.trim();
    const error = this.picker.querySelector(".form-error");
    if (!codes.length || (codes.includes("other") && !note)) {
      error.hidden = false;
      error.textContent = codes.length ? "“Other” needs a note saying what is wrong." : "Choose at least one reason.";
      return;
    }
    await this.decide({ outcome: "return", reason_codes: codes, note: note || null });
  }

  /** The decision as the pharmacist would say it, naming the prescription as a fill's prompt names the
   * fill: "Verify Rx 7100457 (Metformin HCl 500 mg) for J. P. at ND-1". */
  decisionName(v, outcome) {
    const rx = v.prescription;
    const drug = [rx.drug, rx.strength].filter(Boolean).join(" ");
    const patient = initials(rx.patient_name);
    return [outcome === "verify" ? "Verify" : "Return", `Rx ${rx.rx_number}`, drug ? `(${drug})` : null,
      patient ? `for ${patient}` : null, v.site?.code ? `at ${v.site.code}` : null].filter(Boolean).join(" ");
  }

  /** Sends the decision, once the pharmacist proved who they are where the record says the server will
   * want it. */
  async decide(body) {
    const v = this.current;
    if (!v || this.deciding) return;
    const what = this.decisionName(v, body.outcome);
    const needed = stepUpNeeded(v.step_up, body.outcome === "verify" ? "approve" : "reject", { now: this.now() });
    this.deciding = true;
    try {
      if (needed.length && !(await this.proveFirst(v, what, needed))) return;
      await this.send(v, body, what);
    } finally {
      this.deciding = false;
    }
  }

  /** Asks for the proof a decision needs before it is sent; true when it was given and the prescription
   * can still be decided as it was read. */
  async proveFirst(v, what, needed) {
    const methods = v.step_up.methods;
    if (!methods.length) {
      this.banner(`${what}: not sent. This site's prescriptions are verified with a second factor: add one under Security, then decide again.`, "error");
      return false;
    }
    const proved = this.confirmIdentity && (await this.confirmIdentity({ what, why: stepUpWhy(needed, this.stepUpReasons), methods }));
    if (this.current !== v) return false;
    if (!proved) {
      this.banner(`${what}: not sent. You did not confirm it is you; the prescription is still open and yours.`, "warn");
      return false;
    }
    if (this.stale) {
      // Corrected at the site while the prompt was open: what was decided is not what it is now.
      this.banner(`${what}: not sent. The site corrected this prescription meanwhile: reload it to see the correction before you decide.`, "warn",
        ["Reload", "L", () => this.open(v.prescription.id)]);
      return false;
    }
    return true;
  }

  async send(v, body, what) {
    const rx = v.prescription;
    for (;;) {
      try {
        await api("POST", `/api/v1/prescriptions/${rx.id}/verification`, { version: rx.version, ...body });
        break;
      } catch (err) {
        if (!(err instanceof ApiError) || err.code !== "step_up_required" || !this.confirmIdentity) {
          this.banner(err instanceof ApiError ? err.message : "The decision could not be sent.", "error");
          return;
        }
        // The server still asks who decides (the session's last proof went stale since the record was
        // read): once it is proved, the same decision goes again.
        const why = stepUpWhy(err.detail?.reasons || [], this.stepUpReasons);
        if (!(await this.confirmIdentity({ what, why, methods: err.detail?.methods }))) {
          if (this.current === v) this.banner(`${what}: not sent. You did not confirm it is you; the prescription is still open and yours.`, "warn");
          return;
        }
      }
    }
    toast(body.outcome === "verify" ? `Rx ${rx.rx_number} verified.` : `Rx ${rx.rx_number} returned to the site.`, "info");
    await this.close({ release: false });
  }

  setZoom(level) {
    this.zoom = Math.max(0, Math.min(ZOOMS.length - 1, level));
    this.rerenderSource();
  }

  turn(step) {
    const pages = this.current?.original.length || 0;
    if (pages < 2) return;
    this.page = (this.page + step + pages) % pages;
    this.zoom = 0;
    this.pagesSeen.add(this.current.original[this.page].id);
    this.rerenderSource();
    this.updatePending();
  }

  rerenderSource() {
    const old = this.review.querySelector(".pv1-original");
    if (old) old.replaceWith(this.sourcePanel(this.current));
  }

  // -- keys ----------------------------------------------------------------------------------------

  onKey(e) {
    if (this.current) return this.reviewKey(e);
    if (isTyping(e.target) || e.ctrlKey || e.metaKey || e.altKey) return false;
    if (e.key === "ArrowDown" || e.key === "j") this.selected = Math.min(this.rows.length - 1, this.selected + 1);
    else if (e.key === "ArrowUp" || e.key === "k") this.selected = Math.max(0, this.selected - 1);
    else if (e.key === "Enter" && this.rows[this.selected]) {
      this.open(this.rows[this.selected].prescription_id);
      return true;
    } else return false;
    this.renderList();
    return true;
  }

  reviewKey(e) {
    if (!this.picker.hidden) {
      if (e.key === "Escape") this.picker.hidden = true;
      else if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) this.sendReturn();
      else if (!isTyping(e.target) && /^[1-9]$/.test(e.key)) {
        const box = this.picker.querySelector(`input[data-key="${e.key}"]`);
        if (box) box.checked = !box.checked;
      } else return false;
      return true;
    }
    if (isTyping(e.target) || e.ctrlKey || e.metaKey || e.altKey) return false;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (key === "a") this.verify();
    else if (key === "r") this.openReturn();
    else if (key === "Escape") this.close();
    else if (key === "+" || key === "=") this.setZoom(this.zoom + 1);
    else if (key === "-") this.setZoom(this.zoom - 1);
    else if (key === "0") this.setZoom(0);
    else if (key === "PageDown") this.turn(1);
    else if (key === "PageUp") this.turn(-1);
    else if (key === "c") this.confirmNext();
    else if (key === "l" && this.bannerAction?.[1] === "L") this.bannerAction[2]();
    else return false;
    return true;
  }
}

function label(key) {
  return FIELDS.find(([k]) => k === key)?.[1] || key;
}

function show(value) {
  return value === null || value === undefined || value === "" ? "–" : String(value);
}

function pretty(body) {
  try {
    return JSON.stringify(JSON.parse(body), null, 2);
  } catch {
    return body;
  }
}
