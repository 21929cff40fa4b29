// Verifying one fill: claim on open, heartbeat while open, decide, release on leave, and go to the
// next fill at once from what was fetched ahead. Conflicts are shown as they are; nothing is retried
// behind the pharmacist's back and no decision is ever sent twice.

import { post, ApiError } from "./api.js";
import { h, fill, isTyping, toast } from "./dom.js";
import { CHECK_LABELS, formatTime } from "./format.js";
import { imagesToShow, isVideo, mediaUrl, thumbVariant, viewVariant } from "./prefetch.js";
import * as timing from "./timing.js";
import { renderRxPanel, renderStrip, renderTitle, selectInStrip } from "./verify_view.js";

const HEARTBEAT_MAX_MS = 30000;
const HEARTBEAT_MIN_MS = 500;
const CONFIRM_WINDOW_MS = 5000;
// Approving over these product-check results takes a second press: the barcode disagrees with the Rx.
const CONFIRM_CHECKS = new Set(["mismatch", "expired"]);

const CONFLICT_TEXT = {
  claimed_by_other: ["Another pharmacist has claimed this fill.", "Your view is read-only; nothing you did was sent."],
  lease_lost: ["Your claim on this fill has lapsed.", "Another pharmacist may be verifying it now. Nothing was decided."],
  already_decided: ["This fill has been decided already.", "Your decision was not recorded; the earlier one stands."],
  decided_elsewhere: ["This fill was decided by another pharmacist.", "Nothing you did was sent."],
  stale_version: ["The fill changed since you opened it.", "Your decision was not recorded. Reload it and review it again."],
  gone: ["This fill is no longer available to you.", "It may have been withdrawn or moved out of your states."],
};

export class Workspace {
  constructor({ store, details, images, prefetcher, viewer, els, exit }) {
    this.store = store;
    this.details = details;
    this.images = images;
    this.prefetcher = prefetcher;
    this.viewer = viewer;
    this.els = els;
    this.exit = exit;
    this.me = null;
    this.reasons = [];
    this.reasonLabels = new Map();
    this.current = null;
    this.skipped = new Set();
    this.heartbeatTimer = null;
    this.leaseTicker = null;
    this.confirmUntil = 0;
    this.picker = { open: false, selected: new Set() };

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
    window.addEventListener("pagehide", () => this.releaseOnUnload());
  }

  setUser(me) {
    this.me = me;
  }

  setReasons(reasons) {
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
    const cached = this.details.peek(fillId);
    const cur = { id: fillId, detail: cached, version: null, claimed: false, conflict: null, deciding: false,
      decided: false, released: false, leaseExpiresAt: null, failures: 0, mediaIndex: 0, renewedAt: null, auto };
    this.current = cur;
    this.confirmUntil = 0;
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
    const first = !cur.detail;
    cur.detail = claimed;
    if (first) this.render(claimed);
    else renderTitle(this.els.title, claimed);
    this.startHeartbeat();
    this.updateButtons();
    this.prefetchNext();
    timing.fillClaimed();
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
    const media = d.media || [];
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
    if (media.length) pending.push(this.showMedia(firstPhoto));
    else this.viewer.clear();
    const shown = Promise.all(pending).then(() => {
      if (this.current !== cur) return;
      document.body.dataset.shownFill = d.id;
      timing.fillShown(d.id);
    }, () => {});
    return shown;
  }

  showMedia(i) {
    const media = this.current?.detail?.media || [];
    const m = media[i];
    if (!m) return Promise.resolve();
    if (isVideo(m)) {
      this.viewer.showVideo(m);
      return Promise.resolve();
    }
    return this.viewer.showImage(m, this.images.element(mediaUrl(m, viewVariant(m))));
  }

  selectMedia(i) {
    const cur = this.current;
    const media = cur?.detail?.media || [];
    if (!cur || i < 0 || i >= media.length || i === cur.mediaIndex) return;
    cur.mediaIndex = i;
    selectInStrip(this.els.strip, i);
    this.showMedia(i);
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
  }

  conflict(kind, extra) {
    const cur = this.current;
    if (!cur) return;
    cur.conflict = kind;
    this.stopHeartbeat();
    this.closePicker();
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
    return Boolean(cur && cur.claimed && !cur.conflict && !cur.deciding && !cur.decided);
  }

