// The station's live feed: one websocket to the station, reconnecting; the station pushes status,
// progress, fill states and decisions (ids and states only).

import { csrfToken } from "./api.js";

const MAX_BACKOFF_MS = 5000;

/** Emits "message" (one message from the station) and "link" ({up}) when the page loses the station. */
export class StationFeed extends EventTarget {
  constructor() {
    super();
    this.ws = null;
    this.backoff = 300;
    this.stopped = false;
  }

  start() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(`${scheme}//${location.host}/api/events?csrf=${encodeURIComponent(csrfToken)}`);
    this.ws = ws;
    ws.addEventListener("open", () => {
      this.backoff = 300;
      this.dispatchEvent(new CustomEvent("link", { detail: { up: true } }));
    });
    ws.addEventListener("message", (msg) => {
      let data;
      try {
        data = JSON.parse(msg.data);
      } catch {
        return;
      }
      this.dispatchEvent(new CustomEvent("message", { detail: data }));
    });
    ws.addEventListener("close", () => {
      if (this.ws !== ws || this.stopped) return;
      this.dispatchEvent(new CustomEvent("link", { detail: { up: false } }));
      setTimeout(() => this.start(), this.backoff);
      this.backoff = Math.min(MAX_BACKOFF_MS, this.backoff * 2);
    });
  }
}
