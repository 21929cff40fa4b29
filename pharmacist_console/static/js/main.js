// The console's entry point: session, views, the live feed and the keyboard, wired together.

import { api, get, getAll, onLocked, onUnauthorized, setCsrfToken, ApiError } from "./api.js";
import { $, h, fill, isTyping, toast } from "./dom.js";
import { Consults } from "./consult.js";
import { IdleLock } from "./idle_lock.js";
import { Identity } from "./second_factor.js";
import { setFlagLabels } from "./flags.js";
import { LiveFeed } from "./live.js";
import { DetailCache, ImageCache, Prefetcher } from "./prefetch.js";
import { DataEntry } from "./pv1.js";
import { QueueStore } from "./queue.js";
import { setVideoSeenFraction } from "./seen.js";
import { QueueView } from "./queue_view.js";
import { Viewer } from "./viewer.js";
import { Workspace } from "./workspace.js";

const VIEWS = ["boot", "login", "queue", "verify", "pv1", "dashboard", "compliance", "admin", "counselling"];
const LIVE_TEXT = { off: "Offline", connecting: "Connecting…", reconnecting: "Reconnecting…", live: "Live" };

const els = {
  app: $("#app"),
  nav: $("#nav"),
  live: $("#live"),
  pressure: $("#pressure"),
  me: $("#me"),
  signOut: $("#sign-out"),
  helpButton: $("#help-button"),
  help: $("#help"),
  loginForm: $("#login-form"),
  loginUser: $("#login-username"),
  loginPass: $("#login-password"),
  loginError: $("#login-error"),
  loginSubmit: $("#login-submit"),
  filterSite: $("#filter-site"),
  filterPriority: $("#filter-priority"),
  openNext: $("#open-next"),
};

const details = new DetailCache();
const images = new ImageCache();
const prefetcher = new Prefetcher(details, images);
const store = new QueueStore({ details });
const live = new LiveFeed();
// Video consultations: request banner, accept and the call panel (its own DOM, its own listeners).
const consults = new Consults({ live, details });
const viewer = new Viewer($("#v-stage"), {
  images, zoomLabel: $("#v-zoom"), info: $("#v-stage-info"), tools: $("#v-stage-tools"),
});
let me = null;
let view = "boot";
const identity = new Identity();
let adminPage = null;
// The pharmacist's fills due counselling (counselling.js), made on first use.
let counselling = null;
const idleLock = new IdleLock({
  app: els.app,
  identity,
  // Locked: nothing of a patient stays on screen and the claimed fill goes back to the queue.
  onLock: async () => {
    if (view === "verify") await workspace.leave();
    store.reset();
    counselling?.reset();
  },
  onUnlock: () => {
    store.load().catch((err) => toast(`Could not load the queue: ${err.message}`, "error"));
    if (me?.role === "pharmacist") counselling?.load();
  },
  onSignOut: async () => {
    await api("DELETE", "/api/v1/session").catch(() => {});
    endSession("You have signed out.");
  },
});

// The decision bar's height, for what floats above it (the call panel, the pickers).
new ResizeObserver(([entry]) => {
  const height = entry.target.getBoundingClientRect().height;
  if (height > 0) els.app.style.setProperty("--decision-h", `${Math.ceil(height)}px`);
}).observe($(".decision-bar"));
let dashboard = null;
let compliance = null;
let knownSites = [];
// Data-entry verification (PV1): its own list and review, in its own module.
const dataEntry = new DataEntry({
  root: $("#pv1-view"), onCount: (n) => { $("#pv1-count").textContent = n ? String(n) : ""; }, now: () => store.now(),
});

const workspace = new Workspace({
  store, details, images, prefetcher, viewer,
  els: {
    title: $("#v-title"), rx: $("#v-rx"), strip: $("#v-strip"), lease: $("#v-lease"), banner: $("#v-banner"),
    status: $("#v-status"), approve: $("#v-approve"), reject: $("#v-reject"), next: $("#v-next"), back: $("#v-back"),
    reasons: $("#v-reasons"), reasonList: $("#v-reason-list"), note: $("#v-note"), noteRequired: $("#v-note-required"),
    reasonError: $("#v-reason-error"), reasonCancel: $("#v-reason-cancel"), reasonConfirm: $("#v-reason-confirm"),
    acksPanel: $("#v-acks"), ackList: $("#v-ack-list"), ackKeys: $("#v-ack-keys"), ackError: $("#v-ack-error"),
    ackCancel: $("#v-ack-cancel"), ackConfirm: $("#v-ack-confirm"),
    undoBars: [$("#v-undo"), $("#q-undo")], undoButtons: [$("#v-undo .undo-button"), $("#q-undo .undo-button")],
  },
  exit: () => show("queue"),
  enter: () => { if (view !== "verify") show("verify"); },
});

