// The technician's page: starts, pairs or enrols, then the capture screen and the work list, kept
// live by the station's feed. Other modules (calls) plug in through the `station` object below.

import { api, upload, withToken, csrfToken, StationError } from "./api.js";
import { $, isTyping, toast } from "./dom.js";
import { StationFeed } from "./live.js";
import { Capture } from "./capture.js";
import { WorkList } from "./worklist.js";
import { Alerts } from "./alerts.js";

const views = ["boot", "pair", "enrol", "capture", "worklist", "fill"];
const feed = new StationFeed();
const alerts = new Alerts($("#notify-button"));
const serverListeners = new Map();
const prescriptionActions = [];

/** What another module of the page (calls) may use. */
export const station = {
  api, upload, withToken, csrfToken, feed, toast,
  /** Calls fn(event) for each server live event of this type (e.g. "consultation.invited"). */
  on(type, fn) {
    if (!serverListeners.has(type)) serverListeners.set(type, []);
    serverListeners.get(type).push(fn);
  },
  /** Adds a button to the picked prescription's card: fn(rx) when pressed. */
  addPrescriptionAction(label, fn, { id } = {}) {
    prescriptionActions.push({ label, fn, id });
    capture.renderActions();
  },
  /** A sound and, with permission, a desktop notification. */
  notify(title, body) {
    alerts.notify(title, body);
  },
  /** The camera chosen on the capture screen (a deviceId, or "" for the default). */
  cameraId() {
    return capture.cameraId();
  },
  show,
  state: null,
  /** The station's last status: enrolled, uplink ("up", "down", "token_refused", ...), why, waiting. */
  status: null,
};

const capture = new Capture(station, prescriptionActions);
const worklist = new WorkList(station, capture);

function show(view) {
  for (const v of views) $(`#${v}-view`).hidden = v !== view;
  $("#app").dataset.view = view;
  const inApp = ["capture", "worklist", "fill"].includes(view);
  $("#nav").hidden = !inApp;
  $("#nav-capture").toggleAttribute("aria-current", view === "capture");
  $("#nav-worklist").toggleAttribute("aria-current", view === "worklist" || view === "fill");
  if (view === "capture") capture.shown();
  else capture.hidden();
  if (view === "worklist") worklist.refresh();
}

function setStatus(status) {
  station.status = status;
  const state = !status.enrolled ? "not_enrolled" : status.uplink;
  const uplink = $("#uplink");
  uplink.dataset.state = state;
  $("#uplink-text").textContent = {
    up: "Connected",
    down: "Offline",
    connecting: "Connecting…",
    not_enrolled: "Not connected",
    token_refused: "Token refused",
  }[state] || state;
  const banner = $("#offline-banner");
  banner.hidden = !(status.enrolled && status.uplink === "down");
  const n = status.waiting || 0;
  const fills = `${n} saved fill${n === 1 ? "" : "s"} wait${n === 1 ? "s" : ""} here`;
  $("#offline-text").textContent = n
    ? `${fills} and will be sent when the connection returns. You can keep working.`
    : "You can keep working: saved fills wait here and are sent when the connection returns.";
  banner.dataset.waiting = String(n);
  // The server answers but refuses this station's device token: not a network problem, and only
  // enrolling again (the station's words, in `why`) gets anything through.
  const refused = status.enrolled && status.uplink === "token_refused";
  $("#token-banner").hidden = !refused;
  $("#token-text").textContent = refused ? status.why : "";
  $("#token-waiting").textContent = n ? `${fills} and will be sent once this station is enrolled again. You can keep working.` : "";
}

function enrolAgain() {
  $("#enrol-server").value = station.state?.server_url || "";
  $("#enrol-token").value = "";
  $("#enrol-error").hidden = true;
  $("#enrol-cancel").hidden = false;
  show("enrol");
  $("#enrol-token").focus();
}

feed.addEventListener("message", (e) => {
  const msg = e.detail;
  if (msg.type === "status") setStatus(msg);
  if (msg.type === "server_event") {
    for (const fn of serverListeners.get(msg.event?.type) || []) fn(msg.event);
  }
  if (msg.type === "decision") {
    const approved = msg.outcome === "approve";
    const item = worklist.items.find((i) => i.fill_id === msg.fill_id);
    const which = [item?.rx_number && `Rx ${item.rx_number}`, `fill ${msg.fill_id.replaceAll("-", "").slice(0, 8)}`];
    alerts.notify(approved ? "Approved: ready to bag" : "Rejected: retake needed", which.filter(Boolean).join(", "));
    worklist.decided(msg);
  }
  worklist.message(msg);
  capture.message(msg);
});
feed.addEventListener("link", (e) => {
  if (!e.detail.up) {
    $("#uplink").dataset.state = "station_down";
    $("#uplink-text").textContent = "Station not answering";
  }
});

async function boot() {
  let state;
  try {
    state = await api("GET", "/api/state");
  } catch (err) {
    if (err instanceof StationError && err.code === "not_paired") {
      show("pair");
      $("#pair-code").focus();
      return;
    }
    $("#boot-view").textContent = err.message;
    return;
  }
  station.state = state;
  if (!state.enrolled) {
    setStatus(state);
    $("#enrol-cancel").hidden = true;
    show("enrol");
    $("#enrol-server").focus();
    return;
  }
  const site = state.site || {};
  $("#site-name").textContent = [site.name, site.code].filter(Boolean).join(" · ") || "Technician station";
  setStatus(state);
  if (!feed.ws) feed.start();
  capture.configure(state);
  alerts.offer();
  if (state.features?.includes("calls")) {
    import("./call.js").then((m) => m.install(station)).catch((err) => toast(`Calls are not available: ${err.message}`, "warn"));
  }
  show("capture");
}

$("#pair-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = $("#pair-error");
  error.hidden = true;
  try {
    await api("POST", "/api/pair", { code: $("#pair-code").value });
    boot();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  }
});

$("#enrol-again").addEventListener("click", enrolAgain);
$("#enrol-cancel").addEventListener("click", () => show("capture"));

$("#enrol-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const error = $("#enrol-error");
  const button = $("#enrol-submit");
  error.hidden = true;
  button.disabled = true;
  try {
    const me = await api("POST", "/api/enroll", { server_url: $("#enrol-server").value.trim(), token: $("#enrol-token").value });
    $("#enrol-token").value = "";
    toast(`Connected as ${me.display_name}.`, "ok");
    boot();
  } catch (err) {
    error.textContent = err.message;
    error.hidden = false;
  } finally {
    button.disabled = false;
  }
});

for (const btn of document.querySelectorAll("[data-nav]")) {
  btn.addEventListener("click", () => show(btn.dataset.nav));
}
$("#fill-back").addEventListener("click", () => show("worklist"));

document.addEventListener("keydown", (e) => {
  if (!["capture", "worklist", "fill"].includes($("#app").dataset.view)) return;
  if (e.key === "F2") {
    e.preventDefault();
    show("capture");
  } else if (e.key === "F3") {
    e.preventDefault();
    show("worklist");
  } else if ($("#app").dataset.view === "capture") {
    capture.key(e, isTyping(e.target));
  }
});

boot();