  updateButtons() {
    const ok = this.canDecide();
    this.els.approve.disabled = !ok;
    this.els.reject.disabled = !ok;
    const cur = this.current;
    if (cur && !cur.claimed && !cur.conflict) fill(this.els.status, "Claiming…");
    else if (cur?.deciding) fill(this.els.status, "Recording the decision…");
    else {
      fill(this.els.status, h("span", { class: "decision-hint" },
        h("kbd", {}, "←"), h("kbd", {}, "→"), " photos · ", h("kbd", {}, "+"), h("kbd", {}, "−"), " zoom · ",
        h("kbd", {}, "F"), " full resolution · ", h("kbd", {}, "?"), " all keys"));
    }
  }

  // -- deciding ------------------------------------------------------------------------------------

  /** A: approve; over a barcode mismatch or expired stock only on a second press. */
  approve(keyTime) {
    if (!this.canDecide()) return;
    const check = this.current.detail.product_check;
    if (CONFIRM_CHECKS.has(check) && performance.now() > this.confirmUntil) {
      this.confirmUntil = performance.now() + CONFIRM_WINDOW_MS;
      const cur = this.current;
      this.setBanner("warn", `Product check: ${CHECK_LABELS[check]}.`, "Press A again within 5 seconds to approve anyway, or R to reject.");
      setTimeout(() => {
        if (this.current === cur && !cur.conflict && this.els.banner.dataset.kind === "warn") this.setBanner(null);
      }, CONFIRM_WINDOW_MS);
      return;
    }
    this.confirmUntil = 0;
    if (keyTime !== undefined) timing.approveKeyPressed(keyTime);
    this.decide("approve", [], null);
  }

  async decide(outcome, reasonCodes, note) {
    const cur = this.current;
    if (!this.canDecide()) return;
    cur.deciding = true;
    this.setBanner(null);
    this.updateButtons();
    try {
      const result = await post(`/api/v1/fills/${encodeURIComponent(cur.id)}/decision`, {
        version: cur.version, outcome, reason_codes: reasonCodes, note,
      });
      this.decided(cur, result, outcome);
    } catch (err) {
      if (this.current !== cur) return;
      cur.deciding = false;
      timing.approvalEnded();
      if (err.status === 0) {
        await this.checkUnanswered(cur, outcome, err);
        return;
      }
      if (err.status === 409) {
        this.conflict(["already_decided", "lease_lost", "stale_version"].includes(err.code) ? err.code : "lease_lost");
        return;
      }
      this.updateButtons();
      this.setBanner("error", "The decision was refused.", err.message);
    }
  }

  decided(cur, result, outcome) {
    cur.decided = true;
    cur.deciding = false;
    this.stopHeartbeat();
    this.details.put(result);
    this.skipped.delete(cur.id);
    const rx = result.prescription?.rx_number;
    toast(`${outcome === "approve" ? "Approved" : "Rejected"}${rx ? ` Rx ${rx}` : ""} · ${result.site.code}`, outcome === "approve" ? "ok" : "info");
    this.advance();
  }

  /** No answer to a decision: ask the server whether it was recorded before letting anyone retry. */
  async checkUnanswered(cur, outcome, err) {
    this.setBanner("warn", "No answer from the server.", "Checking whether the decision was recorded…");
    try {
      this.details.forget(cur.id);
      const d = await this.details.fetch(cur.id);
      if (this.current !== cur) return;
      if (d.decision && d.decision.pharmacist?.id === this.me.id && d.decision.outcome === outcome) {
        this.decided(cur, d, outcome);
        return;
      }
      if (d.decision) {
        this.conflict("already_decided");
        return;
      }
      this.updateButtons();
      this.setBanner("error", "The decision was not recorded.", "The server did not get it. Decide again when the connection is back.");
    } catch {
      if (this.current !== cur) return;
      this.updateButtons();
      this.setBanner("error", "The decision may not have been recorded.", `${err.message} It is safe to try again: a fill is never decided twice.`);
    }
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
    this.closePicker();
    this.decide("reject", reasons, note);
  }

  // -- leaving -------------------------------------------------------------------------------------

  /** N: put this fill back (remembered as skipped) and open the next one. */
  skip() {
    const cur = this.current;
    if (!cur || cur.deciding) return;
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

  reset() {
    this.stopHeartbeat();
    this.current = null;
    this.skipped.clear();
    this.closePicker();
  }

  // -- keys ----------------------------------------------------------------------------------------

  /** Keys while a fill is open; returns true when the key was used. */
  onKey(e) {
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