const queueView = new QueueView({
  store,
  els: {
    body: $("#queue-body"), empty: $("#queue-empty"), countQueued: $("#count-queued"),
    countInReview: $("#count-in-review"), oldest: $("#oldest"), oldestBox: $("#oldest-box"),
    pressure: $("#pressure"), pressureWaiting: $("#pressure-waiting"), pressureOldest: $("#pressure-oldest"),
  },
  onOpen: (id) => openFill(id),
});

// -- views -----------------------------------------------------------------------------------------

function show(name) {
  view = name;
  els.app.dataset.view = name;
  for (const v of VIEWS) document.getElementById(`${v}-view`).hidden = v !== name;
  for (const link of els.nav.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === name || (name === "verify" && link.dataset.nav === "queue")) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (name === "queue") queueView.render();
  if (name === "dashboard") openDashboard();
  if (name === "pv1") dataEntry.load().catch((err) => toast(`Could not load data entry: ${err.message}`, "error"));
  if (name === "compliance") openCompliance();
  if (name === "admin") openAdmin();
  if (name === "counselling") openCounselling();
}

// Counselling due (counselling.js): a pharmacist's list, its count in the nav kept live by the events that
// change it.
async function counsellingList() {
  if (!counselling) {
    const mod = await import("./counselling.js");
    counselling ||= new mod.CounsellingList({
      root: $("#counselling-view"), consults, onCount: (n) => { $("#counselling-count").textContent = n ? String(n) : ""; },
    });
  }
  return counselling;
}
async function openCounselling() {
  await (await counsellingList()).load();
}

async function openCompliance() {
  if (!compliance) {
    const mod = await import("./compliance.js");
    compliance = new mod.CompliancePanel({ site: $("#comp-site"), body: $("#comp-body"), note: $("#comp-note") });
  }
  compliance.open(knownSites);
}

async function openAdmin() {
  if (!adminPage) {
    const mod = await import("./admin.js");
    adminPage = new mod.AdminPage({ root: $("#admin-view") });
  }
  adminPage.load().catch((err) => toast(`Could not load the accounts: ${err.message}`, "error"));
}

async function openDashboard() {
  if (!dashboard) {
    const mod = await import("./dashboard.js");
    dashboard = new mod.Dashboard({ grid: $("#dash-grid"), days: $("#dash-days"), note: $("#dash-note") });
  }
  dashboard.load();
}

function openFill(id) {
  if (!me || me.role !== "pharmacist") {
    toast("Only pharmacists verify fills; this account can watch the queue.", "warn");
    return;
  }
  show("verify");
  workspace.open(id);
}

function openNextFill() {
  if (!store.loaded) {
    toast("The queue is still loading: press N again in a moment.", "info");
    return;
  }
  const next = store.nextWaiting(workspace.skipped);
  const any = next || store.nextWaiting();
  if (!any) {
    toast("No fill is waiting.", "info");
    return;
  }
  openFill(any.id);
}

// -- session ---------------------------------------------------------------------------------------

function showLogin(message) {
  show("login");
  for (const el of [els.nav, els.live, els.me, els.signOut, els.helpButton, els.pressure, $("#security-button")]) el.hidden = true;
  els.loginError.hidden = !message;
  els.loginError.textContent = message || "";
  els.loginPass.value = "";
  (els.loginUser.value ? els.loginPass : els.loginUser).focus();
}

/** A session from sign-in or boot: the second factor, an enrolment or an unlock first when it needs one. */
async function continueSession(session) {
  setCsrfToken(session.csrf_token);
  if (session.stage === "second_factor") session = await identity.signIn(session);
  else if (session.stage === "enrol" && (await identity.enrol({ required: true }))) session = await get("/api/v1/session");
  else if (session.stage === "locked") {
    // A page reloaded while its session was idle: unlock before anything of a patient is fetched.
    const unlocked = await identity.prove({
      title: "Console locked",
      intro: "The console locked after a while without use. Unlock it to continue.",
      methods: ["password", ...session.second_factors],
      cancelLabel: "Sign out",
    });
    if (!unlocked) await api("DELETE", "/api/v1/session").catch(() => {});
    session = unlocked ? await get("/api/v1/session") : null;
  }
  if (!session || session.stage !== "ready") {
    if (session) await api("DELETE", "/api/v1/session").catch(() => {});
    showLogin(session ? "A second factor is required to continue." : "");
    return;
  }
  await startSession(session.user, session.csrf_token);
  if (!me) return;
  idleLock.start({ idleSeconds: session.idle_lock_seconds, methods: session.second_factors });
}

