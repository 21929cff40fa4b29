// Verifying one fill: claim on open, heartbeat while open, decide, release on leave, and go to the
// next fill at once from what was fetched ahead. Conflicts are shown as they are; nothing is retried
// behind the pharmacist's back and no decision is ever sent twice.
//
// Approve waits until every photo and video was shown (seen.js) and every flag acknowledged. A decision
// is held for the undo window (the claim kept alive meanwhile) while the next fill opens at once; Undo
// sends nothing and reopens the fill. A held decision is sent when the tab closes or on signing out.
// A decision the server will want a proof of identity for (the fill's record says so, `step_up`) asks
// for it before it is held, naming the fill: by the time it is sent nobody may be left to answer.
//
// A Schedule II fill (the server says so in `controlled`) is approved with the count the pharmacist
// types, and its decision is never held: it is sent at once, and the fill stays open until the server
// answers, so a refused count is typed again on the spot.

import { post, ApiError } from "./api.js";
import { h, fill, isTyping, toast } from "./dom.js";
import { ACK_REASONS, describeFlag, flagBadge, flagLabel } from "./flags.js";
import { KIND_LABELS, formatDateTime, formatTime } from "./format.js";
import { isVideo, mediaUrl, thumbVariant, viewVariant } from "./prefetch.js";
import { initials } from "./queue.js";
import { stepUpNeeded, stepUpWhy } from "./second_factor.js";
import { SeenTracker, orderedMedia } from "./seen.js";
import * as timing from "./timing.js";
import { markSeen, renderRxPanel, renderStrip, renderTitle, selectInStrip } from "./verify_view.js";

const HEARTBEAT_MAX_MS = 30000;
const HEARTBEAT_MIN_MS = 500;
const DEFAULT_UNDO_SECONDS = 4;
const REFUSED_TEXT = {
  flags_unacknowledged: "The server refused the approval: a flag was not acknowledged",
  views_unseen: "The server refused the approval: not every photo or video was recorded as seen",
};

// Why a decision is sent at once, as the console says it.
// What the fill's panel shows of a record: all of it but the claim's own fields, which a claim changes.
function panelOf(d) {
  return JSON.stringify({ ...d, state: null, version: null, claimed_by: null, lease_expires_at: null });
}

const NO_UNDO_WHY = "Schedule II decisions are sent at once, with no Undo.";
// The server's refusals of a confirmed count: the pharmacist counts again in the same step.
const COUNT_REFUSALS = new Set(["count_confirmation_required", "count_mismatch", "count_not_recorded"]);
const COUNT_PATTERN = /^\s*\d+(\.\d+)?\s*$/;

const CONFLICT_TEXT = {
  claimed_by_other: ["Another pharmacist has claimed this fill.", "Your view is read-only; nothing you did was sent."],
  lease_lost: ["Your claim on this fill has lapsed.", "Another pharmacist may be verifying it now. Nothing was decided."],
  already_decided: ["This fill has been decided already.", "Your decision was not recorded; the earlier one stands."],
  decided_elsewhere: ["This fill was decided by another pharmacist.", "Nothing you did was sent."],
  stale_version: ["The fill changed since you opened it.", "Your decision was not recorded. Reload it and review it again."],
  gone: ["This fill is no longer available to you.", "It may have been withdrawn or moved out of your states."],
};

export class Workspace {
  constructor({ store, details, images, prefetcher, viewer, els, exit, enter }) {
    this.store = store;
    this.details = details;
    this.images = images;
    this.prefetcher = prefetcher;
    this.viewer = viewer;
    this.els = els;
    this.exit = exit;
    this.enter = enter;
    this.me = null;
    this.reasons = [];
    this.reasonLabels = new Map();
    this.current = null;
    this.skipped = new Set();
    this.heartbeatTimer = null;
    this.leaseTicker = null;
    this.picker = { open: false, selected: new Set() };
    this.acks = { open: false, active: 0, rows: [], count: null };
    this.ackReasons = ACK_REASONS;
    this.ackTitle = document.getElementById("acks-title");
    this.ackTitleText = this.ackTitle?.textContent || "";
    // The Schedule II count: typed by the pharmacist, never filled in for them.
    this.countInput = h("input", { type: "text", id: "v-ack-count", class: "ack-count", inputmode: "decimal", autocomplete: "off", maxlength: "12", placeholder: "Units counted" });
    this.countBox = h("div", { class: "ack-count-box", id: "v-ack-count-box", hidden: true },
      h("label", { for: "v-ack-count" }, "Schedule II: your count of the units in the counted-units photo"),
      this.countInput,
      h("p", {}, `It must match the site's count. ${NO_UNDO_WHY}`));
    els.ackList.before(this.countBox);
    this.countInput.addEventListener("input", () => {
      if (this.acks.count !== null) this.acks.count = this.countInput.value;
      this.updateAcks();
    });
    this.undoSeconds = DEFAULT_UNDO_SECONDS;
    this.held = null;
    this.undoTicker = null;
    // Asks the pharmacist to prove who they are before a decision ({what, why, methods}; main.js):
    // resolves true once they have.
    this.confirmIdentity = null;
    // What asks for a proof, in the server's words, by reason code (/api/v1/reasons).
    this.stepUpReasons = {};

    viewer.onPlaced = (id) => this.current?.seen?.placed(id);
    viewer.onZoom = (id, factor) => this.current?.seen?.zoomed(id, factor);
    for (const b of els.undoButtons) b.addEventListener("click", () => this.undo());
    els.ackCancel.addEventListener("click", () => this.closeAcks());
    els.ackConfirm.addEventListener("click", () => this.confirmAcks());
    els.ackList.addEventListener("change", (e) => this.onAckInput(e));
    els.ackList.addEventListener("input", (e) => this.onAckInput(e));
    document.addEventListener("visibilitychange", () => {
      const seen = this.current?.seen;
      if (!seen) return;
      if (document.hidden) seen.pause();
      else if (!this.current.decided) seen.resume();
    });

    els.approve.addEventListener("click", () => this.approve());
    els.reject.addEventListener("click", () => this.openPicker());
    els.next.addEventListener("click", () => this.skip());
    els.back.addEventListener("click", () => this.leave());
    els.reasonCancel.addEventListener("click", () => this.closePicker());
    els.reasonConfirm.addEventListener("click", () => this.confirmReject());
    els.note.addEventListener("input", () => this.updatePicker());
    els.reasonList.addEventListener("change", (e) => {
      const box = e.target.closest("input[type=checkbox]");
      if (!box) return;
      if (box.checked) this.picker.selected.add(box.value);
      else this.picker.selected.delete(box.value);
      this.updatePicker();
    });
    store.addEventListener("change", () => this.prefetchNext());
    window.addEventListener("pagehide", () => {
      this.sendHeld({ keepalive: true });
      this.releaseOnUnload();
    });
  }

