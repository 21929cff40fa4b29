// Video calls from the station's page: the technician asks a pharmacist for counselling on a
// prescription, or answers a pharmacist's invitation; a pharmacist's live look at the counting tray is
// answered by this page's camera without a click.
//
// The station places the calls (it holds the device token) and relays the signalling, the same
// messages the console uses. This page is the side that offers, as the site's kiosk is: the console
// only answers, and asks for a new offer (`restart`) when it sees the media path drop. Each offer is
// numbered by a `generation`, so a late answer to an older offer is ignored. Every wait has a deadline
// and a message that says what did not happen.

import { h, fill } from "./dom.js";

const TIMEOUTS = {
  link: 10000, // the station's relay to the server, before a join
  joined: 10000, // the server's answer to a join
  answered: 120000, // a pharmacist answering the technician's request
  gathering: 8000, // ICE candidates, before the offer leaves
  remoteAnswer: 15000, // the console's SDP answer
  connect: 15000, // ICE + DTLS
  firstFrame: 10000, // the pharmacist's first decoded video frame
  reconnect: 12000, // from a dropped media path to media flowing again
};

const ENDED_BECAUSE = {
  hangup: "The pharmacist ended the call.",
  declined: "The pharmacist could not take the call.",
  dropped: "The connection dropped; the call ended.",
  timeout: "The call could not be set up in time; it was ended.",
  reconnect_failed: "The connection was lost and could not be re-established; the call ended.",
  unanswered: "No pharmacist answered; the request was withdrawn.",
};

function fmtClock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

/** Plugs calls into the station's page (main.js calls this when the station offers calls). */
export function install(station) {
  const link = h("link", { rel: "stylesheet", href: "/static/call.css" });
  document.head.append(link);
  const calls = new Calls(station);
  station.addPrescriptionAction("Ask for counselling", (rx) => calls.ask(rx), { id: "call-ask" });
  return calls;
}

class CallFailed extends Error {}

export class Calls {
  /** station: what main.js shares (api, csrfToken, toast, notify, cameraId). */
  constructor(station) {
    this.station = station;
    this.call = null;
    this.socket = null;
    this.linkUp = false;
    this.waiters = new Set(); // pending waits for a message: {test, resolve, reject, timer}
    this.invitations = new Map(); // consultation id -> banner element
    this.retries = 0;
    this.buildPanel();
    this.connect();
  }

  // -- the page's view of a call ---------------------------------------------------------------

  buildPanel() {
    this.remoteVideo = h("video", { id: "call-remote", class: "call-video", autoplay: true, playsinline: true, "aria-label": "The pharmacist" });
    this.localVideo = h("video", { id: "call-local", class: "call-video call-self", autoplay: true, playsinline: true, "aria-label": "This station's camera" });
    this.localVideo.muted = true;
    this.title = h("strong", { id: "call-title" }, "Call");
    this.stateText = h("span", { id: "call-state", class: "call-state", role: "status", "aria-live": "polite" }, "");
    this.clock = h("span", { id: "call-clock", class: "call-clock" }, "00:00");
    this.muteBtn = h("button", { type: "button", id: "call-mute", class: "btn" }, "Mute");
    this.hangupBtn = h("button", { type: "button", id: "call-hangup", class: "btn danger" }, "Hang up");
    // Recording is the patient's choice: asked aloud, ticked here, put on the call's record, then started.
    this.recordBox = h("input", { type: "checkbox", id: "call-record" });
    this.recordText = h("span", { id: "call-record-text" }, "Record this call (the patient agreed)");
    this.recordLabel = h("label", { class: "call-record", for: "call-record" }, this.recordBox, this.recordText);
    this.recordBox.addEventListener("change", () => { if (this.recordBox.checked) this.startRecording(); });
    this.muteBtn.addEventListener("click", () => this.toggleMute());
    this.hangupBtn.addEventListener("click", () => this.hangUp());
    this.invites = h("div", { id: "call-invitations", class: "call-invitations", "aria-live": "assertive" });
    this.panel = h("section", { id: "call-panel", class: "call-panel", hidden: true, "aria-label": "Video call with the pharmacist", dataset: { state: "idle" } },
      h("div", { class: "call-head" }, this.title, this.stateText, this.clock),
      h("div", { class: "call-tiles" }, this.remoteVideo, this.localVideo),
      h("div", { class: "call-controls" }, this.recordLabel, this.muteBtn, this.hangupBtn));
    (document.getElementById("app") || document.body).append(this.invites, this.panel);
  }