async function startSession(user, csrf) {
  setCsrfToken(csrf);
  if (user.role !== "pharmacist" && user.role !== "admin") {
    await api("DELETE", "/api/v1/session").catch(() => {});
    showLogin("This console is for pharmacists. Technicians use the site client.");
    return;
  }
  me = user;
  workspace.setUser(user);
  queueView.setUser(user);
  fill(els.me, h("span", { class: "me-name", title: user.display_name }, user.display_name),
    user.licensed_states?.length ? h("span", { class: "me-states" }, user.licensed_states.join(" · ")) : h("span", { class: "me-states" }, user.role));
  for (const el of [els.nav, els.live, els.me, els.signOut, els.helpButton, els.pressure, $("#security-button")]) el.hidden = false;
  $("#nav-compliance").hidden = user.role !== "admin";
  $("#nav-admin").hidden = user.role !== "admin";
  $("#nav-counselling").hidden = user.role !== "pharmacist";
  show("queue");
  const [sites, reasons] = await Promise.all([getAll("/api/v1/sites", "sites"), get("/api/v1/reasons")]);
  knownSites = sites.sites;
  fill(els.filterSite, h("option", { value: "" }, "All sites"),
    sites.sites.map((s) => h("option", { value: s.id }, `${s.code} · ${s.name} (${s.state})`)));
  setFlagLabels(reasons.flag_labels);
  setVideoSeenFraction(reasons.video_seen_fraction);
  dataEntry.setReasons(reasons.return_reasons, { stepUpReasons: reasons.step_up_reasons });
  workspace.setReasons(reasons.reasons, {
    acknowledgementReasons: reasons.acknowledgement_reasons, undoSeconds: reasons.undo_seconds,
    stepUpReasons: reasons.step_up_reasons,
  });
  live.start();
}

function endSession(message) {
  idleLock.stop();
  workspace.reset();
  dataEntry.reset();
  counselling?.reset();
  live.stop();
  store.reset();
  me = null;
  setCsrfToken(null);
  showLogin(message);
}

els.loginForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  els.loginError.hidden = true;
  els.loginSubmit.disabled = true;
  try {
    const body = await api("POST", "/api/v1/session", { username: els.loginUser.value.trim(), password: els.loginPass.value });
    els.loginPass.value = "";
    await continueSession(body);
  } catch (err) {
    els.loginError.textContent = err instanceof ApiError ? loginErrorText(err) : "Sign-in failed.";
    els.loginError.hidden = false;
    els.loginPass.select();
  } finally {
    els.loginSubmit.disabled = false;
  }
});

