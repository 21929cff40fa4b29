// Video consultations: incoming requests, accept, the call (WebRTC, the site offers), controls, quality.
// Signalling goes over the console's live websocket; media flows peer to peer with the site client.
//
// When the media path drops after the call connected, the call is re-established inside the same
// consultation: the site is the only side that offers (so two offers never cross), on a fresh peer
// connection, since aiortc cannot restart ICE. This console asks it to (`restart`) and answers each
// new offer on a fresh peer connection of its own; a `generation` on every description tells a new
// offer from an old one. Without media again within TIMEOUTS.reconnect, the call ends ("reconnect_failed").

import { api, get, getAll, post, ApiError } from "./api.js";
import { h, fill, toast } from "./dom.js";

// settle: how long a "disconnected" path may heal by itself before the site is asked for a new offer;
// stall: nothing at all received for this long counts as a dropped path (Chromium reports a silent path
// "disconnected" only after about 8 s; the site's RTCP alone arrives every second or so); reask: how long
// the site may take to offer anew before it is asked again (a request can go unheeded).
const TIMEOUTS = { offer: 15000, invited: 60000, gathering: 8000, connect: 15000, firstFrame: 10000, settle: 1500, stall: 3000, reask: 3000, reconnect: 15000 };

// Why a pharmacist turns a request down; the site that asked reads the words (the note).
const DECLINE_REASONS = [
  ["busy", "Busy with another patient; please ask again in a few minutes."],
  ["after_decision", "I will counsel once the fill is verified; please ask again then."],
  ["other_pharmacist", "Please ask another pharmacist; I cannot take this one."],
  ["other", "Other"],
];

const ENDED_BECAUSE = {
  hangup: "The site hung up.",
  reconnect_failed: "The connection was lost and could not be re-established; the call was ended.",
};

function endedText(reason) {
  return ENDED_BECAUSE[reason] || `Call ended (${reason || "ended"}).`;
}

function fmtClock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

export class Consults {
  constructor({ live, me, details }) {
    this.live = live;
    this.me = me;
    this.details = details; // fill details, to name a request's prescription by its Rx number
    this.requests = new Map(); // consultation id -> banner element
    this.call = null;
    this.banner = h("div", { id: "consult-requests", class: "consult-requests", "aria-live": "polite" });
    this.buildPanel();
    document.getElementById("app").append(this.banner, this.panel);
    live.addEventListener("hello", (e) => { if (!e.detail.resumed) this.loadOpen(); });
    live.addEventListener("event", (e) => this.onEvent(e.detail));
    live.addEventListener("message", (e) => this.onMessage(e.detail));
  }

  buildPanel() {
    this.remoteVideo = h("video", { id: "consult-remote", class: "consult-video", autoplay: true, playsinline: true });
    this.localVideo = h("video", { id: "consult-local", class: "consult-video consult-self", autoplay: true, playsinline: true });
    this.localVideo.muted = true;
    this.stateText = h("span", { id: "consult-state", class: "consult-state" }, "");
    this.clock = h("span", { id: "consult-clock", class: "consult-clock" }, "00:00");
    this.quality = h("span", { id: "consult-quality", class: "consult-quality" }, "");
    this.muteBtn = h("button", { type: "button", id: "consult-mute", class: "btn small" }, "Mute");
    this.cameraBtn = h("button", { type: "button", id: "consult-camera", class: "btn small" }, "Camera off");
    this.hangupBtn = h("button", { type: "button", id: "consult-hangup", class: "btn danger small" }, "Hang up");
    // Where a state needs every party's consent to record, the pharmacist records their own here.
    this.consentBtn = h("button", { type: "button", id: "consult-consent", class: "btn small", hidden: true }, "Consent to record");
    this.consentBtn.addEventListener("click", () => this.consent());
    this.muteBtn.addEventListener("click", () => this.toggle("audio", this.muteBtn, "Mute", "Unmute"));
    this.cameraBtn.addEventListener("click", () => this.toggle("video", this.cameraBtn, "Camera off", "Camera on"));
    this.hangupBtn.addEventListener("click", () => this.hangUp());
    // After a counselling call: the pharmacist's note, which becomes the fill's counselling record.
    this.noteText = h("textarea", { id: "consult-note", rows: "3", maxlength: "2000", "aria-label": "Counselling note" });
    this.noteForm = h("form", { id: "consult-note-form", class: "consult-note-form", hidden: true },
      h("label", { for: "consult-note" }, "Counselling note: what you covered with the patient"),
      this.noteText,
      h("div", { class: "consult-controls" },
        h("button", { type: "submit", id: "consult-note-save", class: "btn small primary" }, "Save note"),
        h("button", { type: "button", id: "consult-note-skip", class: "btn small", onclick: () => this.closeNote() }, "No note")));
    this.noteForm.addEventListener("submit", (e) => { e.preventDefault(); this.saveNote(); });
    this.panel = h("section", { id: "consult-panel", class: "consult-panel", hidden: true, "aria-label": "Video consultation", dataset: { state: "idle" } },
      h("div", { class: "consult-head" }, h("strong", { id: "consult-title" }, "Consultation"), this.stateText, this.clock),
      h("div", { class: "consult-tiles" }, this.remoteVideo, this.localVideo),
      h("div", { class: "consult-controls" }, this.muteBtn, this.cameraBtn, this.consentBtn, this.hangupBtn),
      this.quality, this.noteForm);
  }