  setUser(me) {
    this.me = me;
  }

  /** What /api/v1/reasons says: rejection reasons, acknowledgement reasons, the undo window, and the
   * words for what asks for a proof of identity. */
  setReasons(reasons, { acknowledgementReasons, undoSeconds, stepUpReasons } = {}) {
    if (acknowledgementReasons?.length) this.ackReasons = acknowledgementReasons;
    if (stepUpReasons) this.stepUpReasons = stepUpReasons;
    if (typeof undoSeconds === "number" && undoSeconds >= 0) this.undoSeconds = undoSeconds;
    this.reasons = reasons;
    this.reasonLabels = new Map(reasons.map((r) => [r.code, r.label]));
    fill(this.els.reasonList, reasons.map((r, i) => h("li", {},
      h("label", { class: "reason" },
        h("input", { type: "checkbox", value: r.code, "data-key": i < 9 ? String(i + 1) : null }),
        i < 9 ? h("kbd", {}, String(i + 1)) : null,
        h("span", {}, r.label)))));
  }

  get active() {
    return this.current !== null;
  }

  // -- opening ------------------------------------------------------------------------------------

  /** Opens a fill: shows what is known at once and claims it; decisions wait for the claim. */
  async open(fillId, { auto = false } = {}) {
    this.stopHeartbeat();
    this.closePicker();
    this.closeAcks();
    this.current?.seen?.pause();
    const cached = this.details.peek(fillId);
    const cur = { id: fillId, detail: cached, version: null, claimed: false, conflict: null, deciding: false,
      proving: false, decided: false, released: false, leaseExpiresAt: null, failures: 0, mediaIndex: 0, renewedAt: null, auto,
      media: [], seen: null, comparing: false };
    this.current = cur;
    this.setBanner(null);
    this.updateButtons();
    this.setLease("Claiming…", "pending");
    if (cached) this.render(cached);
    else this.showLoading();
    let claimed;
    try {
      claimed = (await post(`/api/v1/fills/${encodeURIComponent(fillId)}/claim`)).fill;
    } catch (err) {
      if (this.current !== cur) return;
      this.claimFailed(cur, err);
      return;
    }
    if (this.current !== cur) {
      // The pharmacist moved on while the claim was in flight: give it straight back.
      post(`/api/v1/fills/${encodeURIComponent(fillId)}/release`).catch(() => {});
      return;
    }
    this.details.put(claimed);
    cur.version = claimed.version;
    cur.claimed = true;
    cur.leaseExpiresAt = claimed.lease_expires_at;
    cur.renewedAt = Date.now();
    const shown = cur.detail;
    cur.detail = claimed;
    if (!shown) this.render(claimed);
    else if (panelOf(shown) !== panelOf(claimed)) this.redrawPanel(claimed);
    else renderTitle(this.els.title, claimed);
    this.startHeartbeat();
    this.updateButtons();
    this.prefetchNext();
    timing.fillClaimed();
  }

  /** The claim's record differs from the copy fetched ahead and drawn at once (a flag added since, a
   * fill of the same prescription or drug decided since): the record is what is decided on, so the
   * panel shows it, keeping its scroll; the photos, the same ones, stay as they are. */
  redrawPanel(d) {
    const top = this.els.rx.scrollTop;
    renderTitle(this.els.title, d);
    renderRxPanel(this.els.rx, d, this.reasonLabels);
    this.els.rx.scrollTop = top;
    this.updateButtons();
  }

  claimFailed(cur, err) {
    timing.claimRefused();
    const code = err instanceof ApiError ? err.code : "network";
    if (err.status === 409 || err.status === 404) {
      this.skipped.add(cur.id);
      toast(code === "claimed_by_other" ? "Another pharmacist took that fill first." : "That fill is no longer waiting.", "warn");
      const next = this.store.nextWaiting(this.excluded());
      if (next && cur.auto) this.open(next.id, { auto: true });
      else this.leave({ release: false });
      return;
    }
    this.setLease("Not claimed", "bad");
    this.setBanner("error", "Could not claim this fill.", err.message, [["Try again", "C", () => this.open(cur.id)], ["Back to queue", "Esc", () => this.leave({ release: false })]]);
  }

  showLoading() {
    fill(this.els.title, h("span", { class: "muted" }, "Opening fill…"));
    fill(this.els.rx, h("p", { class: "muted pad" }, "Loading the prescription…"));
    fill(this.els.strip);
    this.viewer.clear();
  }

  /** Draws a fill; resolves once its photos are decoded and in the page. */
  render(d) {
    const cur = this.current;
    renderTitle(this.els.title, d);
    renderRxPanel(this.els.rx, d, this.reasonLabels);
    this.els.rx.scrollTop = 0;
    const media = orderedMedia(d.media);
    const sameMedia = cur.seen && cur.media.length === media.length && cur.media.every((m, i) => m.id === media[i].id);
    cur.media = media;
    cur.comparing = false;
    if (!sameMedia) cur.seen = new SeenTracker(media, () => this.seenChanged(cur));
    const firstPhoto = Math.max(0, media.findIndex((m) => !isVideo(m)));
    cur.mediaIndex = firstPhoto;
    const pending = [];
    renderStrip(this.els.strip, media, firstPhoto, (m) => {
      const url = mediaUrl(m, thumbVariant(m));
      const ready = this.images.element(url);
      if (ready) return ready;
      const slot = h("span", { class: "thumb-missing" }, "…");
      pending.push(this.images.load(url).then((img) => {
        if (slot.isConnected) slot.replaceWith(img);
      }));
      return slot;
    }, (i) => this.selectMedia(i));
    markSeen(this.els.strip, (id) => cur.seen.isSeen(id));
    if (media.length) pending.push(this.showMedia(firstPhoto));
    else this.viewer.clear();
    this.updateButtons();
    const shown = Promise.all(pending).then(() => {
      if (this.current !== cur) return;
      document.body.dataset.shownFill = d.id;
      timing.fillShown(d.id);
    }, () => {});
    return shown;
  }

