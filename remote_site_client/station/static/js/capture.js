// The capture screen: pick the prescription, take each view the site requires (camera or file), see
// the station's checks on each photo at once, count, and save into the outbox.

import { api, upload, withToken, StationError } from "./api.js";
import { $, h, fill, toast } from "./dom.js";
import { PRIORITY_WORDS, bytes, product, shortId } from "./format.js";

const PHOTO_TYPES = ["image/jpeg", "image/png", "image/webp"];
const VIDEO_TYPES = ["video/mp4", "video/webm"];
const CAMERA_KEY = "tp-station-camera";

function recorderType() {
  for (const t of ["video/mp4;codecs=avc1", "video/mp4", "video/webm;codecs=vp8", "video/webm"]) {
    if (window.MediaRecorder && MediaRecorder.isTypeSupported(t)) return t;
  }
  return "";
}

// A prescription not yet through the pharmacist's data-entry check (PV1) cannot be filled.
const PV1_WAITS = {
  awaiting_verification: "waits for the pharmacist's data-entry check",
  in_review: "the pharmacist is checking its data entry",
  returned: "returned by the pharmacist: correct it with tp-site rx edit",
};

export class Capture {
  constructor(station, actions) {
    this.station = station;
    this.actions = actions;
    this.prescriptions = [];
    this.rx = null;
    this.siteRequired = ["stock_bottle", "pills", "vial_label"];
    this.required = this.siteRequired;
    this.siteOptional = ["count_video"];
    this.names = {};
    this.optional = this.siteOptional;
    this.priorities = ["waiting", "routine", "delivery"];
    this.defaultPriority = "routine";
    this.views = [];
    this.index = 0;
    this.captures = new Map(); // kind -> {id, ok, problems, notes, url, kept, video}
    this.retake = new Set();
    this.mode = { kind: "new" };
    this.stream = null;
    this.cameraTurn = 0; // counts the camera's starts and stops
    this.recorder = null;
    this.lastSaved = null;
    this.busy = false;
    this.wire();
  }

  configure(state) {
    this.siteRequired = state.required_views;
    this.required = state.required_views;
    this.names = state.view_names;
    this.siteOptional = state.optional_views;
    this.optional = state.optional_views.filter((k) => !this.required.includes(k));
    this.priorities = state.priorities;
    this.defaultPriority = state.default_priority;
  }

  wire() {
    $("#rx-search").addEventListener("input", () => this.renderPrescriptions());
    $("#rx-search").addEventListener("keydown", (e) => {
      if (e.key === "Enter") {
        e.preventDefault();
        this.pickByText($("#rx-search").value);
      }
    });
    $("#rx-change").addEventListener("click", () => this.reset());
    $("#capture-btn").addEventListener("click", () => this.takePhoto());
    $("#retake-btn").addEventListener("click", () => this.retakeCurrent());
    $("#record-btn").addEventListener("click", () => this.toggleRecording());
    $("#save-btn").addEventListener("click", () => this.save());
    $("#count").addEventListener("input", () => this.countSaid(""));
    $("#count-confirm-save").addEventListener("click", () => this.save({ countConfirmed: true }));
    $("#count-confirm-change").addEventListener("click", () => {
      this.countSaid("");
      $("#count").focus();
      $("#count").select();
    });
    $("#camera").addEventListener("change", () => {
      localStorage.setItem(CAMERA_KEY, $("#camera").value);
      this.startCamera();
    });
    $("#file-input").addEventListener("change", (e) => {
      const file = e.target.files?.[0];
      e.target.value = "";
      if (file) this.sendFile(file);
    });
    const stage = $("#stage");
    stage.addEventListener("dragover", (e) => {
      e.preventDefault();
      $("#drop-hint").hidden = false;
    });
    stage.addEventListener("dragleave", () => {
      $("#drop-hint").hidden = true;
    });
    stage.addEventListener("drop", (e) => {
      e.preventDefault();
      $("#drop-hint").hidden = true;
      const file = e.dataTransfer?.files?.[0];
      if (file) this.sendFile(file);
    });
  }