/** A lockout says when to try again: the server's retry_after (or Retry-After), as a wait and a clock time. */
function loginErrorText(err) {
  if (err.status !== 429) return err.message;
  const seconds = Number(err.detail?.retry_after ?? err.retryAfter);
  if (!Number.isFinite(seconds) || seconds <= 0) return `${err.message} Try again in a moment.`;
  const wait = Math.ceil(seconds);
  const at = new Date(Date.now() + wait * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  const span = wait < 90 ? `${wait} second${wait === 1 ? "" : "s"}` : `${Math.ceil(wait / 60)} minutes`;
  return `Too many sign-in attempts. Try again in ${span} (at ${at}).`;
}

els.signOut.addEventListener("click", async () => {
  // A decision still in its undo window is sent before the session ends, not lost with it.
  await workspace.flush();
  if (dataEntry.current) await dataEntry.close();
  await api("DELETE", "/api/v1/session").catch(() => {});
  endSession("You have signed out.");
});

onUnauthorized(() => {
  if (me) endSession("Your session has ended. Sign in again.");
});
onLocked(() => {
  if (me) idleLock.lock();
});
workspace.confirmIdentity = (ask) => identity.confirmDecision(ask);
dataEntry.confirmIdentity = async (ask) => {
  // The server keeps one proof for the next decision that needs one: a fill's decision still waiting for
  // its Undo window goes first, so that it cannot use the proof given for this prescription.
  await workspace.sendHeld().catch(() => {});
  return identity.confirmDecision(ask);
};
$("#security-button").addEventListener("click", () => identity.manage().catch((err) => toast(err.message, "error")));

// -- live ------------------------------------------------------------------------------------------

live.addEventListener("status", (e) => {
  const state = e.detail.state;
  els.live.dataset.state = state;
  els.live.querySelector(".live-text").textContent = LIVE_TEXT[state] || state;
  els.live.title = state === "live" ? "Receiving changes as they happen" : "Changes are caught up when the connection is back";
});
function loadQueue() {
  store.load().then(() => dataEntry.setRows(store.dataEntry))
    .catch((err) => toast(`Could not load the queue: ${err.message}`, "error"));
}
live.addEventListener("hello", (e) => {
  // A resumed connection replays what was missed from the cursor; only a fresh one loads the queue.
  if (!e.detail.resumed) {
    loadQueue();
    if (me?.role === "pharmacist") counsellingList().then((c) => c.load());
  }
});
// Away longer than the server keeps events (or too far behind to replay): the queue is read afresh.
live.addEventListener("reload", () => {
  loadQueue();
  if (me?.role === "pharmacist") counselling?.load();
});
let dashboardTimer = null;
live.addEventListener("event", (e) => {
  store.handle(e.detail);
  workspace.onEvent(e.detail);
  dataEntry.onEvent(e.detail);
  counselling?.onEvent(e.detail);
  if (view === "dashboard" && dashboard && e.detail.type === "fill.decided") {
    // The figures follow decisions as they happen, a few seconds behind so bursts cost one request.
    clearTimeout(dashboardTimer);
    dashboardTimer = setTimeout(() => { if (view === "dashboard") dashboard.load(); }, 3000);
  }
});
live.addEventListener("trouble", () => {
  // Repeated failures may mean the session ended: asking triggers the sign-in form on a 401.
  get("/api/v1/session").catch(() => {});
});

// -- controls and keys -----------------------------------------------------------------------------

els.nav.addEventListener("click", (e) => {
  const link = e.target.closest("[data-nav]");
  if (!link) return;
  if (view === "verify") workspace.leave();
  if (view === "pv1" && dataEntry.current) dataEntry.close();
  show(link.dataset.nav);
});
els.filterSite.addEventListener("change", () => store.setFilters({ siteId: els.filterSite.value }).catch((err) => toast(err.message, "error")));
els.filterPriority.addEventListener("change", () => store.setFilters({ priority: els.filterPriority.value }).catch((err) => toast(err.message, "error")));
els.openNext.addEventListener("click", () => openNextFill());

// From the fill being verified: counselling on its prescription, or a live look at the counting tray.
function askSite(kind) {
  if (workspace.current) consults.invite(workspace.current.id, kind);
}
$("#v-counsel").addEventListener("click", () => askSite("counsel"));
$("#v-look").addEventListener("click", () => askSite("live_look"));
els.helpButton.addEventListener("click", () => els.help.showModal());
$("#help-close").addEventListener("click", () => els.help.close());

document.addEventListener("keydown", (e) => {
  if (els.help.open || view === "login" || view === "boot" || idleLock.locked || document.querySelector(".identity-dialog[open]")) return;
  if (e.key === "?" && !isTyping(e.target)) {
    els.help.showModal();
    e.preventDefault();
    return;
  }
  let used = false;
  const plain = !isTyping(e.target) && !e.ctrlKey && !e.metaKey && !e.altKey;
  const undoKey = !isTyping(e.target) && !e.altKey && !e.shiftKey
    && ((plain && e.key.toLowerCase() === "u") || ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z"));
  if (view !== "verify" && undoKey && workspace.held) {
    used = workspace.undo();
  } else if (view === "verify" && plain && !workspace.picker.open && !workspace.acks.open && ["v", "t"].includes(e.key.toLowerCase())) {
    askSite(e.key.toLowerCase() === "t" ? "live_look" : "counsel");
    used = true;
  } else if (view === "verify") used = workspace.onKey(e);
  else if (view === "pv1" && (dataEntry.current || !["q", "d", "e"].includes(e.key.toLowerCase()))) used = dataEntry.onKey(e);
  else if (!isTyping(e.target) && !e.ctrlKey && !e.metaKey && !e.altKey) {
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (view === "queue" && key === "n") {
      openNextFill();
      used = true;
    } else if (key === "e" && view !== "pv1") {
      show("pv1");
      used = true;
    } else if (key === "q" && view === "pv1") {
      show("queue");
      used = true;
    } else if (key === "d" && view !== "dashboard") {
      show("dashboard");
      used = true;
    } else if ((key === "q" || key === "Escape") && view === "dashboard") {
      show("queue");
      used = true;
    } else if (view === "queue") used = queueView.onKey(e);
  }
  if (used) e.preventDefault();
});

// -- boot ------------------------------------------------------------------------------------------

(async () => {
  try {
    await continueSession(await api("GET", "/api/v1/session"));
  } catch (err) {
    showLogin(err instanceof ApiError && err.status !== 401 ? err.message : "");
  }
})();
