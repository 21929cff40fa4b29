// The work list: every fill of the site, newest first, by state; a fill opened shows its decision
// (approval: ready to bag; rejection: reasons, note, views to retake) or why the server refused it.

import { api, withToken } from "./api.js";
import { $, h, fill, toast } from "./dom.js";
import { COUNSELLING_WORDS, STATE_WORDS, bytes, localTime, product, shortId, stateWords } from "./format.js";

const FILTERS = [
  ["all", "All"],
  ["waiting_to_send", "Waiting to send"],
  ["refused", "Needs attention"],
  ["queued", "Queued"],
  ["in_review", "In review"],
  ["approved", "Approved"],
  ["handed_out", "Handed out"],
  ["rejected", "Rejected"],
];

export class WorkList {
  constructor(station, capture) {
    this.station = station;
    this.capture = capture;
    this.items = [];
    this.filter = "all";
    this.openId = null;
    this.unseen = new Set();
    this.refreshTimer = null;
    fill($("#state-filter"), FILTERS.map(([key, label]) => h("button", {
      type: "button", class: "chip", "aria-pressed": String(key === this.filter), dataset: { filter: key },
      onclick: () => this.setFilter(key),
    }, label)));
  }

  setFilter(key) {
    this.filter = key;
    for (const b of document.querySelectorAll("#state-filter .chip")) b.setAttribute("aria-pressed", String(b.dataset.filter === key));
    this.render();
  }

  tokenRefused() {
    return this.station.status?.uplink === "token_refused";
  }

  visible() {
    return !$("#worklist-view").hidden;
  }

  async refresh() {
    try {
      const body = await api("GET", "/api/fills");
      this.items = body.fills;
      $("#worklist-offline").hidden = body.online;
      $("#worklist-offline").textContent = this.tokenRefused()
        ? "The server refuses this station's device token (see above): showing what this station knows."
        : "Offline: showing what this station knows.";
    } catch (err) {
      toast(err.message, "error");
    }
    this.render();
  }