  showMedia(i) {
    const cur = this.current;
    const m = cur?.media[i];
    if (!m) return Promise.resolve();
    cur.comparing = false;
    cur.seen.show(m.id);
    if (isVideo(m)) {
      cur.seen.watchVideo(m.id, this.viewer.showVideo(m));
      return Promise.resolve();
    }
    return this.viewer.showImage(m, this.images.element(mediaUrl(m, viewVariant(m))));
  }

  selectMedia(i) {
    const cur = this.current;
    const media = cur?.media || [];
    if (!cur || i < 0 || i >= media.length || (i === cur.mediaIndex && !cur.comparing)) return;
    cur.mediaIndex = i;
    selectInStrip(this.els.strip, i);
    this.showMedia(i);
  }

  seenChanged(cur) {
    if (this.current !== cur) return;
    markSeen(this.els.strip, (id) => cur.seen.isSeen(id));
    this.updateButtons();
  }

  /** H: this fill's pills photo beside the last approved one of the same product, and back. */
  toggleCompare() {
    const cur = this.current;
    if (!cur?.detail) return;
    if (cur.comparing) {
      cur.comparing = false;
      this.showMedia(cur.mediaIndex);
      return;
    }
    const last = cur.detail.history?.last_approved_pills;
    const pills = cur.media.find((m) => m.kind === "pills");
    if (!last?.media || !pills) {
      toast(pills ? "No earlier approved fill of this product to compare with." : "This fill has no pills photo.", "info");
      return;
    }
    cur.comparing = true;
    // The strip points at the pills: H again (or an arrow key) goes on from there.
    cur.mediaIndex = cur.media.indexOf(pills);
    selectInStrip(this.els.strip, cur.mediaIndex);
    cur.seen.show(pills.id);
    this.viewer.showCompare(
      { media: pills, caption: "This fill" },
      { media: last.media, caption: `Last approved fill · ${formatDateTime(last.decided_at)}` },
    );
  }

  excluded() {
    const ex = new Set(this.skipped);
    if (this.current) ex.add(this.current.id);
    return ex;
  }

  prefetchNext() {
    if (!this.current || !this.current.claimed) return;
    let next = this.store.nextWaiting(this.excluded());
    if (!next && this.skipped.size) next = this.store.nextWaiting(new Set([this.current.id]));
    this.prefetcher.warm(next ? next.id : null);
  }

  // -- lease ---------------------------------------------------------------------------------------

  leaseMs() {
    const cur = this.current;
    if (!cur?.leaseExpiresAt) return 120000;
    return Math.max(1000, Date.parse(cur.leaseExpiresAt) - this.store.now() + (Date.now() - cur.renewedAt));
  }

  startHeartbeat() {
    this.stopHeartbeat();
    const cur = this.current;
    // A quarter of the lease: three beats can be lost before the claim lapses.
    const every = Math.min(HEARTBEAT_MAX_MS, Math.max(HEARTBEAT_MIN_MS, this.leaseMs() / 4));
    cur.heartbeatEvery = every;
    this.heartbeatTimer = setTimeout(() => this.beat(cur), every);
    this.leaseTicker = setInterval(() => this.tickLease(), 1000);
    this.tickLease();
  }

  stopHeartbeat() {
    clearTimeout(this.heartbeatTimer);
    clearInterval(this.leaseTicker);
    this.heartbeatTimer = null;
    this.leaseTicker = null;
  }

  async beat(cur) {
    if (this.current !== cur || !cur.claimed || cur.conflict || cur.decided || cur.deciding) return;
    try {
      const r = await post(`/api/v1/fills/${encodeURIComponent(cur.id)}/heartbeat`);
      if (this.current !== cur || cur.conflict) return;
      cur.leaseExpiresAt = r.lease_expires_at;
      cur.renewedAt = Date.now();
      cur.failures = 0;
      this.heartbeatTimer = setTimeout(() => this.beat(cur), cur.heartbeatEvery);
    } catch (err) {
      if (this.current !== cur || cur.conflict || cur.decided) return;
      if (err.status === 409) this.conflict("lease_lost");
      else if (err.status === 404) this.conflict("gone");
      else {
        cur.failures += 1;
        this.heartbeatTimer = setTimeout(() => this.beat(cur), Math.min(cur.heartbeatEvery, 2000));
      }
    }
    this.tickLease();
  }

  tickLease() {
    const cur = this.current;
    if (!cur || !cur.claimed || cur.conflict || cur.decided) return;
    const expires = Date.parse(cur.leaseExpiresAt);
    if (cur.failures > 0) {
      if (this.store.now() >= expires) {
        this.conflict("lease_lost", "Your claim ran out while the server could not be reached.");
        return;
      }
      this.setLease(`No contact with the server · claim runs out ${formatTime(cur.leaseExpiresAt)}`, "bad");
      return;
    }
    this.setLease(`Claimed by you · renewed ${formatTime(new Date(cur.renewedAt).toISOString())}`, "ok");
  }

  setLease(text, kind) {
    const el = this.els.lease;
    el.textContent = text;
    el.dataset.kind = kind;
  }

  // -- live events ---------------------------------------------------------------------------------

  /** An event about the open fill that did not come from this console means someone else acted. */
  onEvent(ev) {
    const cur = this.current;
    if (!cur || ev.fill_id !== cur.id || !cur.claimed || cur.conflict || cur.decided || cur.deciding) return;
    if (cur.version !== null && ev.version <= cur.version) return;
    if (ev.type === "fill.claimed" && ev.claimed_by !== this.me.id) this.conflict("claimed_by_other");
    else if (ev.type === "fill.released") {
      this.conflict("lease_lost", ev.why === "lease_expired" ? "Your claim ran out and the fill went back to the queue." : undefined);
    } else if (ev.type === "fill.decided") this.conflict("decided_elsewhere");
    else if (ev.type === "fill.flagged") this.flagAdded(cur);
  }

  /** Another fill of the patient's drug was approved while this one was open: the fill, still ours, now
   * carries a flag, which is shown and acknowledged like any other before it is approved. */
  async flagAdded(cur) {
    this.closeAcks();
    this.details.forget(cur.id);
    let d;
    try {
      d = await this.details.fetch(cur.id);
    } catch {
      this.conflict("stale_version");
      return;
    }
    if (this.current !== cur || cur.conflict || cur.decided || cur.deciding) return;
    cur.detail = d;
    cur.version = d.version;
    renderTitle(this.els.title, d);
    renderRxPanel(this.els.rx, d, this.reasonLabels);
    const late = (d.flags || []).find((f) => f.code === "refill_too_soon");
    this.setBanner("warn", "A flag was added while you had this fill open.", late
      ? `Refill too soon: another fill of this drug for the same patient was approved at ${formatDateTime(late.previous_approved_at)}. Acknowledge it before approving.`
      : "Review its flags before approving.");
    this.updateButtons();
  }

