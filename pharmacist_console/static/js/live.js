// The live connection: one websocket, catch-up by cursor after any drop, never polling.

const PING_MS = 25000;
const MAX_BACKOFF_MS = 10000;
const CLOSE_LAGGING = 4000;

/**
 * Emits "hello" ({cursor, resumed}), "event" (one journal event), "reload" ({reason}) and "status" ({state}).
 * The cursor is the id of the last event seen; a reconnect asks the server for what came after it. When
 * those events are no longer kept (or are too many to replay) the server says "reload" instead: whoever
 * listens reads its state afresh, and the feed goes on from the live point.
 */
export class LiveFeed extends EventTarget {
  constructor() {
    super();
    this.cursor = null;
    this.ws = null;
    this.state = "off";
    this.backoff = 500;
    this.failures = 0;
    this.stopped = true;
    this.pingTimer = null;
    this.retryTimer = null;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.cursor = null;
    this.setState("off");
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state } }));
  }

  connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.cursor === null ? "" : `?cursor=${encodeURIComponent(this.cursor)}`;
    this.setState(this.cursor === null ? "connecting" : "reconnecting");
    const ws = new WebSocket(`${scheme}//${location.host}/api/v1/ws${query}`);
    this.ws = ws;
    ws.addEventListener("message", (msg) => this.onMessage(msg));
    ws.addEventListener("close", (ev) => this.onClose(ws, ev));
  }

  onMessage(msg) {
    let data;
    try {
      data = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (data.type === "hello") {
      const resumed = this.cursor !== null;
      if (!resumed) this.cursor = data.cursor;
      this.backoff = 500;
      this.failures = 0;
      this.setState("live");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_MS);
      this.dispatchEvent(new CustomEvent("hello", { detail: { cursor: data.cursor, resumed } }));
      return;
    }
    if (data.type === "reload") {
      this.cursor = data.cursor;
      this.dispatchEvent(new CustomEvent("reload", { detail: { reason: data.reason } }));
      return;
    }
    if (typeof data.id !== "number") {
      // pong, errors and signalling carry no id: signalling goes to whoever listens (consult.js).
      if (typeof data.type === "string" && data.type.startsWith("consult.")) this.dispatchEvent(new CustomEvent("message", { detail: data }));
      return;
    }
    if (this.cursor !== null && data.id <= this.cursor) return;
    this.cursor = data.id;
    this.dispatchEvent(new CustomEvent("event", { detail: data }));
  }

  onClose(ws, ev) {
    if (ws !== this.ws) return;
    clearInterval(this.pingTimer);
    this.ws = null;
    if (this.stopped) return;
    this.failures += 1;
    this.setState("reconnecting");
    // 4000: the server dropped a client that fell behind; it has kept our place, so come back at once.
    const delay = ev.code === CLOSE_LAGGING ? 0 : this.backoff;
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    if (this.failures >= 3) this.dispatchEvent(new CustomEvent("trouble", { detail: { failures: this.failures } }));
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }
}