  // -- the screen's life -----------------------------------------------------------------------

  async shown() {
    if (!this.rx) {
      await this.loadPrescriptions();
      $("#rx-search").focus();
    } else {
      this.startCamera();
    }
  }

  hidden() {
    this.stopCamera();
  }

  cameraId() {
    return $("#camera").value || "";
  }

  message(msg) {
    if (!this.lastSaved) return;
    const status = $("#save-status");
    if (msg.type === "progress" && msg.fill_id === this.lastSaved && msg.total) {
      status.textContent = `Saved as fill ${shortId(msg.fill_id)}. Sending: ${Math.round((100 * msg.sent) / msg.total)} % (${bytes(msg.sent)} of ${bytes(msg.total)}).`;
    } else if (msg.type === "outbox" && msg.fill_id === this.lastSaved) {
      if (msg.state === "queued") status.textContent = `Fill ${shortId(msg.fill_id)} was delivered: it waits for the pharmacist.`;
      else if (msg.state === "failed") status.textContent = `Fill ${shortId(msg.fill_id)} was refused: see the work list.`;
    }
  }

  // -- prescriptions ---------------------------------------------------------------------------

  /** The site's newest prescriptions, and the one numbered `rxNumber` when given, however old. */
  loadPrescriptions(rxNumber = "") {
    this.loading = (async () => {
      try {
        const query = rxNumber ? `?rx_number=${encodeURIComponent(rxNumber)}` : "";
        const body = await api("GET", `/api/prescriptions${query}`);
        this.prescriptions = body.prescriptions;
      } catch (err) {
        toast(err.message, "error");
      }
      this.renderPrescriptions();
    })();
    return this.loading;
  }

  matches(text) {
    const q = text.trim().toLowerCase();
    if (!q) return this.prescriptions;
    return this.prescriptions.filter((rx) =>
      String(rx.rx_number).toLowerCase().includes(q) || String(rx.patient_name || "").toLowerCase().includes(q));
  }

  renderPrescriptions() {
    const list = this.matches($("#rx-search").value).slice(0, 50);
    fill($("#rx-list"), list.map((rx) => h("li", {},
      h("button", { type: "button", class: "rx-item", dataset: { rx: String(rx.id) }, onclick: () => this.pick(rx) },
        h("span", { class: "rx-number" }, `Rx ${rx.rx_number}`),
        h("span", { class: "rx-patient" }, rx.patient_name || ""),
        h("span", { class: "rx-drug" }, `${product(rx)} · qty ${rx.quantity ?? "?"}`),
        PV1_WAITS[rx.verification_state] ? h("span", { class: "rx-waits" }, PV1_WAITS[rx.verification_state]) : null))));
    $("#rx-empty").hidden = list.length > 0;
  }

  /** What a USB scanner typed (the label's barcode) or the technician typed, then Enter. A label not
   * in the list (entered since, or older than the newest the list holds) makes it load again once,
   * asking for that Rx number too. */
  async pickByText(text, again = true) {
    const raw = text.trim();
    if (!raw) return;
    await this.loading;
    const digits = raw.replace(/[^0-9A-Za-z]/g, "").toLowerCase();
    let found = this.prescriptions.filter((rx) => String(rx.rx_number).toLowerCase() === raw.toLowerCase());
    if (found.length !== 1) {
      found = this.prescriptions.filter((rx) => {
        const n = String(rx.rx_number).replace(/[^0-9A-Za-z]/g, "").toLowerCase();
        return n && digits.includes(n);
      });
    }
    if (found.length !== 1) found = this.matches(raw);
    if (found.length === 1) this.pick(found[0]);
    else if (!found.length && again) {
      await this.loadPrescriptions(raw);
      this.pickByText(raw, false);
    } else toast(found.length ? `${found.length} prescriptions match: pick one.` : `No prescription matches ${raw}.`, "warn");
  }