  conflict(kind, extra) {
    const cur = this.current;
    if (!cur) return;
    cur.conflict = kind;
    this.stopHeartbeat();
    this.closePicker();
    this.closeAcks();
    this.updateButtons();
    const [title, text] = CONFLICT_TEXT[kind] || ["This fill cannot be decided now.", ""];
    const actions = [];
    if (kind === "lease_lost") actions.push(["Claim again", "C", () => this.open(cur.id)]);
    if (kind === "stale_version") actions.push(["Reload", "L", () => { this.details.forget(cur.id); this.open(cur.id); }]);
    actions.push(["Next fill", "N", () => this.skip()], ["Back to queue", "Esc", () => this.leave({ release: false })]);
    this.setBanner("error", title, extra || text, actions);
    this.setLease(kind === "lease_lost" ? "Claim lapsed" : "Not yours to decide", "bad");
    if (kind === "already_decided" || kind === "decided_elsewhere") this.showWhoDecided(cur);
  }

  async showWhoDecided(cur) {
    this.details.forget(cur.id);
    try {
      const d = await this.details.fetch(cur.id);
      if (this.current !== cur || !d.decision) return;
      const who = d.decision.pharmacist?.name || "another pharmacist";
      const what = d.decision.outcome === "approve" ? "Approved" : "Rejected";
      this.setBanner("error", CONFLICT_TEXT[cur.conflict][0], `${what} by ${who} at ${formatTime(d.decision.decided_at)}. Nothing you did was sent.`,
        [["Next fill", "N", () => this.skip()], ["Back to queue", "Esc", () => this.leave({ release: false })]]);
    } catch {
      // The banner already says what matters.
    }
  }

  setBanner(kind, title, text, actions = []) {
    const el = this.els.banner;
    if (!kind) {
      el.hidden = true;
      el.replaceChildren();
      delete el.dataset.kind;
      return;
    }
    el.dataset.kind = kind;
    fill(el,
      h("div", { class: "banner-text" }, h("strong", {}, title), text ? h("span", {}, ` ${text}`) : null),
      h("div", { class: "banner-actions" }, actions.map(([label, key, fn]) =>
        h("button", { type: "button", class: "btn small", onclick: fn }, label, " ", h("kbd", {}, key)))));
    el.hidden = false;
  }

  canDecide() {
    const cur = this.current;
    return Boolean(cur && cur.claimed && !cur.conflict && !cur.deciding && !cur.proving && !cur.decided);
  }

  /** The labels of what this fill still has unseen (empty: everything was shown). */
  unseen() {
    return this.current?.seen ? this.current.seen.unseen() : [];
  }

  updateButtons() {
    const ok = this.canDecide();
    const unseen = this.unseen();
    this.els.approve.disabled = !ok || unseen.length > 0;
    this.els.approve.title = unseen.length ? `Not yet seen: ${unseen.join(", ")}` : "";
    this.els.reject.disabled = !ok;
    const cur = this.current;
    if (cur && !cur.claimed && !cur.conflict) fill(this.els.status, "Claiming…");
    else if (cur?.deciding) fill(this.els.status, "Recording the decision…");
    else if (cur?.proving) fill(this.els.status, "Confirm it is you to record the decision…");
    else if (cur && unseen.length && !cur.conflict) {
      fill(this.els.status, h("span", { class: "unseen", id: "v-unseen" }, h("strong", {}, "Not yet seen: "), unseen.join(", ")));
    } else {
      fill(this.els.status, h("span", { class: "decision-hint" },
        h("kbd", {}, "←"), h("kbd", {}, "→"), " photos · ", h("kbd", {}, "+"), h("kbd", {}, "−"), " zoom · ",
        h("kbd", {}, "F"), " full resolution · ", h("kbd", {}, "?"), " all keys"));
    }
  }

  // -- deciding ------------------------------------------------------------------------------------

  /**
   * A (or the button): approve once every photo and video was shown. A flagged fill is never approved
   * by the key alone: it opens the acknowledgement step, one reason per flag.
   */
  approve(keyTime) {
    const cur = this.current;
    if (!this.canDecide()) return;
    const unseen = this.unseen();
    if (unseen.length) {
      this.setBanner("warn", "Not every view was shown yet.", `Look at ${unseen.join(", ")} first (← → or click the strip).`);
      return;
    }
    if ((cur.detail.flags || []).length || cur.detail.controlled?.count_confirmation) {
      this.openAcks();
      return;
    }
    if (keyTime !== undefined) timing.approveKeyPressed(keyTime);
    this.commit("approve", { acknowledgements: [] });
  }

  /** The decision is made: once the pharmacist proved who they are where the server will want it,
   * held for the undo window while the next fill opens at once. */
  async commit(outcome, { reasonCodes = [], note = null, acknowledgements = [], count = null } = {}) {
    const cur = this.current;
    if (!this.canDecide()) return;
    const body = {
      version: cur.version, outcome, reason_codes: reasonCodes, note, acknowledgements, views_seen: cur.seen.report(),
    };
    if (count !== null) body.count_confirmation = { count };
    if (cur.detail?.controlled?.undo === false) {
      this.closePicker();
      this.sendNow(cur, body);
      return;
    }
    const what = this.decisionName(cur, outcome);
    const needed = this.proofNeeded(cur.detail, outcome);
    if (needed.length && !(await this.proveFirst(cur, body, what, needed))) return;
    cur.seen.pause();
    cur.decided = true;
    this.stopHeartbeat();
    this.setBanner(null);
    this.closeAcks();
    this.closePicker();
    this.hold(cur, body, what);
    this.skipped.delete(cur.id);
    this.advance();
  }

  /** The decision as the pharmacist would say it, naming the fill: "Approve Rx 7100457 for J. W. at ND-1". */
  decisionName(cur, outcome) {
    const d = cur.detail || {};
    const rx = d.prescription || {};
    const patient = initials(rx.patient_name);
    return [outcome === "approve" ? "Approve" : "Reject", rx.rx_number ? `Rx ${rx.rx_number}` : "this fill",
      patient ? `for ${patient}` : null, d.site?.code ? `at ${d.site.code}` : null].filter(Boolean).join(" ");
  }