  /** Refreshes soon, once, however many messages arrive meanwhile; the fill open is shown again when
   * it changed, unless the technician is writing in it. */
  soon(fillId) {
    if (fillId && fillId === this.openId) this.openChanged = true;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => {
      if (this.visible()) this.refresh();
      const writing = document.getElementById("discard-form");
      if (this.openChanged && !$("#fill-view").hidden && !writing) this.open(this.openId);
      this.openChanged = false;
    }, 150);
  }

  message(msg) {
    if (msg.type === "progress") {
      const row = document.querySelector(`#worklist li[data-id="${msg.fill_id}"] .progress`);
      if (row && msg.total) {
        row.hidden = false;
        row.value = msg.sent;
        row.max = msg.total;
        row.title = `${bytes(msg.sent)} of ${bytes(msg.total)} sent`;
      }
    } else if (msg.type === "outbox") {
      // A retry that failed again changes nothing the technician sees but its count.
      this.soon(["queued", "failed"].includes(msg.state) ? msg.fill_id : null);
    } else if (msg.type === "fill" || msg.type === "decision") {
      this.soon(msg.fill_id);
    }
  }

  decided(msg) {
    if ($("#app").dataset.view !== "worklist") this.unseen.add(msg.fill_id);
    const badge = $("#decided-count");
    badge.textContent = String(this.unseen.size);
    badge.hidden = this.unseen.size === 0;
  }

  render() {
    this.unseen.clear();
    $("#decided-count").hidden = true;
    const items = this.items.filter((i) => this.filter === "all" || i.state === this.filter);
    fill($("#worklist"), items.map((i) => h("li", { class: ["work-item", `state-${i.state}`], dataset: { id: i.fill_id, state: i.state, counselling: i.counselling || "" } },
      h("button", { type: "button", class: "work-open", onclick: () => this.open(i.fill_id) },
        h("span", { class: "work-state" }, stateWords(i.state, i.counselling)),
        h("span", { class: "work-rx" }, `Rx ${i.rx_number || "?"}`),
        h("span", { class: "work-drug" }, product(i)),
        h("span", { class: "work-patient" }, i.patient_name || ""),
        h("span", { class: "work-when" }, localTime(i.at)),
        h("span", { class: "work-id" }, `fill ${i.short_id}`),
        i.previous_fill_id ? h("span", { class: "work-link" }, `replaces ${shortId(i.previous_fill_id)}`) : null,
        h("progress", { class: "progress", hidden: !(i.total > 0), value: i.sent || 0, max: i.total || 1 })))));
    $("#worklist-empty").hidden = items.length > 0;
  }

  async open(fillId) {
    this.openId = fillId;
    let body;
    try {
      body = await api("GET", `/api/fills/${fillId}`);
    } catch (err) {
      toast(err.message, "error");
      return;
    }
    this.station.show("fill");
    const s = body.server;
    const local = body.local;
    const rx = s?.prescription || local?.rx || {};
    $("#fill-title").textContent = `Rx ${rx.rx_number || "?"} · ${product(rx)} · fill ${shortId(fillId)}`;
    const parts = [h("p", { class: "fill-patient" }, rx.patient_name || "")];
    if (local && local.state === "failed") parts.push(this.refusedPanel(fillId, local));
    else if (local && local.state !== "queued" && local.state !== "discarded") {
      const when = this.tokenRefused() ? "once this station is enrolled again" : "as soon as the connection allows";
      parts.push(h("div", { class: "banner banner-info", role: "status", id: "waiting-to-send" }, `Waiting to send: it goes ${when}.`),
        h("button", { type: "button", class: "btn", id: "discard-btn", onclick: () => this.discard(fillId) }, "Discard…"));
    }
    if (s) parts.push(this.serverPanel(fillId, s));
    fill($("#fill-body"), parts);
  }

  serverPanel(fillId, s) {
    const d = s.decision;
    const retake = new Set(d?.retake || []);
    const out = [];
    if (s.state === "approved") {
      out.push(h("div", { class: "banner banner-ok", role: "status", id: "decision" },
        h("strong", {}, "Approved: ready to bag."), d?.pharmacist?.name ? ` By ${d.pharmacist.name}, ${localTime(d.decided_at)}.` : "",
        d?.note ? h("p", {}, `Note: ${d.note}`) : null));
      out.push(this.counterPanel(fillId, s));
    } else if (s.state === "handed_out") {
      out.push(h("div", { class: "banner banner-ok", role: "status", id: "decision" },
        h("strong", {}, "Handed out"), ` ${localTime(s.handed_out_at)}`,
        COUNSELLING_WORDS[s.counselling] ? ` · ${COUNSELLING_WORDS[s.counselling]}.` : "."));
    } else if (s.state === "rejected") {
      out.push(h("div", { class: "banner banner-bad", role: "alert", id: "decision" },
        h("strong", {}, "Rejected: do not hand this out."),
        h("ul", { class: "reasons" }, (d?.reasons || []).map((r) => h("li", {}, r))),
        d?.note ? h("p", { class: "note" }, `Pharmacist's note: ${d.note}`) : null,
        h("button", { type: "button", class: "btn primary big", id: "resubmit-btn", onclick: () => this.resubmit(fillId) }, "Retake and resubmit")));
    } else {
      out.push(h("p", { class: "banner banner-info", role: "status" }, STATE_WORDS[s.state] || s.state));
    }
    out.push(h("ul", { class: "media-strip", "aria-label": "Photos" }, (s.media || []).map((m) =>
      h("li", { class: ["media", retake.has(m.kind) ? "media-retake" : null], dataset: { kind: m.kind } },
        m.kind === "count_video" ? h("span", { class: "media-video" }, "Count video")
          : h("img", { src: withToken(`/api/media/${m.id}`), alt: this.capture.kindName(m.kind), loading: "lazy" }),
        h("span", { class: "media-name" }, this.capture.kindName(m.kind) + (retake.has(m.kind) ? " · retake" : ""))))));
    if (s.previous_fill_id) out.push(h("p", { class: "muted" }, `Replaces rejected fill ${shortId(s.previous_fill_id)}.`));
    return h("div", {}, out);
  }

  /** An approved fill at the counter: counselling due (ask for a call, or the patient declines where the
   * rules in force allow it, as the server says on the fill; elsewhere why not) or done, and Hand out
   * once nothing is due. */
  counterPanel(fillId, s) {
    const due = s.counselling === "due";
    const parts = [h("p", { id: "counselling", dataset: { counselling: s.counselling || "" } },
      due ? "Counselling due: the pharmacist counsels the patient before it is handed out."
        : COUNSELLING_WORDS[s.counselling] ? `${COUNSELLING_WORDS[s.counselling][0].toUpperCase()}${COUNSELLING_WORDS[s.counselling].slice(1)}.` : "No counselling required.")];
    const buttons = [];
    const decline = s.counselling_options?.decline;
    if (due && decline?.allowed) {
      buttons.push(h("button", { type: "button", class: "btn big", id: "declined-btn", onclick: () => this.declined(fillId) }, "Patient declined…"));
    } else if (due) {
      parts.push(h("p", { class: "muted", id: "decline-why" },
        `The patient cannot decline counselling here: ${decline?.why_not || "no rule in force lets the patient decline it."}`));
    } else {
      buttons.push(h("button", { type: "button", class: "btn primary big", id: "hand-out-btn", onclick: () => this.handOut(fillId) }, "Hand out"));
    }
    parts.push(h("div", { class: "row" }, buttons));
    return h("div", { class: "counter", id: "counter" }, parts);
  }

  async handOut(fillId) {
    try {
      await api("POST", `/api/fills/${fillId}/hand-out`, {});
      toast("Handed out.", "ok");
      this.open(fillId);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  declined(fillId) {
    const form = h("form", { class: "discard-form", id: "declined-form" },
      h("label", { for: "declined-by" }, "Who declined counselling?"),
      h("select", { id: "declined-by" }, h("option", { value: "patient" }, "The patient"), h("option", { value: "agent" }, "The patient's agent")),
      h("label", { for: "declined-note" }, "Note (optional)"),
      h("input", { id: "declined-note", maxlength: "500" }),
      h("button", { type: "submit", class: "btn big" }, "Record the decline"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("POST", `/api/fills/${fillId}/declined`, { declined_by: $("#declined-by").value, note: $("#declined-note").value });
        toast("Recorded: counselling declined.", "ok");
        this.open(fillId);
      } catch (err) {
        toast(err.message, "error");
      }
    });
    $("#fill-body").append(form);
    $("#declined-by").focus();
  }

  /** A fill the server refused, and what cures it (the station says, by the server's code): a change to
   * the fill (Fix it), waiting for something done elsewhere (then Send again as it is), or nothing. */
  refusedPanel(fillId, local) {
    const fix = h("button", { type: "button", class: "btn primary big", id: "fix-btn", onclick: () => this.fix(fillId, local) }, "Fix it");
    const retry = (main) => h("button", { type: "button", class: ["btn", "big", main ? "primary" : null], id: "retry-btn", onclick: () => this.retry(fillId) }, "Send again as it is");
    const discard = h("button", { type: "button", class: "btn big", id: "discard-btn", onclick: () => this.discard(fillId) }, "Discard…");
    let said, advice, buttons;
    if (local.no_change_cures) {
      said = "The server refused this fill, and no change to it sends it.";
      advice = `No change sends it: ${local.no_change_cures}. Discard it, saying why.`;
      buttons = [discard];
    } else if (local.waits_for) {
      said = "The server refused this fill for now: it is not sent again by itself.";
      advice = `It waits for ${local.waits_for}; then send it again as it is.`;
      buttons = [retry(true), discard];
    } else {
      said = "The server refused this fill: it is not sent again until you fix it.";
      buttons = [fix, retry(false), discard];
    }
    return h("div", { class: "banner banner-bad", role: "alert", id: "refusal", dataset: { code: local.refused_code || "" } },
      h("strong", {}, said),
      h("p", {}, local.refused || ""),
      advice ? h("p", { id: "refusal-advice" }, advice) : null,
      h("div", { class: "row" }, buttons));
  }

  async resubmit(fillId) {
    try {
      this.station.show("capture");
      await this.capture.resubmit(fillId);
    } catch (err) {
      // Not prepared (offline, resubmitted already): back to the fill, whose button tries again.
      this.station.show("fill");
      toast(err.message, "error");
    }
  }

  async fix(fillId, local) {
    try {
      this.station.show("capture");
      await this.capture.fix(fillId, local);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  async retry(fillId) {
    try {
      await api("POST", `/api/fills/${fillId}/fix`, {});
      toast("It will be sent again.", "ok");
      this.open(fillId);
    } catch (err) {
      toast(err.message, "error");
    }
  }

  discard(fillId) {
    const form = h("form", { class: "discard-form", id: "discard-form" },
      h("label", { for: "discard-reason" }, "Why discard it? (kept in the station's record)"),
      h("input", { id: "discard-reason", required: true, maxlength: "500" }),
      h("button", { type: "submit", class: "btn danger big" }, "Discard"));
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        await api("POST", `/api/fills/${fillId}/discard`, { reason: $("#discard-reason").value });
        toast("Discarded: it will not be sent.", "ok");
        this.station.show("worklist");
      } catch (err) {
        toast(err.message, "error");
      }
    });
    $("#fill-body").append(form);
    $("#discard-reason").focus();
  }
}