  pick(rx, mode = { kind: "new" }, extraViews = []) {
    if (mode.kind === "new" && PV1_WAITS[rx.verification_state]) {
      // The server would refuse the fill: say so now, before any photo is taken.
      toast(`Rx ${rx.rx_number}: ${PV1_WAITS[rx.verification_state]}. It can be filled once the pharmacist has verified it.`, "warn");
      return;
    }
    this.rx = rx;
    // The views this prescription's dosage form needs under the site's rules (a liquid: the measured
    // volume and the labelled bottle), as the server lists them; else the site's.
    this.required = rx.required_media_kinds?.length ? rx.required_media_kinds : this.siteRequired;
    this.optional = this.siteOptional.filter((k) => !this.required.includes(k));
    this.mode = mode;
    this.captures.clear();
    this.retake.clear();
    $("#rx-search").value = "";
    $("#rx-picker").hidden = true;
    $("#rx-card").hidden = false;
    $("#capture-steps").hidden = false;
    $("#count").value = "";
    this.countSaid("");
    this.renderPriority();
    $("#missing-views").hidden = true;
    fill($("#rx-details"),
      h("dt", {}, "Rx"), h("dd", { id: "rx-number" }, rx.rx_number),
      h("dt", {}, "Patient"), h("dd", {}, rx.patient_name || ""),
      h("dt", {}, "Drug"), h("dd", {}, product(rx)),
      h("dt", {}, "Quantity"), h("dd", {}, String(rx.quantity ?? "")),
      h("dt", {}, "Directions"), h("dd", {}, rx.directions || ""));
    this.renderActions();
    const more = [...this.optional, ...extraViews];
    this.views = [...this.required, ...more.filter((k, i) => !this.required.includes(k) && more.indexOf(k) === i)];
    this.index = 0;
    this.renderMode();
    this.renderSteps();
    this.showView(0);
    this.startCamera();
  }

  renderActions() {
    const card = document.getElementById("rx-card");
    if (!card) return;
    card.querySelector(".rx-actions")?.remove();
    if (!this.actions.length || !this.rx) return;
    card.append(h("div", { class: "rx-actions" }, this.actions.map((a) =>
      h("button", { type: "button", class: "btn", id: a.id, onclick: () => a.fn(this.rx) }, a.label))));
  }

  renderMode() {
    const banner = $("#mode-banner");
    if (this.mode.kind === "resubmit") {
      banner.textContent = `Resubmitting rejected fill ${shortId(this.mode.fillId)}: retake the views marked, the others are kept.`;
    } else if (this.mode.kind === "fix") {
      banner.textContent = `Fixing fill ${shortId(this.mode.fillId)}, which the server refused: ${this.mode.why}`;
    }
    banner.hidden = this.mode.kind === "new";
    $("#save-btn").firstChild.textContent = this.mode.kind === "fix" ? "Save the fix " : "Save ";
  }

  /** The priority field: left as it is, none is sent and the server's default holds (for a
   * resubmission, the rejected fill's priority); a fix keeps the refused fill's, so it has none. */
  renderPriority() {
    const resubmit = this.mode.kind === "resubmit";
    const given = resubmit ? this.priorities : this.priorities.filter((p) => p !== this.defaultPriority);
    const unchosen = resubmit ? "As the rejected fill" : PRIORITY_WORDS[this.defaultPriority] || this.defaultPriority;
    fill($("#priority"),
      h("option", { value: "" }, unchosen),
      given.map((p) => h("option", { value: p }, PRIORITY_WORDS[p] || p)));
    $("#priority").value = "";
    $("#priority-field").hidden = this.mode.kind === "fix";
  }

