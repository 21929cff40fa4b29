// Counselling due: approved fills at the pharmacist's sites that wait for counselling before the site
// hands them out, the longest waiting first. Each row offers a video call to the site, and a telephone
// counselling record where the rules in force let a call count; where they do not, the row says why.

import { get, post } from "./api.js";
import { $, h, fill, toast } from "./dom.js";
import { formatAge } from "./format.js";

const PAGE_ROWS = 100;

export class CounsellingList {
  constructor({ root, consults, onCount }) {
    this.root = root;
    this.consults = consults;
    this.onCount = onCount;
    this.rows = [];
    this.next = null;
    this.seq = 0;
    this.timer = null;
    this.body = h("ul", { class: "counsel-list", id: "counsel-list" });
    this.empty = h("p", { class: "no-data", id: "counsel-empty", hidden: true },
      "No approved fill is waiting for counselling at your sites.");
    this.moreButton = h("button", { type: "button", class: "btn small", id: "counsel-more", hidden: true,
      onclick: () => this.more() }, "Show more");
    fill(root,
      h("div", { class: "dash-head" },
        h("h1", { class: "view-title", id: "counsel-title" }, "Counselling due"),
        h("span", { class: "dash-note" }, "Approved fills the site may not hand out until the patient is counselled.")),
      this.body, this.empty, this.moreButton);
  }

  async load() {
    const seq = ++this.seq;
    let data;
    try {
      data = await get(`/api/v1/counselling/due?limit=${PAGE_ROWS}`);
    } catch (err) {
      if (seq === this.seq) toast(`Could not load the fills due counselling: ${err.message}`, "error");
      return;
    }
    if (seq !== this.seq) return;
    this.rows = data.fills;
    this.next = data.next;
    this.render();
  }

  async more() {
    if (!this.next) return;
    const seq = this.seq;
    const page = await get(`/api/v1/counselling/due?limit=${PAGE_ROWS}&after=${encodeURIComponent(this.next)}`)
      .catch((err) => { toast(err.message, "error"); return null; });
    if (!page || seq !== this.seq) return;
    this.rows.push(...page.fills);
    this.next = page.next;
    this.render();
  }

  /** A fill approved with counselling due, or one counselled: the list (and its count in the nav) is read
   * again, once for a burst, unless a telephone record is being written in it. */
  onEvent(ev) {
    const added = ev.type === "fill.decided" && ev.state === "approved" && ev.counselling === "due";
    if (!added && ev.type !== "fill.counselling") return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => { if (!this.root.querySelector("form.counsel-form")) this.load(); }, 300);
  }

  reset() {
    clearTimeout(this.timer);
    this.seq++;
    this.rows = [];
    this.next = null;
    this.render();
  }

  render() {
    this.onCount?.(this.rows.length ? `${this.rows.length}${this.next ? "+" : ""}` : "");
    const said = new Set(); // each reason in full once: the rows after it say it in a few words
    fill(this.body, this.rows.map((row) => this.rowView(row, said)));
    this.empty.hidden = this.rows.length > 0;
    this.moreButton.hidden = !this.next;
  }

  rowView(row, said) {
    const phone = row.counselling_options?.phone || { allowed: false, why_not: "" };
    const why = said.has(phone.why_not) ? "By video only, for the reason given above." : phone.why_not;
    said.add(phone.why_not);
    const waited = row.decided_at ? formatAge(Date.now() - Date.parse(row.decided_at)) : "–";
    const actions = h("div", { class: "counsel-actions" },
      h("button", { type: "button", class: "btn small", dataset: { action: "video" },
        title: "Ask the site for a video counselling call on this fill",
        onclick: () => this.consults.invite(row.id, "counsel") }, "Counsel by video"),
      phone.allowed
        ? h("button", { type: "button", class: "btn small primary", dataset: { action: "phone" },
          onclick: (e) => this.openPhone(row, e.currentTarget.closest("li")) }, "Record telephone counselling…")
        : null);
    return h("li", { class: "counsel-row card", dataset: { id: row.id, phone: String(phone.allowed) } },
      h("div", { class: "counsel-what" },
        h("strong", {}, `Rx ${row.rx_number} · ${row.drug} ${row.strength}`),
        h("span", {}, ` · ${row.patient_initials} · ${row.site.code} (${row.site.state}) · approved ${waited} ago`)),
      phone.allowed ? null : h("p", { class: "counsel-why", role: "note" }, why),
      actions);
  }

  /** The telephone record's form under its row, with whom to call (read from the fill, access logged). */
  async openPhone(row, li) {
    for (const open of this.root.querySelectorAll("form.counsel-form")) open.remove();
    let detail;
    try {
      detail = await get(`/api/v1/fills/${encodeURIComponent(row.id)}`);
    } catch (err) {
      toast(`Could not open the fill: ${err.message}`, "error");
      return;
    }
    const rx = detail.prescription;
    const note = h("textarea", { id: "counsel-note", rows: "3", maxlength: "2000", "aria-required": "true" });
    const minutes = h("input", { id: "counsel-minutes", type: "number", min: "0", max: "1439", step: "1", inputmode: "numeric" });
    const error = h("p", { class: "form-error", id: "counsel-error", role: "alert", hidden: true });
    const form = h("form", { class: "counsel-form", id: "counsel-form" },
      h("p", { class: "counsel-patient" }, `${rx.patient_name}, born ${rx.patient_dob} · ${rx.directions}`),
      h("label", { for: "counsel-note" }, "Counselling note: what you covered with the patient on the telephone"),
      note,
      h("label", { for: "counsel-minutes" }, "Length of the call, in minutes (optional)"),
      minutes,
      error,
      h("div", { class: "picker-actions" },
        h("button", { type: "button", class: "btn", onclick: () => form.remove() }, "Cancel"),
        h("button", { type: "submit", class: "btn primary", id: "counsel-save" }, "Save the record")));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save(row, form, { note: note.value.trim(), minutes: minutes.value, error });
    });
    li.append(form);
    note.focus();
  }

  async save(row, form, { note, minutes, error }) {
    error.hidden = true;
    if (!note) {
      error.textContent = "Write what you covered with the patient: the note is the record.";
      error.hidden = false;
      return;
    }
    const body = { kind: "phone", note };
    if (minutes !== "") body.duration_seconds = Math.round(Number(minutes) * 60);
    const save = $("#counsel-save", form);
    save.disabled = true;
    try {
      await post(`/api/v1/fills/${encodeURIComponent(row.id)}/counselling`, body);
    } catch (err) {
      // A refusal (video required, recorded meanwhile) is shown where it was asked, with its reason.
      error.textContent = err.message;
      error.hidden = false;
      save.disabled = false;
      return;
    }
    form.remove();
    toast(`Telephone counselling recorded for Rx ${row.rx_number}: the site may hand it out.`, "ok");
    this.rows = this.rows.filter((r) => r.id !== row.id);
    this.render();
  }
}