  /** The note of the counselling call that just ended: the server keeps it with the call and the fill's
   * counselling record. */
  async saveNote() {
    const id = this.noteForm.dataset.call;
    const note = this.noteText.value.trim();
    if (!id) return;
    if (!note) { this.noteText.focus(); return; }
    try {
      await api("POST", `/api/v1/consultations/${id}/end`, { reason: "hangup", note });
    } catch (err) {
      toast(`The note was not saved: ${err.message}`, "error");
      return;
    }
    toast("Counselling note saved with the record.", "ok");
    this.closeNote();
  }

  closeNote() {
    this.noteForm.hidden = true;
    delete this.noteForm.dataset.call;
    this.noteText.value = "";
    if (!this.call) this.panel.hidden = true;
  }

  // -- requests ----------------------------------------------------------------------------------

  async loadOpen() {
    try {
      const body = await getAll("/api/v1/consultations", "consultations");
      for (const c of body.consultations) if (c.state === "requested") this.showRequest(c);
    } catch (err) {
      toast(`Could not load consultation requests: ${err.message}`, "error");
    }
  }

  async onEvent(ev) {
    if (!ev.type || !ev.type.startsWith("consultation.")) return;
    const id = ev.consultation_id;
    if (ev.type === "consultation.requested") {
      try {
        this.showRequest(await get(`/api/v1/consultations/${id}`));
      } catch { /* gone already */ }
    } else {
      this.dropRequest(id);
      if (ev.type === "consultation.ended" && this.call && this.call.id === id) this.finish(endedText(ev.end_reason));
    }
  }

  showRequest(c) {
    if (this.requests.has(c.id) || (this.call && this.call.id === c.id)) return;
    const what = c.kind === "live_look" ? "a live look at the counting tray" : "patient counselling";
    const accept = h("button", { type: "button", class: "btn primary small consult-accept", dataset: { id: String(c.id) } }, "Accept");
    const decline = h("button", { type: "button", class: "btn small consult-decline" }, "Decline…");
    const rx = h("span", { class: "consult-rx" });
    const reason = h("select", { class: "consult-decline-reason", "aria-label": "Why you decline" },
      DECLINE_REASONS.map(([code, text]) => h("option", { value: code }, text)));
    const note = h("input", { type: "text", class: "consult-decline-note", maxlength: "500", placeholder: "Say why, for the site", "aria-label": "Note for the site", hidden: true });
    const send = h("button", { type: "button", class: "btn small danger consult-decline-send" }, "Decline");
    const form = h("div", { class: "consult-decline-form", hidden: true }, reason, note, send);
    const el = h("div", { class: "consult-request", role: "status", dataset: { id: String(c.id) } },
      h("div", { class: "consult-request-row" },
        h("span", {}, `${c.site ? `${c.site.code} ${c.site.name}` : "A site"} asks for ${what}`, rx), accept, decline),
      form);
    accept.addEventListener("click", () => this.accept(c));
    decline.addEventListener("click", () => {
      form.hidden = !form.hidden;
      if (!form.hidden) reason.focus();
    });
    reason.addEventListener("change", () => {
      note.hidden = reason.value !== "other";
      if (!note.hidden) note.focus();
    });
    send.addEventListener("click", () => {
      const text = reason.value === "other" ? note.value.trim() : DECLINE_REASONS.find(([code]) => code === reason.value)[1];
      if (!text) {
        note.focus();
        toast("Say why you decline: the site reads it.", "warn");
        return;
      }
      this.decline(c, text);
    });
    this.requests.set(c.id, el);
    this.banner.append(el);
    this.nameRx(c, rx);
  }