  /** What the server will want a proof of identity for when this decision reaches it (the record's
   * `step_up`): the decision's own reasons, and the session's age when its last proof will be too old
   * by the time a held decision is sent. */
  proofNeeded(d, outcome) {
    return stepUpNeeded(d?.step_up, outcome, { now: this.store.now(), waitMs: this.undoSeconds * 1000 });
  }

  /** Asks for the proof a decision needs before it is held; true when it was given and the fill can
   * still be decided as it was. Cancelled, nothing is sent and the fill stays open and claimed. */
  async proveFirst(cur, body, what, needed) {
    const methods = cur.detail.step_up.methods;
    if (!methods.length) {
      this.setBanner("error", `${what}: not sent.`,
        "This site's fills are decided with a second factor: add one under Security, then decide again.");
      return false;
    }
    cur.proving = true;
    this.refreshDecisionControls();
    let proved = false;
    try {
      // The server keeps one proof for the next decision that needs one: a decision still waiting for
      // its Undo window goes first, so that it cannot use the proof given for this one.
      if (this.held) await this.sendHeld();
      if (this.current === cur && !cur.conflict && this.confirmIdentity) {
        proved = await this.confirmIdentity({ what, why: this.whyProof(needed), methods });
      }
    } finally {
      cur.proving = false;
    }
    if (this.current !== cur) return false;
    this.refreshDecisionControls();
    if (!this.canDecide()) return false;
    if (cur.version !== body.version) {
      // The fill changed while the prompt was open (a flag added): what was decided is not what it is.
      this.closeAcks();
      this.closePicker();
      return false;
    }
    if (!proved) {
      this.setBanner("warn", `${what}: not sent.`, "You did not confirm it is you. The fill is still open and yours.");
      return false;
    }
    return true;
  }

  /** What asks for a proof, as the prompt says it: "you override a product-check flag; ...". */
  whyProof(reasons) {
    return stepUpWhy(reasons, this.stepUpReasons);
  }

  refreshDecisionControls() {
    this.updateButtons();
    if (this.acks.open) this.updateAcks();
    if (this.picker.open) this.updatePicker();
  }

  // -- sent at once (Schedule II) -----------------------------------------------------------------

  decisionLabel(cur, body) {
    const rx = cur.detail?.prescription?.rx_number;
    return `${body.outcome === "approve" ? "Approved" : "Rejected"}${rx ? ` Rx ${rx}` : ""}`;
  }

  /** Posts a decision; when the server asks who decides, asks and, once proved, posts it again. */
  async postDecision(cur, body) {
    for (;;) {
      try {
        return await post(`/api/v1/fills/${encodeURIComponent(cur.id)}/decision`, body);
      } catch (err) {
        if (!(await this.provedAfter(err, this.decisionName(cur, body.outcome)))) throw err;
      }
    }
  }

  /** The server's 403 step_up_required to a decision, as the prompt naming it: true once proved. */
  async provedAfter(err, what) {
    if (err.code !== "step_up_required" || !this.confirmIdentity) return false;
    return this.confirmIdentity({ what, why: this.whyProof(err.detail?.reasons || []), methods: err.detail?.methods });
  }

  /** A decision with no Undo: sent now, the fill open until the server answers. */
  async sendNow(cur, body) {
    const label = this.decisionLabel(cur, body);
    cur.deciding = true;
    cur.seen.pause();
    this.stopHeartbeat();
    this.updateButtons();
    if (this.acks.open) this.updateAcks();
    this.setBanner("info", "Sending your decision now.", NO_UNDO_WHY);
    // An earlier decision waiting for its Undo window goes first, and is answered before this one
    // leaves: it may have been proved for, and the server keeps one proof, for the next decision.
    if (this.held) await this.sendHeld();
    let result;
    try {
      result = await this.postDecision(cur, body);
    } catch (err) {
      cur.deciding = false;
      this.sendNowFailed(cur, label, err);
      return;
    }
    cur.deciding = false;
    cur.decided = true;
    this.details.put(result);
    this.setBanner(null);
    this.closeAcks();
    this.closePicker();
    toast(`${label} · sent at once (${NO_UNDO_WHY.toLowerCase().replace(/\.$/, "")})`, body.outcome === "approve" ? "ok" : "info");
    this.skipped.delete(cur.id);
    this.advance();
  }

  sendNowFailed(cur, label, err) {
    if (this.current !== cur) return;
    if (err.status === 409 && CONFLICT_TEXT[err.code] && err.code !== "stale_version") {
      this.closeAcks();
      this.conflict(err.code);
      return;
    }
    cur.seen.resume();
    this.startHeartbeat();
    this.updateButtons();
    if (COUNT_REFUSALS.has(err.code) && this.acks.open) {
      // Counted again in the same step: the typed count is cleared, the reasons stay.
      this.setBanner(null);
      this.acks.count = "";
      this.countInput.value = "";
      this.updateAcks();
      this.els.ackError.textContent = err.message;
      this.els.ackError.hidden = false;
      this.countInput.focus();
      return;
    }
    if (err.status === 409 && err.code === "stale_version") {
      this.closeAcks();
      this.conflict(err.code);
      return;
    }
    if (this.acks.open) this.updateAcks();
    this.setBanner("error", `${label} was not recorded.`, err.message);
  }

  // -- the undo window -----------------------------------------------------------------------------

  hold(cur, body, what) {
    if (this.held) this.sendHeld(); // one decision waits at a time: the earlier one goes now
    const rx = cur.detail?.prescription?.rx_number;
    const held = {
      cur, body, what, until: performance.now() + this.undoSeconds * 1000,
      label: `${body.outcome === "approve" ? "Approved" : "Rejected"}${rx ? ` Rx ${rx}` : ""}`,
      timer: null, beat: null,
    };
    this.held = held;
    held.timer = setTimeout(() => this.sendHeld(), this.undoSeconds * 1000);
    // The claim stays ours while the decision waits: the heartbeat goes on for it.
    const beat = () => {
      held.beat = setTimeout(async () => {
        if (this.held !== held) return;
        try {
          const r = await post(`/api/v1/fills/${encodeURIComponent(cur.id)}/heartbeat`);
          cur.leaseExpiresAt = r.lease_expires_at;
          cur.renewedAt = Date.now();
        } catch {
          // The decision's answer will say so if the claim was lost.
        }
        if (this.held === held) beat();
      }, Math.min(cur.heartbeatEvery || HEARTBEAT_MAX_MS, Math.max(HEARTBEAT_MIN_MS, this.undoSeconds * 500)));
    };
    beat();
    this.renderUndo();
    clearInterval(this.undoTicker);
    this.undoTicker = setInterval(() => this.renderUndo(), 250);
  }