  reset() {
    for (const c of this.captures.values()) if (!c.kept) api("DELETE", `/api/captures/${c.id}`).catch(() => {});
    this.rx = null;
    this.mode = { kind: "new" };
    this.captures.clear();
    this.retake.clear();
    this.stopCamera();
    $("#rx-picker").hidden = false;
    $("#rx-card").hidden = true;
    $("#capture-steps").hidden = true;
    $("#mode-banner").hidden = true;
    this.loadPrescriptions();
    $("#rx-search").focus();
  }

  // -- views -----------------------------------------------------------------------------------

  kindName(kind) {
    return this.names[kind] || kind;
  }

  stepState(kind) {
    const c = this.captures.get(kind);
    if (c) return c.ok ? (c.kept ? "kept" : "ok") : "problem";
    if (this.retake.has(kind)) return "retake";
    if (this.mode.kind === "fix" && this.mode.views.includes(kind)) return "kept";
    return this.required.includes(kind) ? "needed" : "optional";
  }

  renderSteps() {
    const words = { ok: "Done", kept: "Kept", problem: "Retake", retake: "Retake", needed: "Needed", optional: "Optional" };
    fill($("#view-steps"), this.views.map((kind, i) => {
      const st = this.stepState(kind);
      return h("li", { role: "presentation" },
        h("button", {
          type: "button", role: "tab", class: ["step", `step-${st}`], "aria-selected": String(i === this.index), "aria-controls": "stage",
          dataset: { kind, state: st }, onclick: () => this.showView(i),
        }, h("span", { class: "step-name" }, this.kindName(kind)), h("span", { class: "step-state" }, words[st])));
    }));
  }

  showView(i) {
    this.index = Math.max(0, Math.min(this.views.length - 1, i));
    const kind = this.views[this.index];
    const c = this.captures.get(kind);
    const isVideo = kind === "count_video";
    $("#stage").dataset.kind = kind;
    $("#preview").hidden = Boolean(c);
    $("#shot").hidden = !c || isVideo;
    $("#shot-video").hidden = !c || !isVideo;
    if (c && !isVideo) $("#shot").src = c.url;
    if (c && isVideo) $("#shot-video").src = c.url;
    $("#capture-btn").hidden = Boolean(c) || isVideo;
    $("#record-btn").hidden = Boolean(c) || !isVideo;
    $("#retake-btn").hidden = !c;
    $("#capture-btn").firstChild.textContent = `Take the ${this.kindName(kind)} `;
    this.renderResult(c);
    this.renderSteps();
  }

  renderResult(c) {
    const box = $("#check-result");
    if (!c) {
      box.hidden = true;
      box.removeAttribute("data-state");
      return;
    }
    box.hidden = false;
    box.dataset.state = c.checking ? "checking" : c.ok ? "ok" : "problem";
    box.dataset.capture = c.id || "";
    if (c.checking) {
      fill(box, h("strong", {}, "Checking…"));
      return;
    }
    const next = this.nextMissing();
    fill(box,
      c.ok ? h("strong", {}, c.kept ? "Kept from the rejected fill" : "Good") : h("strong", {}, "Retake this photo"),
      h("ul", { class: "check-lines" },
        c.problems.map((p) => h("li", { class: "check-problem", dataset: { code: p.code } }, p.message)),
        c.ok ? c.notes.map((n) => h("li", { class: "check-note" }, n)) : null),
      c.ok && next !== null ? h("button", { type: "button", class: "btn small", onclick: () => this.showView(next) }, `Next: ${this.kindName(this.views[next])} →`) : null,
      !c.ok ? h("p", { class: "check-hint" }, "Press R or tap Retake.") : null);
  }

  nextMissing() {
    for (let step = 1; step <= this.views.length; step++) {
      const i = (this.index + step) % this.views.length;
      const kind = this.views[i];
      if (!this.captures.has(kind) && (this.required.includes(kind) || this.retake.has(kind)) && this.stepState(kind) !== "kept") return i;
    }
    return null;
  }