  /** Turns the request down with a reason the site reads; another pharmacist can no longer take it. */
  async decline(c, note) {
    try {
      await api("POST", `/api/v1/consultations/${c.id}/end`, { reason: "declined", note });
    } catch (err) {
      toast(err instanceof ApiError && err.status === 409 ? "This request was answered or ended already." : `Could not decline: ${err.message}`, "warn");
      this.dropRequest(c.id);
      return;
    }
    this.dropRequest(c.id);
    toast("Request declined; the site was told why.", "info");
  }

  /** The request names the prescription by its Rx number (never the internal id), once it is known. */
  async nameRx(c, slot) {
    const known = c.rx_number || c.prescription?.rx_number;
    if (known) {
      fill(slot, ` on Rx ${known}`);
      return;
    }
    if (!c.fill_id || !this.details) return;
    try {
      const d = await this.details.fetch(c.fill_id);
      if (d.prescription?.rx_number && slot.isConnected) fill(slot, ` on Rx ${d.prescription.rx_number}`);
    } catch {
      // Not visible to this pharmacist: the site's name has to do.
    }
  }

  dropRequest(id) {
    const el = this.requests.get(id);
    if (el) el.remove();
    this.requests.delete(id);
  }

  async accept(c) {
    if (this.call) { toast("Finish the current call first.", "warn"); return; }
    // Wall-clock milestones of the last call (ms since the epoch), read by bench/consult_setup.py.
    this.mark("acceptedAt");
    delete this.panel.dataset.connectedAt;
    delete this.panel.dataset.firstFrameAt;
    let accepted;
    try {
      accepted = await post(`/api/v1/consultations/${c.id}/accept`);
    } catch (err) {
      this.dropRequest(c.id);
      toast(err instanceof ApiError && err.status === 409 ? "Another pharmacist answered this one." : err.message, "warn");
      return;
    }
    this.dropRequest(c.id);
    this.start(accepted, c.site);
  }

  // The pharmacist asks the site of a fill (counselling on it, or a live look); the site's kiosk answers.
  async invite(fillId, kind) {
    if (this.call) { toast("Finish the current call first.", "warn"); return; }
    this.mark("acceptedAt");
    delete this.panel.dataset.connectedAt;
    delete this.panel.dataset.firstFrameAt;
    let c;
    try {
      c = await post("/api/v1/consultations/invite", { fill_id: fillId, kind });
    } catch (err) {
      toast(`Could not ask the site: ${err.message}`, "error");
      return;
    }
    this.start(c, c.site, { invited: true });
  }

  // -- the call ----------------------------------------------------------------------------------