  renderUndo() {
    const held = this.held;
    for (const el of this.els.undoBars) {
      el.hidden = !held;
      if (!held) continue;
      const left = Math.max(0, Math.ceil((held.until - performance.now()) / 1000));
      el.dataset.fill = held.cur.id;
      el.querySelector(".undo-text").textContent = `${held.label} · sent in ${left} s`;
    }
    if (!held) clearInterval(this.undoTicker);
  }

  /** U or Ctrl+Z: the held decision is dropped unsent and its fill, still claimed, opens again. */
  undo() {
    const held = this.held;
    if (!held) return false;
    clearTimeout(held.timer);
    clearTimeout(held.beat);
    this.held = null;
    this.renderUndo();
    timing.approvalEnded();
    const open = this.current;
    if (open && open !== held.cur) {
      this.release(open);
      open.seen?.pause();
    }
    const cur = held.cur;
    cur.decided = false;
    cur.deciding = false;
    this.current = cur;
    this.closePicker();
    this.closeAcks();
    this.setBanner(null);
    this.enter();
    this.render(cur.detail);
    cur.seen.resume();
    this.startHeartbeat();
    this.updateButtons();
    this.prefetchNext();
    toast(`Undone: ${held.label.replace(/^Approved|^Rejected/, (w) => w.toLowerCase())} was not sent.`, "info");
    return true;
  }

  /** Sends the held decision now (the window ran out, another decision came, the tab is closing). */
  sendHeld({ keepalive = false } = {}) {
    const held = this.held;
    if (!held) return Promise.resolve();
    clearTimeout(held.timer);
    clearTimeout(held.beat);
    this.held = null;
    this.renderUndo();
    return this.deliver(held, { keepalive });
  }

  deliver(held, { keepalive = false } = {}) {
    const cur = held.cur;
    cur.deciding = true;
    return post(`/api/v1/fills/${encodeURIComponent(cur.id)}/decision`, held.body, { keepalive }).then(
      (result) => {
        cur.deciding = false;
        this.details.put(result);
        toast(`${held.label} · ${result.site?.code || ""} sent`, held.body.outcome === "approve" ? "ok" : "info");
      },
      async (err) => {
        cur.deciding = false;
        // The server still asks who decides (the proof given before it was held lapsed, or was used by
        // another decision): once it is proved, the same decision goes again.
        if (await this.provedAfter(err, held.what)) return this.deliver(held);
        return this.heldFailed(held, err);
      },
    );
  }

  async heldFailed(held, err) {
    const cur = held.cur;
    if (err.code === "step_up_required") {
      // Not proved: nothing was recorded, and the fill goes back to the queue rather than wait, claimed,
      // for its lease to run out while the pharmacist is on another.
      post(`/api/v1/fills/${encodeURIComponent(cur.id)}/release`).catch(() => {});
      toast(`${held.label} was not recorded: you did not confirm it is you. The fill is back in the queue.`, "error");
      return;
    }
    if (err.status === 0) {
      // No answer: ask whether it was recorded before saying anything else.
      try {
        this.details.forget(cur.id);
        const d = await this.details.fetch(cur.id);
        if (d.decision && d.decision.pharmacist?.id === this.me?.id && d.decision.outcome === held.body.outcome) {
          toast(`${held.label} · recorded`, "ok");
          return;
        }
        if (d.decision) {
          toast(`${held.label} was not recorded: the fill was decided by ${d.decision.pharmacist?.name || "another pharmacist"}.`, "error");
          return;
        }
      } catch {
        // fall through
      }
      toast(`${held.label} may not have been recorded: ${err.message} Open the fill to decide again.`, "error");
      return;
    }
    if (err.status === 422 && REFUSED_TEXT[err.code]) {
      const missing = err.detail?.missing || [];
      const what = err.code === "views_unseen"
        ? missing.map((id) => KIND_LABELS[held.cur.media.find((m) => m.id === id)?.kind] || `media ${id}`)
        : missing;
      toast(`${held.label} was refused. ${REFUSED_TEXT[err.code]}${what.length ? ` (${what.join(", ")})` : ""}.`, "error");
      return;
    }
    if (err.status === 409 && err.code === "already_decided") {
      let who = "";
      try {
        this.details.forget(cur.id);
        const d = await this.details.fetch(cur.id);
        if (d.decision) {
          who = ` ${d.decision.outcome === "approve" ? "Approved" : "Rejected"} by ${d.decision.pharmacist?.name || "another pharmacist"} at ${formatTime(d.decision.decided_at)}.`;
        }
      } catch {
        // Who decided is a detail; the refusal is what matters.
      }
      toast(`${held.label} was not recorded: the fill had been decided already; the earlier decision stands.${who}`, "error");
      return;
    }
    if (err.status === 409 && err.code === "stale_version") {
      // A flag added while the decision waited (another fill of the drug approved) is said by name.
      let added = [];
      try {
        this.details.forget(cur.id);
        const d = await this.details.fetch(cur.id);
        const acknowledged = new Set((held.body.acknowledgements || []).map((a) => a.flag));
        added = (d.flags || []).filter((f) => !acknowledged.has(f.code)).map((f) => flagLabel(f.code));
      } catch {
        // The refusal is what matters.
      }
      if (added.length && held.body.outcome === "approve") {
        toast(`${held.label} was not recorded: a flag was added while it waited (${added.join(", ")}). Open the fill again to acknowledge it.`, "error");
        return;
      }
    }
    if (err.status === 409) {
      const text = {
        already_decided: "the fill had been decided already; the earlier decision stands.",
        lease_lost: "your claim on the fill had lapsed.",
        stale_version: "the fill changed since you opened it.",
      }[err.code] || err.message;
      toast(`${held.label} was not recorded: ${text}`, "error");
      return;
    }
    toast(`${held.label} was refused: ${err.message}`, "error");
  }

  // -- acknowledging flags -------------------------------------------------------------------------