  // -- camera ----------------------------------------------------------------------------------

  async startCamera() {
    if (!navigator.mediaDevices?.getUserMedia) {
      $("#stage-empty").hidden = false;
      return;
    }
    this.stopCamera();
    // A stop (the screen left) or another start while the camera opens makes this one stale.
    const turn = this.cameraTurn;
    const chosen = localStorage.getItem(CAMERA_KEY) || "";
    const video = { width: { ideal: 2048 }, height: { ideal: 1536 } };
    if (chosen) video.deviceId = { exact: chosen };
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (err) {
      if (turn !== this.cameraTurn) return;
      if (chosen) {
        localStorage.removeItem(CAMERA_KEY);
        return this.startCamera();
      }
      $("#stage-empty").hidden = false;
      $("#stage-empty").textContent = `No camera (${err.name}): choose a file or drop it here.`;
      return;
    }
    if (turn !== this.cameraTurn) {
      for (const t of stream.getTracks()) t.stop();
      return;
    }
    this.stream = stream;
    $("#stage-empty").hidden = true;
    $("#preview").srcObject = stream;
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    if (turn !== this.cameraTurn) return;
    const current = stream.getVideoTracks()[0]?.getSettings().deviceId || "";
    fill($("#camera"), devices.map((d, i) => h("option", { value: d.deviceId, selected: d.deviceId === current }, d.label || `Camera ${i + 1}`)));
    $("#camera").hidden = devices.length < 2;
  }

  stopCamera() {
    this.cameraTurn += 1;
    if (this.recorder && this.recorder.state !== "inactive") this.recorder.stop();
    for (const t of this.stream?.getTracks() || []) t.stop();
    this.stream = null;
    $("#preview").srcObject = null;
  }

  async takePhoto() {
    const video = $("#preview");
    if (!this.stream || !video.videoWidth) {
      toast("The camera is not ready: choose a file instead, or wait a moment.", "warn");
      return;
    }
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
    await this.send(blob);
  }