  async start(c, site, { invited = false } = {}) {
    const look = c.kind === "live_look";
    const call = {
      id: c.id, kind: c.kind, pc: null, stream: null, iceServers: [], timers: [], stats: null, connectedAt: null,
      framesIn: 0, framesOut: 0, bytesOut: 0, base: { framesIn: 0, framesOut: 0, bytesOut: 0 }, ended: false, prev: null,
      generation: -1, reconnecting: null, reconnections: 0,
    };
    this.call = call;
    this.noteForm.hidden = true;
    this.panel.hidden = false;
    const where = site ? site.code : `site ${c.site_id}`;
    fill(document.getElementById("consult-title"), look ? `Live look at the counting tray, ${where}` : `Consultation with ${where}`);
    this.panel.dataset.kind = c.kind;
    for (const k of ["framesIn", "framesOut", "bytesOut", "quality", "reconnections"]) delete this.panel.dataset[k];
    this.panel.dataset.fill = c.fill_id || "";
    this.localVideo.hidden = this.muteBtn.hidden = this.cameraBtn.hidden = look;
    // Offered when the patient asked for a recording; stamped once.
    this.consentBtn.hidden = look || !c.recording_consent;
    this.consentBtn.disabled = Boolean(c.pharmacist_consent_at);
    this.consentBtn.textContent = c.pharmacist_consent_at ? "Consent given" : "Consent to record";
    this.setState("starting", look ? "Asking the site…" : "Starting camera…");
    try {
      const ice = await get("/api/v1/ice-servers");
      // A live look is one way: no camera or microphone here, the answer is receive-only.
      if (!look) call.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 480 } });
      if (call.ended) return;
      if (call.stream) this.localVideo.srcObject = call.stream;
      call.iceServers = ice.ice_servers;
      call.pc = this.newPeer(call);
      this.setState("waiting", invited ? "Waiting for the site to answer…" : "Waiting for the site's offer…");
      this.deadline("offer", invited ? TIMEOUTS.invited : TIMEOUTS.offer, () => call.offered, invited ? "The site did not answer" : "The site sent no offer");
      this.live.send({ type: "consult.join", consultation_id: c.id });
    } catch (err) {
      this.hangUp("failed", `Could not start the call: ${err.message}`);
    }
  }

  newPeer(call) {
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    if (call.stream) for (const track of call.stream.getTracks()) pc.addTrack(track, call.stream);
    pc.addEventListener("track", (e) => {
      if (e.track.kind === "video") this.remoteVideo.srcObject = e.streams[0] || new MediaStream([e.track]);
    });
    // A replaced connection closing after a reconnection is no news.
    pc.addEventListener("connectionstatechange", () => { if (call.pc === pc) this.onConnectionState(); });
    return pc;
  }

  deadline(name, ms, done, message) {
    const call = this.call;
    call.timers.push(setTimeout(() => {
      if (this.call === call && !call.ended && !done()) this.hangUp("timeout", `${message} within ${ms / 1000} s; the call was ended.`);
    }, ms));
  }

  async onMessage(msg) {
    const call = this.call;
    if (!msg.type || !msg.type.startsWith("consult.") || !call || msg.consultation_id !== call.id) return;
    if (msg.type === "consult.ended") {
      this.finish(endedText(msg.reason));
    } else if (msg.type === "consult.error") {
      this.hangUp("failed", `The server refused: ${msg.error}`);
    } else if (msg.type === "consult.signal" && msg.description && msg.description.type === "offer") {
      const generation = msg.generation || 0;
      if (generation <= call.generation) return; // an offer answered already
      call.offered = true;
      try {
        if (generation > 0) this.replacePeer(call);
        call.generation = generation;
        await this.answer(call, msg.description, generation);
      } catch (err) {
        this.hangUp("failed", `Could not answer the site's offer: ${err.message}`);
      }
    } else if (msg.type === "consult.signal" && msg.candidate && call.pc) {
      await call.pc.addIceCandidate(msg.candidate).catch(() => {});
    }
  }

  // The site re-offers on a fresh connection: answer on a fresh one too, keeping camera and counters.
  replacePeer(call) {
    if (!call.reconnecting) this.reconnect(call, { ask: false });
    const old = call.pc;
    call.base = { framesIn: call.framesIn, framesOut: call.framesOut, bytesOut: call.bytesOut };
    call.prev = null;
    call.received = null;
    call.pc = this.newPeer(call);
    if (old) old.close();
  }

  async answer(call, offer, generation) {
    const pc = call.pc;
    await pc.setRemoteDescription(offer);
    await pc.setLocalDescription(await pc.createAnswer());
    // One answer with every candidate: aiortc does not take trickled candidates well, and loopback is fast.
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      const timer = setTimeout(resolve, TIMEOUTS.gathering);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
    if (call.ended) return;
    const local = pc.localDescription;
    this.live.send({ type: "consult.signal", consultation_id: call.id, generation, description: { type: local.type, sdp: local.sdp } });
    if (generation > 0) return; // reconnecting: the reconnection window applies
    this.setState("connecting", "Connecting…");
    this.deadline("connect", TIMEOUTS.connect, () => call.connectedAt !== null, "The media connection was not made");
  }

  onConnectionState() {
    const call = this.call;
    if (!call || !call.pc || call.ended) return;
    const state = call.pc.connectionState;
    if (state === "connected") {
      if (call.connectedAt === null) {
        call.connectedAt = performance.now();
        this.mark("connectedAt");
        this.watchFirstFrame(call);
        this.deadline("first frame", TIMEOUTS.firstFrame, () => call.framesIn > 0, "No video arrived");
        call.stats = setInterval(() => this.sample(call), 1000);
        post(`/api/v1/consultations/${call.id}/connected`).catch(() => {});
      }
      const r = call.reconnecting;
      if (r) {
        call.reconnecting = null;
        if (call.generation > r.generation) {
          call.reconnections += 1;
          this.panel.dataset.reconnections = String(call.reconnections);
        }
        toast(call.generation > r.generation ? "Reconnected." : "Connection restored.", "ok", { timeout: 3000 });
      }
      this.setState("connected", "Connected");
    } else if (call.connectedAt === null) {
      if (state === "failed") this.hangUp("dropped", "The connection failed.");
    } else if (state === "disconnected" || state === "failed" || state === "closed") {
      this.reconnect(call, { ask: true, now: state !== "disconnected" });
    }
  }

  // The media path dropped after the call connected: show it, ask the site for a new offer (at once when
  // the connection failed; after TIMEOUTS.settle when it is only disconnected, as a short blip may heal),
  // and end the call if media does not flow again within TIMEOUTS.reconnect.
  reconnect(call, { ask, now = true }) {
    let r = call.reconnecting;
    if (!r) {
      r = { asked: -1, generation: call.generation };
      call.reconnecting = r;
      this.setState("reconnecting", "Reconnecting…");
      call.timers.push(setTimeout(() => {
        if (this.call === call && call.reconnecting === r) {
          this.hangUp("reconnect_failed", `The connection was lost and could not be re-established within ${TIMEOUTS.reconnect / 1000} s; the call was ended.`);
        }
      }, TIMEOUTS.reconnect));
    }
    if (!ask) return;
    // The request names the connection that dropped: once the site has offered a newer one (it saw the
    // drop too), asking would make it drop the new one and offer again.
    const dropped = call.generation;
    // Until the site's new offer comes: a request can go unheeded (the server answers a message whose
    // sender's rights it could not re-read with "try again" and does not pass it on), and the site takes
    // a request naming a connection it has replaced as done.
    const send = () => {
      if (this.call !== call || call.ended || call.reconnecting !== r || call.generation !== dropped) return;
      this.live.send({ type: "consult.signal", consultation_id: call.id, restart: true, generation: dropped });
      call.timers.push(setTimeout(send, TIMEOUTS.reask));
    };
    const request = () => {
      if (r.asked === dropped) return;
      r.asked = dropped;
      send();
    };
    if (now) request(); else call.timers.push(setTimeout(request, TIMEOUTS.settle));
  }

  mark(name) {
    this.panel.dataset[name] = String(Math.round(performance.timeOrigin + performance.now()));
  }

  // Polls the receiver's stats briefly after connecting, so the first decoded frame is seen at once.
  watchFirstFrame(call) {
    const poll = setInterval(async () => {
      if (call.ended || !call.pc) { clearInterval(poll); return; }
      const report = await call.pc.getStats();
      report.forEach((s) => {
        if (s.type === "inbound-rtp" && s.kind === "video" && s.framesDecoded > 0 && call.framesIn === 0) {
          call.framesIn = s.framesDecoded;
          this.mark("firstFrameAt");
        }
      });
      if (call.framesIn > 0) clearInterval(poll);
    }, 10);
    call.timers.push(setTimeout(() => clearInterval(poll), TIMEOUTS.firstFrame));
  }

  async sample(call) {
    if (call.ended || !call.pc) return;
    const pc = call.pc;
    const report = await pc.getStats();
    let bytesIn = 0, bytesOut = 0, lost = 0, received = 0, rtt = null, framesIn = 0, framesOut = 0, transportIn = 0;
    if (call.ended || pc !== call.pc) return;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        framesIn = s.framesDecoded || 0;
        bytesIn += s.bytesReceived || 0;
        lost += s.packetsLost || 0;
        received += s.packetsReceived || 0;
      } else if (s.type === "inbound-rtp") {
        bytesIn += s.bytesReceived || 0;
      } else if (s.type === "outbound-rtp") {
        bytesOut += s.bytesSent || 0;
        if (s.kind === "video") framesOut = s.framesSent || s.framesEncoded || 0;
      } else if (s.type === "candidate-pair" && s.nominated && s.currentRoundTripTime !== undefined) {
        rtt = s.currentRoundTripTime;
      } else if (s.type === "transport") {
        transportIn += s.bytesReceived || 0;
      }
    });
    this.watchStall(call, transportIn);
    // Counted across reconnections: each new peer connection starts its counters at zero.
    call.framesIn = call.base.framesIn + framesIn;
    call.framesOut = call.base.framesOut + framesOut;
    call.bytesOut = call.base.bytesOut + bytesOut;
    const now = performance.now();
    const kbps = call.prev ? ((bytesIn - call.prev.bytes) * 8) / (now - call.prev.at) : 0;
    call.prev = { bytes: bytesIn, at: now };
    const loss = received + lost > 0 ? (100 * lost) / (received + lost) : 0;
    const quality = loss > 5 || (rtt !== null && rtt > 0.4) ? "poor" : loss > 1 || (rtt !== null && rtt > 0.2) ? "fair" : "good";
    this.panel.dataset.framesIn = String(call.framesIn);
    this.panel.dataset.framesOut = String(call.framesOut);
    this.panel.dataset.bytesOut = String(call.bytesOut);
    this.panel.dataset.quality = quality;
    fill(this.quality, `Quality ${quality}: receiving ${Math.round(kbps)} kbps · loss ${loss.toFixed(1)} % · round trip ${rtt === null ? "–" : `${Math.round(rtt * 1000)} ms`}`);
    fill(this.clock, fmtClock((now - call.connectedAt) / 1000));
  }

  // A path gone silent is a dropped path, whatever the connection state says yet.
  watchStall(call, bytes) {
    const now = performance.now();
    if (!call.received || bytes > call.received.bytes) {
      call.received = { bytes, at: now };
    } else if (!call.reconnecting && call.pc.connectionState === "connected" && now - call.received.at > TIMEOUTS.stall) {
      this.reconnect(call, { ask: true });
    }
  }

  toggle(kind, button, onText, offText) {
    const call = this.call;
    if (!call || !call.stream) return;
    for (const track of call.stream.getTracks()) if (track.kind === kind) track.enabled = !track.enabled;
    const enabled = call.stream.getTracks().some((t) => t.kind === kind && t.enabled);
    button.textContent = enabled ? onText : offText;
    button.setAttribute("aria-pressed", String(!enabled));
  }

  async consent() {
    const call = this.call;
    if (!call || call.ended) return;
    try {
      await post(`/api/v1/consultations/${call.id}/consent`);
    } catch (err) {
      toast(`Your consent was not recorded: ${err.message}`, "error");
      return;
    }
    this.consentBtn.disabled = true;
    this.consentBtn.textContent = "Consent given";
    toast("Your consent to recording is on the record.", "ok");
  }

  async hangUp(reason = "hangup", message = "You ended the call.") {
    const call = this.call;
    if (!call || call.ended) return;
    const id = call.id;
    this.finish(message, reason === "hangup" ? "ok" : "error");
    try {
      await api("POST", `/api/v1/consultations/${id}/end`, { reason });
    } catch (err) {
      toast(`The server did not hear the hang-up: ${err.message}`, "warn");
    }
  }

  finish(message, kind = "info") {
    const call = this.call;
    if (!call || call.ended) return;
    call.ended = true;
    for (const t of call.timers) clearTimeout(t);
    clearInterval(call.stats);
    if (call.pc) call.pc.close();
    if (call.stream) for (const t of call.stream.getTracks()) t.stop();
    this.remoteVideo.srcObject = null;
    this.localVideo.srcObject = null;
    this.setState("ended", message);
    this.panel.dataset.lastCall = String(call.id);
    this.call = null;
    toast(message, kind, { timeout: 5000 });
    if (call.kind === "counsel" && call.connectedAt) {
      // Counselled: the panel stays for the note.
      this.noteForm.dataset.call = String(call.id);
      this.noteForm.hidden = false;
      this.noteText.focus();
      return;
    }
    setTimeout(() => { if (!this.call && this.noteForm.hidden) this.panel.hidden = true; }, 4000);
  }

  setState(state, text) {
    this.panel.dataset.state = state;
    fill(this.stateText, text);
  }
}