  openAcks() {
    const cur = this.current;
    if (!this.canDecide()) return;
    this.closePicker();
    const flags = cur.detail.flags || [];
    const counting = Boolean(cur.detail.controlled?.count_confirmation);
    this.acks = { open: true, active: 0, rows: flags.map((f) => ({ flag: f, reason: "", note: "" })), count: counting ? "" : null };
    this.countInput.value = "";
    this.countBox.hidden = !counting;
    if (this.ackTitle) {
      this.ackTitle.textContent = !counting ? this.ackTitleText
        : flags.length ? "Approve: confirm the count and acknowledge each flag" : "Approve: confirm the count";
    }
    this.els.ackKeys.hidden = !flags.length;
    this.els.acksPanel.querySelector(".picker-sub").hidden = !flags.length;
    const reasons = this.ackReasons;
    fill(this.els.ackList, this.acks.rows.map((row, i) => h("li", { class: "ack-row", "data-flag": row.flag.code, "data-index": String(i) },
      h("div", { class: "ack-flag" }, flagBadge(row.flag, { long: true }), h("span", { class: "flag-text" }, describeFlag(row.flag))),
      h("div", { class: "ack-inputs" },
        h("select", { class: "ack-reason", "aria-label": `Reason for ${row.flag.code}`, "data-index": String(i) },
          h("option", { value: "" }, "Choose why it is acceptable…"),
          reasons.map((r, k) => h("option", { value: r.code }, `${k + 1}. ${r.label}`))),
        h("input", { type: "text", class: "ack-note", maxlength: "500", placeholder: "Note (required for Other)", "aria-label": `Note for ${row.flag.code}`, "data-index": String(i) })))));
    fill(this.els.ackKeys, reasons.map((r, k) => h("span", {}, h("kbd", {}, String(k + 1)), ` ${r.label}`)));
    this.els.acksPanel.hidden = false;
    this.updateAcks();
    if (counting) this.countInput.focus();
  }

  closeAcks() {
    if (this.els.acksPanel.contains(document.activeElement)) document.activeElement.blur();
    this.acks = { open: false, active: 0, rows: [], count: null };
    this.countInput.value = "";
    this.countBox.hidden = true;
    this.els.acksPanel.hidden = true;
    this.els.ackError.hidden = true;
    fill(this.els.ackList);
  }

  onAckInput(e) {
    const i = Number(e.target.dataset.index);
    const row = this.acks.rows[i];
    if (!row) return;
    if (e.target.classList.contains("ack-reason")) row.reason = e.target.value;
    else if (e.target.classList.contains("ack-note")) row.note = e.target.value;
    this.acks.active = i;
    this.updateAcks();
  }

  /** Digit n: the n-th reason for the highlighted flag, then on to the next flag without one. */
  chooseAck(k) {
    const reason = this.ackReasons[k];
    const row = this.acks.rows[this.acks.active];
    if (!reason || !row) return;
    row.reason = reason.code;
    const li = this.els.ackList.children[this.acks.active];
    li.querySelector(".ack-reason").value = reason.code;
    if (reason.code === "other") {
      li.querySelector(".ack-note").focus();
    } else {
      const next = this.acks.rows.findIndex((r, j) => j > this.acks.active && !r.reason);
      if (next >= 0) this.acks.active = next;
    }
    this.updateAcks();
  }

  moveAck(delta) {
    const n = this.acks.rows.length;
    this.acks.active = Math.max(0, Math.min(n - 1, this.acks.active + delta));
    this.updateAcks();
  }

  ackProblem() {
    const count = this.acks.count;
    if (count !== null && !count.trim()) return "Type your count of the units in the counted-units photo.";
    if (count !== null && !COUNT_PATTERN.test(count)) return "Type the count as a number, such as 30.";
    const missing = this.acks.rows.filter((r) => !r.reason);
    if (missing.length) return `Choose a reason for every flag (${missing.length} left).`;
    if (this.acks.rows.some((r) => r.reason === "other" && !r.note.trim())) return "“Other” needs a note saying why.";
    return null;
  }

  updateAcks() {
    [...this.els.ackList.children].forEach((li, i) => {
      const row = this.acks.rows[i];
      li.classList.toggle("is-active", i === this.acks.active);
      li.classList.toggle("is-done", Boolean(row.reason) && (row.reason !== "other" || Boolean(row.note.trim())));
      li.querySelector(".ack-note").required = row.reason === "other";
    });
    const problem = this.ackProblem();
    this.els.ackConfirm.disabled = Boolean(problem) || !this.canDecide();
    const showProblem = problem && (this.acks.rows.some((r) => r.reason) || Boolean(this.acks.count?.trim()));
    this.els.ackError.textContent = showProblem ? problem : "";
    this.els.ackError.hidden = !showProblem;
  }

  confirmAcks() {
    const problem = this.ackProblem();
    if (problem) {
      this.els.ackError.textContent = problem;
      this.els.ackError.hidden = false;
      return;
    }
    const acknowledgements = this.acks.rows.map((r) => ({ flag: r.flag.code, reason: r.reason, note: r.note.trim() || null }));
    const count = this.acks.count === null ? null : this.acks.count.trim();
    this.commit("approve", { acknowledgements, count });
  }

  onAckKey(e) {
    const typing = isTyping(e.target);
    if (e.key === "Escape") {
      this.closeAcks();
      return true;
    }
    if (e.key === "Enter" && e.target === this.countInput && this.acks.rows.some((r) => !r.reason)) {
      // The count is typed: on to the flags, whose reasons are chosen by number.
      this.countInput.blur();
      this.updateAcks();
      return true;
    }
    if (e.key === "Enter" && (!typing || e.ctrlKey || e.metaKey || e.target.classList?.contains("ack-note") || e.target === this.countInput)) {
      this.confirmAcks();
      return true;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      this.moveAck(e.key === "ArrowDown" ? 1 : -1);
      return true;
    }
    if (/^[1-9]$/.test(e.key)) {
      this.chooseAck(Number(e.key) - 1);
      return true;
    }
    return true; // A and every other key do nothing while the step is open
  }

  /** After a decision: the next waiting fill at once, or back to the queue when there is none. */
  advance() {
    const next = this.store.nextWaiting(this.excluded());
    if (!next) {
      timing.approvalEnded();
      this.current = null;
      this.exit();
      toast("No more fills waiting.", "info");
      return;
    }
    this.open(next.id, { auto: true });
  }

  // -- rejection -----------------------------------------------------------------------------------

  openPicker() {
    if (!this.canDecide()) return;
    this.closeAcks();
    this.picker.open = true;
    this.els.reasons.hidden = false;
    this.syncPicker();
    this.updatePicker();
  }