  /** Words naming a consultation's prescription for the technician ("Rx 6001237, Simvastatin 20 mg"). */
  async describe(c) {
    if (!c.prescription_id) return "";
    try {
      const body = await this.station.api("GET", "/api/prescriptions");
      const rx = body.prescriptions.find((p) => p.id === c.prescription_id);
      return rx ? `Rx ${rx.rx_number}, ${[rx.drug, rx.strength].filter(Boolean).join(" ")}` : "";
    } catch {
      return "";
    }
  }

  /** The station's chime and desktop notification; a browser that refuses them does not stop the call. */
  ring(title, body) {
    try {
      this.station.notify(title, body);
    } catch {
      // The banner and the panel say it too.
    }
  }

  setState(state, text) {
    this.panel.dataset.state = state;
    fill(this.stateText, text);
  }

  // -- the station's signalling socket ---------------------------------------------------------

  connect() {
    const url = new URL("/api/calls/ws", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    url.searchParams.set("csrf", this.station.csrfToken);
    const ws = new WebSocket(url);
    this.socket = ws;
    ws.addEventListener("message", (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      this.onMessage(msg);
    });
    ws.addEventListener("open", () => { this.retries = 0; });
    ws.addEventListener("close", () => {
      if (this.socket !== ws) return;
      this.linkUp = false;
      // The station closed the server's side with it: any call this page had joined is over.
      if (this.call) this.finish("The station's connection dropped; the call ended.", "error");
      const delay = Math.min(5000, 250 * 2 ** this.retries++);
      setTimeout(() => this.connect(), delay);
    });
  }

  send(message) {
    if (!this.socket || this.socket.readyState !== WebSocket.OPEN) throw new CallFailed("The station is not reachable from this page; reload it.");
    this.socket.send(JSON.stringify(message));
  }

  /** The next message that passes test, within ms; a refusal or the end of this call rejects. */
  next(test, ms, what) {
    return new Promise((resolve, reject) => {
      const waiter = { test, resolve, reject };
      waiter.timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new CallFailed(`${what} did not happen within ${ms / 1000} s`));
      }, ms);
      this.waiters.add(waiter);
    });
  }

  failWaiters(error) {
    for (const w of this.waiters) { clearTimeout(w.timer); w.reject(error); }
    this.waiters.clear();
  }

  onMessage(msg) {
    if (msg.type === "call.link") {
      this.linkUp = msg.up;
      if (msg.up) this.loadInvitations();
      // The server ends a call whose party's connection dropped; the pharmacist hears it at once.
      else if (this.call && this.call.id !== null) this.hangUp("failed", "The connection to the pharmacy server dropped; the call ended.");
    }
    const call = this.call;
    const mine = call && msg.consultation_id === call.id;
    if (mine && (msg.type === "consult.ended" || msg.type === "consultation.ended")) {
      this.ended(msg.reason || msg.end_reason);
      return;
    }
    if (mine && msg.type === "consult.error") {
      this.fail(`The server refused: ${msg.error}`);
      return;
    }
    if (msg.type === "call.error") this.station.toast(msg.error, "warn");
    if (msg.type === "consultation.invited") this.invited(msg.consultation_id);
    if (msg.type === "consultation.ended" || msg.type === "consultation.answered") this.dropInvitation(msg.consultation_id);
    if (mine && msg.type === "consult.signal" && msg.restart && (msg.generation || 0) >= call.generation) {
      this.reconnect(call);
    }
    for (const w of [...this.waiters]) {
      if (w.test(msg)) { this.waiters.delete(w); clearTimeout(w.timer); w.resolve(msg); }
    }
  }

  async waitForLink() {
    if (this.linkUp) return;
    await this.next((m) => m.type === "call.link" && m.up, TIMEOUTS.link, "Reaching the pharmacy server");
  }

  // -- invitations from a pharmacist -------------------------------------------------------------

  async loadInvitations() {
    try {
      const body = await this.station.api("GET", "/api/calls");
      for (const c of body.consultations) {
        if (c.invited && c.state === "accepted" && !c.answered_at) this.invited(c.id, c);
      }
    } catch {
      // The uplink may be down again; the next "link up" asks again.
    }
  }

  async invited(id, known = null) {
    if (this.invitations.has(id) || (this.call && this.call.id === id)) return;
    let c = known;
    if (!c) {
      try { c = await this.station.api("GET", `/api/calls/${id}`); } catch { return; }
    }
    if (!c.invited || c.state !== "accepted" || c.answered_at) return;
    const about = await this.describe(c);
    if (c.kind === "live_look") {
      // The pharmacist looks at the counting tray through this station's camera: no click needed.
      this.ring("The pharmacist is looking at the tray", about || "A live look through the station's camera.");
      this.answer(c, about);
      return;
    }
    const accept = h("button", { type: "button", class: "btn primary call-answer", dataset: { id: String(id) } }, "Answer");
    const later = h("button", { type: "button", class: "btn call-dismiss" }, "Not now");
    const el = h("div", { class: "call-invitation", role: "alert", dataset: { id: String(id) } },
      h("span", {}, `The pharmacist asks to counsel the patient${about ? ` (${about})` : ""}.`), accept, later);
    accept.addEventListener("click", () => { this.dropInvitation(id); this.answer(c, about); });
    later.addEventListener("click", () => this.dropInvitation(id));
    this.invitations.set(id, el);
    this.invites.append(el);
    this.ring("The pharmacist is calling", about ? `Counselling: ${about}` : "Counselling at the counter.");
  }

  dropInvitation(id) {
    const el = this.invitations.get(id);
    if (el) el.remove();
    this.invitations.delete(id);
  }

  // -- starting a call -------------------------------------------------------------------------

  /** The technician asks for counselling on a prescription. */
  async ask(prescription) {
    if (this.call) { this.station.toast("Finish the current call first.", "warn"); return; }
    const call = this.open("counsel", `Counselling${prescription.rx_number ? ` on Rx ${prescription.rx_number}` : ""}`);
    try {
      await this.media(call);
      await this.waitForLink();
      const c = await this.station.api("POST", "/api/calls", { kind: "counsel", prescription_id: prescription.id });
      if (call.ended) { this.station.api("POST", `/api/calls/${c.id}/end`, { reason: "cancelled" }).catch(() => {}); return; }
      call.id = c.id;
      this.panel.dataset.id = String(c.id);
      const joined = await this.join(call);
      if (joined.state !== "accepted") {
        this.setState("waiting", "Waiting for a pharmacist to answer…");
        try {
          await this.next((m) => m.consultation_id === call.id && (m.type === "consult.accepted" || m.type === "consultation.accepted"),
            TIMEOUTS.answered, "A pharmacist answering");
        } catch (err) {
          if (err instanceof CallFailed) { this.hangUp("unanswered", `No pharmacist answered within ${TIMEOUTS.answered / 1000} s; ask again later.`); return; }
          throw err;
        }
        this.ring("A pharmacist answered", "The counselling call is connecting.");
      }
      await this.connectMedia(call);
    } catch (err) {
      this.fail(err instanceof CallFailed ? `Could not place the call: ${err.message}.` : err.message, call);
    }
  }

  /** Answers a pharmacist's invitation (a live look without a click, counselling after one). */
  async answer(c, about = "") {
    if (this.call) { this.station.toast("A pharmacist is calling, but a call is in progress here.", "warn"); return; }
    const look = c.kind === "live_look";
    const call = this.open(c.kind, look ? `Live look at the counting tray${about ? `: ${about}` : ""}` : `Counselling${about ? `: ${about}` : ""}`);
    call.id = c.id;
    this.panel.dataset.id = String(c.id);
    try {
      await this.media(call);
      await this.waitForLink();
      await this.station.api("POST", `/api/calls/${c.id}/answer`, {});
      if (call.ended) return;
      await this.join(call);
      await this.connectMedia(call);
    } catch (err) {
      if (err.status === 409) {
        this.finish("Another station answered this call.", "info");
        return;
      }
      this.fail(err instanceof CallFailed ? `Could not answer: ${err.message}.` : err.message, call);
    }
  }

  open(kind, title) {
    const call = {
      id: null, kind, pc: null, stream: null, iceServers: [], generation: 0, timers: [], stats: null,
      ended: false, connectedAt: null, framesIn: 0, framesOut: 0, base: { framesIn: 0, framesOut: 0 },
      reconnecting: null, reconnections: 0, remote: { video: null, audio: null }, recorder: null, marked: false,
    };
    this.call = call;
    this.panel.hidden = false;
    this.panel.dataset.kind = kind;
    for (const k of ["id", "framesIn", "framesOut", "reconnections", "endReason", "recording", "connectedAt", "firstFrameAt"]) delete this.panel.dataset[k];
    fill(this.title, title);
    fill(this.clock, "00:00");
    this.muteBtn.hidden = kind === "live_look";
    this.recordLabel.hidden = true;
    this.recordBox.checked = false;
    this.recordBox.disabled = false;
    fill(this.recordText, "Record this call (the patient agreed)");
    this.setState("starting", "Starting the camera…");
    return call;
  }

  /** The chosen camera (and the microphone, for counselling: a live look is one way, video only). */
  async media(call) {
    const chosen = this.station.cameraId();
    const video = chosen ? { deviceId: { exact: chosen }, width: 640, height: 480 } : { width: 640, height: 480 };
    try {
      call.stream = await navigator.mediaDevices.getUserMedia({ video, audio: call.kind !== "live_look" });
    } catch (err) {
      const why = err.name === "NotAllowedError" ? "the browser was not allowed to use the camera and microphone"
        : err.name === "NotFoundError" ? "no camera (or microphone) was found" : err.message;
      throw new CallFailed(`The camera could not start: ${why}`);
    }
    if (call.ended) { for (const t of call.stream.getTracks()) t.stop(); throw new CallFailed("the call was cancelled"); }
    this.localVideo.srcObject = call.stream;
    const ice = await this.station.api("GET", "/api/calls/ice-servers");
    call.iceServers = ice.ice_servers;
  }

  async join(call) {
    this.setState("joining", "Joining the call…");
    const joined = this.next((m) => m.type === "consult.joined" && m.consultation_id === call.id, TIMEOUTS.joined, "Joining the call");
    this.send({ type: "consult.join", consultation_id: call.id });
    return joined;
  }

  // -- media -----------------------------------------------------------------------------------

  newPeer(call) {
    const pc = new RTCPeerConnection({ iceServers: call.iceServers });
    if (call.kind === "live_look") {
      pc.addTransceiver(call.stream.getVideoTracks()[0], { direction: "sendonly", streams: [call.stream] });
    } else {
      for (const track of call.stream.getTracks()) pc.addTrack(track, call.stream);
    }
    pc.addEventListener("track", (e) => {
      call.remote[e.track.kind] = e.track;
      if (e.track.kind === "video") this.remoteVideo.srcObject = e.streams[0] || new MediaStream([e.track]);
    });
    pc.addEventListener("connectionstatechange", () => { if (call.pc === pc) this.onConnectionState(call); });
    return pc;
  }

  /** One offer with every candidate (the console's answer carries all of its own). */
  async offer(call) {
    const old = call.pc;
    call.pc = this.newPeer(call);
    if (old) old.close();
    const pc = call.pc;
    const generation = call.generation;
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve, reject) => {
      if (pc.iceGatheringState === "complete") { resolve(); return; }
      const timer = setTimeout(() => reject(new CallFailed(`Gathering network candidates took over ${TIMEOUTS.gathering / 1000} s: check the network`)), TIMEOUTS.gathering);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
    if (call.ended) return;
    const answer = this.next((m) => m.type === "consult.signal" && m.consultation_id === call.id && m.description
      && m.description.type === "answer" && (m.generation || 0) === generation, TIMEOUTS.remoteAnswer, "The pharmacist's answer");
    const local = pc.localDescription;
    this.send({ type: "consult.signal", consultation_id: call.id, generation, description: { type: local.type, sdp: local.sdp } });
    const msg = await answer;
    if (call.ended || call.pc !== pc) return;
    await pc.setRemoteDescription(msg.description);
  }

  async connectMedia(call) {
    this.setState("connecting", "Connecting…");
    await this.offer(call);
    if (call.ended) return;
    await this.until(call, () => call.pc.connectionState === "connected", TIMEOUTS.connect, "The media connection");
    call.connectedAt = performance.now();
    this.setState("connected", call.kind === "live_look" ? "The pharmacist is looking at the tray." : "Connected.");
    call.stats = setInterval(() => this.sample(call), 500);
    if (call.kind !== "live_look") {
      this.watchFirstFrame(call);
      await this.until(call, () => call.framesIn > 0, TIMEOUTS.firstFrame, "The pharmacist's video");
      this.recordLabel.hidden = !("MediaRecorder" in window);
    }
    this.station.api("POST", `/api/calls/${call.id}/connected`, {}).catch(() => {});
  }

  /** Polls a condition of this call until it holds; the end of the call or the deadline stops it. */
  until(call, test, ms, what) {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const poll = setInterval(() => {
        if (call.ended) { clearInterval(poll); reject(new CallFailed("the call ended")); return; }
        if (test()) { clearInterval(poll); resolve(); return; }
        if (performance.now() - started > ms) {
          clearInterval(poll);
          reject(new CallFailed(`${what} did not come within ${ms / 1000} s`));
        }
      }, 50);
      call.timers.push(poll);
    });
  }

  /** Wall-clock milestones of the last call (ms since the epoch), read by bench/station_call.py. */
  mark(name) {
    this.panel.dataset[name] = String(Math.round(performance.timeOrigin + performance.now()));
  }

  // Polls the receiver's stats briefly, so the first decoded frame is seen (and marked) at once.
  watchFirstFrame(call) {
    const poll = setInterval(async () => {
      if (call.ended || !call.pc || call.framesIn > 0) { clearInterval(poll); return; }
      const report = await call.pc.getStats();
      report.forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video" && r.framesDecoded > 0 && call.framesIn === 0) {
          call.framesIn = call.base.framesIn + r.framesDecoded;
          this.mark("firstFrameAt");
        }
      });
    }, 10);
    call.timers.push(poll);
  }

  onConnectionState(call) {
    if (call.pc.connectionState === "connected" && !call.marked) {
      call.marked = true;
      this.mark("connectedAt");
    }
    if (call.ended || call.connectedAt === null) return;
    const state = call.pc.connectionState;
    if (state === "failed" || state === "closed") this.reconnect(call);
  }

  /** The media path dropped (or the console asked): a new offer on a fresh connection, within the window. */
  async reconnect(call) {
    if (call.ended || call.reconnecting || call.connectedAt === null) return;
    const started = performance.now();
    call.reconnecting = true;
    this.setState("reconnecting", "The connection dropped. Reconnecting…");
    call.base = { framesIn: call.framesIn, framesOut: call.framesOut };
    while (!call.ended && performance.now() - started < TIMEOUTS.reconnect) {
      call.generation += 1;
      try {
        await this.offer(call);
        const left = TIMEOUTS.reconnect - (performance.now() - started);
        await this.until(call, () => call.pc.connectionState === "connected", Math.max(0, left), "The media connection");
        call.reconnecting = null;
        call.reconnections += 1;
        this.panel.dataset.reconnections = String(call.reconnections);
        this.setState("connected", "Reconnected.");
        this.station.api("POST", `/api/calls/${call.id}/reconnected`, {}).catch(() => {});
        return;
      } catch {
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    if (!call.ended) this.hangUp("reconnect_failed", `The connection was lost and could not be re-established within ${TIMEOUTS.reconnect / 1000} s; the call ended.`);
  }

  async sample(call) {
    if (call.ended || !call.pc) return;
    const pc = call.pc;
    const report = await pc.getStats();
    if (call.ended || pc !== call.pc) return;
    let framesIn = 0, framesOut = 0;
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") framesIn = s.framesDecoded || 0;
      else if (s.type === "outbound-rtp" && s.kind === "video") framesOut = s.framesSent || s.framesEncoded || 0;
    });
    call.framesIn = call.base.framesIn + framesIn;
    call.framesOut = call.base.framesOut + framesOut;
    this.panel.dataset.framesIn = String(call.framesIn);
    this.panel.dataset.framesOut = String(call.framesOut);
    if (call.connectedAt !== null) fill(this.clock, fmtClock((performance.now() - call.connectedAt) / 1000));
  }

  // -- recording, with the patient's consent ---------------------------------------------------

  /** Consent on the call's record first (through the station); only then does the recorder start. */
  async startRecording() {
    const call = this.call;
    if (!call || call.ended || call.recorder || !call.remote.video) return;
    this.recordBox.disabled = true;
    try {
      await this.station.api("POST", `/api/calls/${call.id}/consent`, {});
    } catch (err) {
      this.recordBox.checked = false;
      this.recordBox.disabled = false;
      this.station.toast(`Not recording: the patient's consent could not be put on record (${err.message}).`, "warn");
      return;
    }
    if (call.ended) return;
    // The pharmacist's picture, and both voices mixed into one sound track.
    const audio = new AudioContext();
    const mix = audio.createMediaStreamDestination();
    for (const track of [call.remote.audio, ...call.stream.getAudioTracks()]) {
      if (track) audio.createMediaStreamSource(new MediaStream([track])).connect(mix);
    }
    const tracks = [call.remote.video, ...mix.stream.getAudioTracks()];
    const recorder = new MediaRecorder(new MediaStream(tracks), { mimeType: "video/webm;codecs=vp8,opus", videoBitsPerSecond: 600000 });
    const chunks = [];
    recorder.addEventListener("dataavailable", (e) => { if (e.data.size) chunks.push(e.data); });
    call.recorder = { recorder, chunks, audio };
    recorder.start(1000);
    this.panel.dataset.recording = "on";
    fill(this.recordText, "Recording (the patient agreed)");
  }

  /** After the call: the recording goes to the station, which keeps it until the server has it. */
  async saveRecording(call) {
    const rec = call.recorder;
    if (!rec) return;
    const stopped = new Promise((resolve) => rec.recorder.addEventListener("stop", resolve, { once: true }));
    if (rec.recorder.state !== "inactive") rec.recorder.stop();
    await stopped;
    rec.audio.close();
    this.panel.dataset.recording = "saving";
    try {
      await this.station.upload(`/api/calls/${call.id}/recording`, new Blob(rec.chunks, { type: "video/webm" }));
      this.panel.dataset.recording = "kept";
      this.station.toast("The recording is kept at the station; it is sent to the pharmacy server from there.", "ok", { timeout: 6000 });
    } catch (err) {
      this.panel.dataset.recording = "failed";
      this.station.toast(`The recording could not be kept: ${err.message}`, "error");
    }
  }

  toggleMute() {
    const call = this.call;
    if (!call || !call.stream) return;
    const tracks = call.stream.getAudioTracks();
    for (const t of tracks) t.enabled = !t.enabled;
    const muted = tracks.some((t) => !t.enabled);
    fill(this.muteBtn, muted ? "Unmute" : "Mute");
    this.muteBtn.setAttribute("aria-pressed", String(muted));
  }

  // -- ending ------------------------------------------------------------------------------------

  /** This side ends the call; the station tells the server, which tells the pharmacist. */
  async hangUp(reason = "hangup", message = "You ended the call.") {
    const call = this.call;
    if (!call || call.ended) return;
    this.finish(message, reason === "hangup" ? "ok" : "error");
    if (call.id === null) return;
    try {
      await this.station.api("POST", `/api/calls/${call.id}/end`, { reason });
    } catch (err) {
      this.station.toast(`The pharmacy server did not hear the hang-up: ${err.message}`, "warn");
    }
  }

  fail(message, call = this.call) {
    if (!call || call.ended || call !== this.call) return;
    this.hangUp(call.connectedAt === null ? (call.id === null ? "cancelled" : "failed") : "failed", message);
  }

  async ended(reason) {
    const call = this.call;
    if (!call || call.ended) return;
    let text = ENDED_BECAUSE[reason] || `The call ended (${reason || "ended"}).`;
    if (reason === "declined" && call.id !== null) {
      try {
        const c = await this.station.api("GET", `/api/calls/${call.id}`);
        if (c.outcome_note) text = `The pharmacist could not take the call: ${c.outcome_note}`;
      } catch { /* the short text stands */ }
    }
    this.panel.dataset.endReason = reason || "";
    this.finish(text, reason === "hangup" ? "info" : "warn");
  }

  finish(message, kind = "info") {
    const call = this.call;
    if (!call || call.ended) return;
    call.ended = true;
    this.failWaiters(new CallFailed("the call ended"));
    for (const t of call.timers) { clearTimeout(t); clearInterval(t); }
    clearInterval(call.stats);
    // Stopped before the tracks end, so the recorder keeps everything up to the hang-up.
    if (call.recorder) this.saveRecording(call);
    if (call.pc) call.pc.close();
    if (call.stream) for (const t of call.stream.getTracks()) t.stop();
    this.remoteVideo.srcObject = null;
    this.localVideo.srcObject = null;
    this.setState("ended", message);
    this.call = null;
    this.station.toast(message, kind, { timeout: 6000 });
    setTimeout(() => { if (!this.call) this.panel.hidden = true; }, 5000);
  }
}
