// The one way the page talks to the station: JSON in and out, the page's CSRF token on every call.

export class StationError extends Error {
  constructor(status, code, message, detail = {}) {
    super(message);
    this.name = "StationError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

/** The token the station wrote into this page's HTML. */
export const csrfToken = document.querySelector('meta[name="tp-csrf"]')?.getAttribute("content") || "";

async function answer(resp) {
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!resp.ok) {
    const d = data || {};
    throw new StationError(resp.status, d.error || `http_${resp.status}`, d.message || `The station answered ${resp.status}.`, d.detail || {});
  }
  return data;
}

async function send(method, path, { body, type } = {}) {
  const headers = { Accept: "application/json", "X-CSRF-Token": csrfToken };
  if (type) headers["Content-Type"] = type;
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store", redirect: "error" });
  } catch {
    throw new StationError(0, "station_down", "The station program is not answering. Is it still running on this computer?");
  }
  return answer(resp);
}

/** A JSON call to the station. */
export function api(method, path, body) {
  return send(method, path, body === undefined ? {} : { body: JSON.stringify(body), type: "application/json" });
}

/** A file (photo or video) sent as it is. */
export function upload(path, blob) {
  return send("POST", path, { body: blob, type: blob.type || "application/octet-stream" });
}

/** A URL an <img> or <video> can load (it cannot send a header, so the token goes in the query). */
export function withToken(path) {
  return `${path}${path.includes("?") ? "&" : "?"}csrf=${encodeURIComponent(csrfToken)}`;
}