  closePicker() {
    // Focus must not stay in the hidden note: the next keys would type into it instead of acting.
    if (this.els.reasons.contains(document.activeElement)) document.activeElement.blur();
    this.picker = { open: false, selected: new Set() };
    this.els.reasons.hidden = true;
    this.els.note.value = "";
    this.els.reasonError.hidden = true;
    this.syncPicker();
  }

  syncPicker() {
    for (const box of this.els.reasonList.querySelectorAll("input[type=checkbox]")) {
      box.checked = this.picker.selected.has(box.value);
    }
  }

  toggleReason(index) {
    const reason = this.reasons[index];
    if (!reason) return;
    if (!this.picker.open) this.openPicker();
    if (!this.picker.open) return;
    const sel = this.picker.selected;
    if (sel.has(reason.code)) sel.delete(reason.code);
    else sel.add(reason.code);
    this.syncPicker();
    this.updatePicker();
    if (reason.code === "other" && sel.has("other")) this.els.note.focus();
  }

  /** Why the rejection cannot be sent yet, or null when it can. */
  rejectionProblem() {
    if (this.picker.selected.size === 0) return "Choose at least one reason.";
    if (this.picker.selected.has("other") && !this.els.note.value.trim()) return "“Other” needs a note saying what is wrong.";
    return null;
  }

  updatePicker() {
    const problem = this.rejectionProblem();
    this.els.reasonConfirm.disabled = Boolean(problem) || !this.canDecide();
    this.els.noteRequired.hidden = !this.picker.selected.has("other");
    const err = this.els.reasonError;
    if (problem && this.picker.selected.size > 0) {
      err.textContent = problem;
      err.hidden = false;
    } else {
      err.hidden = true;
    }
  }

  confirmReject() {
    const problem = this.rejectionProblem();
    if (problem) {
      // The button is disabled in this case; the message covers the Enter key.
      this.els.reasonError.textContent = problem;
      this.els.reasonError.hidden = false;
      return;
    }
    const reasons = this.reasons.map((r) => r.code).filter((c) => this.picker.selected.has(c));
    const note = this.els.note.value.trim() || null;
    // Closed once the decision is held or sent: a prompt for a proof, cancelled, leaves it as it was.
    this.commit("reject", { reasonCodes: reasons, note });
  }

  // -- leaving -------------------------------------------------------------------------------------

  /** N: put this fill back (remembered as skipped) and open the next one. */
  skip() {
    const cur = this.current;
    if (!cur || cur.deciding || cur.proving) return;
    this.release(cur);
    this.skipped.add(cur.id);
    const next = this.store.nextWaiting(this.excluded());
    if (!next) {
      this.current = null;
      this.stopHeartbeat();
      this.exit();
      toast("No other fill is waiting.", "info");
      return;
    }
    this.open(next.id, { auto: true });
  }

  /** Esc: release and return to the queue; resolves when the release is done. */
  leave({ release = true } = {}) {
    const cur = this.current;
    if (cur && cur.deciding) return Promise.resolve();
    const released = cur && release ? this.release(cur) : Promise.resolve();
    this.stopHeartbeat();
    this.closePicker();
    this.closeAcks();
    cur?.seen?.pause();
    this.current = null;
    timing.approvalEnded();
    this.prefetcher.warm(null);
    this.exit();
    return released;
  }

  /** Gives the fill back; resolves when the server has it (errors are moot: the lease lapses anyway). */
  release(cur, { keepalive = false } = {}) {
    this.stopHeartbeat();
    if (!cur.claimed || cur.conflict || cur.decided || cur.released) return Promise.resolve();
    cur.released = true;
    return post(`/api/v1/fills/${encodeURIComponent(cur.id)}/release`, {}, { keepalive }).catch(() => {});
  }

  releaseOnUnload() {
    const cur = this.current;
    if (!cur || cur.conflict || cur.decided || cur.released) return;
    // Even with the claim still in flight: if it lands, this undoes it; if not, the server says 409.
    cur.released = true;
    post(`/api/v1/fills/${encodeURIComponent(cur.id)}/release`, {}, { keepalive: true }).catch(() => {});
  }

  /** Signing out: a held decision is sent first, and the open fill given back. */
  async flush() {
    await this.sendHeld().catch(() => {});
    if (this.active) await this.leave();
  }

  reset() {
    this.stopHeartbeat();
    this.current = null;
    this.skipped.clear();
    this.closePicker();
    this.closeAcks();
  }

  // -- keys ----------------------------------------------------------------------------------------

  /** Keys while a fill is open; returns true when the key was used. */
  onKey(e) {
    if (this.held && !isTyping(e.target) && (e.ctrlKey || e.metaKey) && !e.shiftKey && e.key.toLowerCase() === "z") return this.undo();
    if (this.acks.open) return this.onAckKey(e);
    if (this.picker.open) return this.onPickerKey(e);
    if (isTyping(e.target) || e.ctrlKey || e.metaKey || e.altKey) return false;
    const key = e.key;
    if (key === "Escape") {
      this.leave({ release: !this.current?.conflict });
      return true;
    }
    if (!e.shiftKey && (key === "ArrowLeft" || key === "ArrowRight")) {
      if (this.current) this.selectMedia(this.current.mediaIndex + (key === "ArrowLeft" ? -1 : 1));
      return true;
    }
    const lower = key.length === 1 ? key.toLowerCase() : key;
    if (lower === "a") this.approve(e.timeStamp);
    else if (lower === "r") this.openPicker();
    else if (lower === "u") this.undo();
    else if (lower === "h") this.toggleCompare();
    else if (lower === "n") this.skip();
    else if (lower === "c" && this.current?.conflict === "lease_lost") this.open(this.current.id);
    else if (lower === "l" && this.current?.conflict === "stale_version") {
      this.details.forget(this.current.id);
      this.open(this.current.id);
    } else if (/^[1-9]$/.test(key)) this.toggleReason(Number(key) - 1);
    else return this.viewer.onKey(e);
    return true;
  }

  onPickerKey(e) {
    const typing = isTyping(e.target);
    if (e.key === "Escape") {
      this.closePicker();
      return true;
    }
    if (e.key === "Enter" && (!typing || e.ctrlKey || e.metaKey)) {
      this.confirmReject();
      return true;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return false;
    if (/^[1-9]$/.test(e.key)) {
      this.toggleReason(Number(e.key) - 1);
      return true;
    }
    return false;
  }
}
