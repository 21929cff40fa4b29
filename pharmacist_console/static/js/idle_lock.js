// The idle lock: after the configured time without a key press or pointer use the console hides every
// patient detail, puts the claimed fill back, and asks for the password or the second factor. The
// server keeps its own count (it refuses an idle session with 423 until it is proved again): this page
// tells it of the pharmacist's activity, at most every ACTIVITY_EVERY_MS.

import { post } from "./api.js";

const ACTIVITY_EVERY_MS = 20_000;
const EVENTS = ["keydown", "pointerdown", "pointermove", "wheel", "touchstart"];

export class IdleLock {
  /** onLock: hide and release (before the prompt); onUnlock: show again; onSignOut: the pharmacist
   * chose to sign out instead. identity: second_factor.js. */
  constructor({ app, identity, onLock, onUnlock, onSignOut }) {
    this.app = app;
    this.identity = identity;
    this.onLock = onLock;
    this.onUnlock = onUnlock;
    this.onSignOut = onSignOut;
    this.idleMs = 0;
    this.lastActive = 0;
    this.lastTold = 0;
    this.timer = null;
    this.locked = false;
    this.methods = ["password"];
    this.active = () => this.activity();
  }

  /** Starts counting for a signed-in session (seconds from the server; 0: never locks). */
  start({ idleSeconds, methods }) {
    this.stop();
    this.idleMs = idleSeconds * 1000;
    this.methods = ["password", ...methods.filter((m) => m !== "password")];
    this.lastActive = this.lastTold = Date.now();
    if (!this.idleMs) return;
    for (const name of EVENTS) document.addEventListener(name, this.active, { capture: true, passive: true });
    this.schedule();
  }

  stop() {
    clearTimeout(this.timer);
    for (const name of EVENTS) document.removeEventListener(name, this.active, { capture: true });
    this.idleMs = 0;
  }

  activity() {
    if (this.locked) return;
    const now = Date.now();
    this.lastActive = now;
    if (now - this.lastTold >= ACTIVITY_EVERY_MS) {
      this.lastTold = now;
      post("/api/v1/session/activity").catch(() => {});
    }
  }

  schedule() {
    clearTimeout(this.timer);
    if (!this.idleMs || this.locked) return;
    const left = this.lastActive + this.idleMs - Date.now();
    this.timer = setTimeout(() => (Date.now() - this.lastActive >= this.idleMs ? this.lock() : this.schedule()), Math.max(250, left));
  }

  /** Locks now (the time ran out, or the server answered 423); resolves once unlocked. */
  async lock() {
    if (this.locked) return;
    this.locked = true;
    clearTimeout(this.timer);
    this.app.dataset.locked = "";
    this.app.querySelector("main").inert = true;
    await this.onLock();
    const unlocked = await this.identity.prove({
      title: "Console locked",
      intro: "The console locked after a while without use. Unlock it to continue.",
      methods: this.methods,
      cancellable: false,
      cancelLabel: "Sign out",
    });
    this.locked = false;
    delete this.app.dataset.locked;
    this.app.querySelector("main").inert = false;
    if (!unlocked) {
      this.stop();
      this.onSignOut();
      return;
    }
    this.lastActive = this.lastTold = Date.now();
    this.schedule();
    this.onUnlock();
  }
}