  toggleRecording() {
    if (this.recorder && this.recorder.state === "recording") {
      this.recorder.stop();
      return;
    }
    if (!this.stream) {
      toast("The camera is not ready: choose a video file instead.", "warn");
      return;
    }
    const type = recorderType();
    const chunks = [];
    this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : {});
    this.recorder.addEventListener("dataavailable", (e) => e.data.size && chunks.push(e.data));
    this.recorder.addEventListener("stop", () => {
      $("#record-btn").firstChild.textContent = "Record ";
      $("#record-btn").classList.remove("recording");
      const blob = new Blob(chunks, { type: (this.recorder.mimeType || type || "video/webm").split(";")[0] });
      if (blob.size) this.send(blob);
    });
    this.recorder.start(500);
    $("#record-btn").firstChild.textContent = "Stop recording ";
    $("#record-btn").classList.add("recording");
  }

  /** A chosen or dropped file goes to the view shown, unless that view already holds a photo that
   * passed its checks (or is being checked): then to the next view still missing. A good photo is
   * replaced only after Retake, so a file picked without pressing Next never undoes one. */
  sendFile(file) {
    const c = this.captures.get(this.views[this.index]);
    if (c && (c.ok || c.checking)) {
      const next = this.nextMissing();
      if (next === null) {
        toast(`The ${this.kindName(this.views[this.index])} is already taken and no view is missing: press Retake to replace it.`, "warn");
        return;
      }
      this.showView(next);
    }
    return this.send(file);
  }

  /** Sends one photo or video for the current view; the station checks it and answers. */
  async send(blob) {
    const kind = this.views[this.index];
    const type = blob.type || "";
    if (kind === "count_video" ? !VIDEO_TYPES.includes(type) : !PHOTO_TYPES.includes(type)) {
      toast(kind === "count_video" ? "The count video must be an MP4 or WebM video." : "Choose a photo (JPEG, PNG or WebP).", "error");
      return;
    }
    const url = URL.createObjectURL(blob);
    const pending = { id: "", ok: false, checking: true, problems: [], notes: [], url };
    this.captures.set(kind, pending);
    this.showView(this.index);
    try {
      const c = await upload(`/api/captures?kind=${encodeURIComponent(kind)}&prescription_id=${this.rx.id}`, blob);
      this.captures.set(kind, { ...c, url });
      this.retake.delete(kind);
    } catch (err) {
      this.captures.delete(kind);
      URL.revokeObjectURL(url);
      toast(err.message, "error");
    }
    if (this.views[this.index] === kind) this.showView(this.index);
    else this.renderSteps();
  }

  retakeCurrent() {
    const kind = this.views[this.index];
    const c = this.captures.get(kind);
    if (!c) return;
    this.captures.delete(kind);
    if (c.id) api("DELETE", `/api/captures/${c.id}`).catch(() => {});
    if (c.url?.startsWith("blob:")) URL.revokeObjectURL(c.url);
    this.showView(this.index);
  }

  // -- resubmit and fix ------------------------------------------------------------------------

  /** A rejected fill, resubmitted: every photo kept unless its view is to be retaken. */
  async resubmit(fillId) {
    const body = await api("POST", `/api/fills/${fillId}/resubmission`);
    await this.loadPrescriptions();
    const rx = this.prescriptions.find((r) => r.id === body.prescription_id);
    if (!rx) throw new StationError(0, "no_rx", "The prescription of this fill is not known here.");
    this.pick(rx, { kind: "resubmit", fillId: body.fill_id });
    for (const c of body.captures) {
      if (body.retake.includes(c.kind)) {
        api("DELETE", `/api/captures/${c.id}`).catch(() => {});
        continue;
      }
      this.captures.set(c.kind, { ...c, kept: true, url: withToken(`/api/captures/${c.id}`) });
    }
    for (const k of body.retake) this.retake.add(k);
    if (body.counted_quantity != null) $("#count").value = body.counted_quantity;
    const first = this.views.findIndex((k) => this.retake.has(k));
    this.showView(first >= 0 ? first : 0);
  }

  /** A fill the server refused: retake what it names, keep the rest of the outbox's entry. */
  async fix(fillId, detail) {
    await this.loadPrescriptions();
    const rx = this.prescriptions.find((r) => r.id === detail.rx?.id) || detail.rx;
    if (!rx) throw new StationError(0, "no_rx", "The prescription of this fill is not known here.");
    const named = [...(detail.missing || []), ...(detail.refused_view ? [detail.refused_view] : [])];
    this.pick(rx, { kind: "fix", fillId, why: detail.refused, views: detail.views.filter((k) => !named.includes(k)) }, named);
    for (const k of named) this.retake.add(k);
    if (detail.counted_quantity != null) $("#count").value = detail.counted_quantity;
    const first = this.views.findIndex((k) => this.retake.has(k));
    this.showView(first >= 0 ? first : 0);
  }

  // -- save ------------------------------------------------------------------------------------

  missingViews() {
    return this.views.filter((k) => {
      const st = this.stepState(k);
      return (this.required.includes(k) || this.retake.has(k)) && !["ok", "kept"].includes(st);
    });
  }

  /** What is said by the count field: a refusal ("problem"), a question ("confirm"), or nothing. */
  countSaid(message, as = "problem") {
    const field = $("#count");
    $("#count-problem").textContent = as === "problem" ? message : "";
    $("#count-problem").hidden = !message || as !== "problem";
    $("#count-confirm-text").textContent = as === "confirm" ? message : "";
    $("#count-confirm").hidden = !message || as !== "confirm";
    // While the question stands, its two buttons are the only way on: Save would only ask it again.
    $("#save-btn").hidden = Boolean(message) && as === "confirm";
    if (message && as === "problem") field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
  }

  async save({ countConfirmed = false } = {}) {
    if (!this.rx || this.busy) return;
    const status = $("#save-status");
    const missing = this.missingViews();
    const problem = $("#missing-views");
    if ([...this.captures.values()].some((c) => c.checking)) {
      status.textContent = "Wait: a photo is still being checked.";
      return;
    }
    // The field is text, not a number input: a number input drops what it cannot read (3O becomes 3,
    // abc nothing) and nobody hears of it. What was typed goes to the station, which reads it with the
    // rule of `tp-site submit --count` and asks when it differs from the prescription.
    const count = $("#count").value.trim();
    this.countSaid(count ? "" : "Not saved: type the counted quantity first.");
    if (missing.length) {
      problem.textContent = `Not saved: take the ${missing.map((k) => this.kindName(k)).join(" and the ")} first.`;
      problem.hidden = false;
      this.showView(this.views.indexOf(missing[0]));
      return;
    }
    problem.hidden = true;
    if (!count) {
      $("#count").focus();
      return;
    }
    const ids = [...this.captures.values()].map((c) => c.id);
    this.busy = true;
    $("#save-btn").disabled = true;
    status.textContent = "Saving…";
    try {
      let result;
      if (this.mode.kind === "fix") {
        result = await api("POST", `/api/fills/${this.mode.fillId}/fix`, {
          captures: ids, counted_quantity: count, count_confirmed: countConfirmed,
        });
      } else {
        result = await api("POST", "/api/fills", {
          prescription_id: this.rx.id, captures: ids, counted_quantity: count, count_confirmed: countConfirmed,
          previous_fill_id: this.mode.kind === "resubmit" ? this.mode.fillId : null,
          priority: $("#priority").value || null,
        });
      }
      if (result.question === "count_differs") {
        status.textContent = "";
        this.countSaid(result.message, "confirm");
        $("#count-confirm-change").focus();
        return;
      }
      this.lastSaved = result.fill_id;
      const sid = shortId(result.fill_id);
      this.captures.clear();
      this.reset();
      status.textContent = `Saved as fill ${sid}: it is kept on this computer and sent to the pharmacist now.`;
      toast(`Saved fill ${sid}.`, "ok");
    } catch (err) {
      status.textContent = "";
      if (err.code === "missing_views" && err.detail.missing) {
        problem.textContent = `Not saved: ${err.message}`;
        problem.hidden = false;
      } else if (err.code === "no_count" || err.code === "bad_count") {
        this.countSaid(`Not saved: ${err.message}`);
        $("#count").focus();
        $("#count").select();
      } else {
        toast(`Not saved: ${err.message}`, "error");
        status.textContent = `Not saved: ${err.message}`;
      }
    } finally {
      this.busy = false;
      $("#save-btn").disabled = false;
    }
  }

  // -- keys ------------------------------------------------------------------------------------

  key(e, typing) {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "s") {
      e.preventDefault();
      this.save();
      return;
    }
    if (!this.rx && !typing && e.key.length === 1 && !e.ctrlKey && !e.metaKey && !e.altKey) {
      // A USB scanner types the label's barcode wherever the focus is: it goes to the search.
      $("#rx-search").focus();
      return;
    }
    if (typing || !this.rx || e.ctrlKey || e.metaKey || e.altKey) return;
    const kind = this.views[this.index];
    const has = this.captures.has(kind);
    if ((e.key === " " || e.key === "Enter") && !has && kind !== "count_video" && e.target === document.body) {
      e.preventDefault();
      this.takePhoto();
    } else if (e.key === "r" || e.key === "R") {
      this.retakeCurrent();
    } else if ((e.key === "v" || e.key === "V") && kind === "count_video") {
      this.toggleRecording();
    } else if (e.key === "ArrowRight" || e.key === "n") {
      this.showView(this.index + 1);
    } else if (e.key === "ArrowLeft" || e.key === "p") {
      this.showView(this.index - 1);
    }
  }
}
