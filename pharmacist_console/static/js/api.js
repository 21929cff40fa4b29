// The one way the console talks HTTP to the server: JSON in and out, the CSRF header on every change.

export class ApiError extends Error {
  constructor(status, code, message, detail = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
  }
}

let csrfToken = null;
let unauthorizedHandler = null;
let lockedHandler = null;

export function setCsrfToken(token) {
  csrfToken = token;
}

/** Called once per 401, so the app can show the sign-in form again. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** Called on a 423: the server found the session idle, so the app can lock (idle_lock.js). */
export function onLocked(handler) {
  lockedHandler = handler;
}

/** Calls the API; resolves with the parsed JSON body or rejects with an ApiError (status 0: no answer). */
export async function api(method, path, body, { signal, keepalive = false } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let payload;
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, body: payload, credentials: "same-origin", cache: "no-store", signal, keepalive,
      redirect: "error",
    });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "network", "The server could not be reached. Check the connection.");
  }
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
    // Errors come as {error: code, message, detail}; a few name the code apart: {error, code, missing}.
    const d = data || {};
    const err = new ApiError(
      resp.status,
      d.code || d.error || `http_${resp.status}`,
      d.message || (d.code && typeof d.error === "string" ? d.error : null) || `The server answered ${resp.status}.`,
      d.detail || (d.missing ? { missing: d.missing } : {}),
    );
    const retry = Number(resp.headers.get("Retry-After"));
    if (Number.isFinite(retry) && retry > 0) err.retryAfter = retry;
    if (resp.status === 401 && unauthorizedHandler && !(method === "POST" && path.startsWith("/api/v1/session"))) {
      unauthorizedHandler(err);
    }
    if (resp.status === 423 && lockedHandler) lockedHandler(err);
    throw err;
  }
  return data;
}

export const get = (path, opts) => api("GET", path, undefined, opts);

/** Every row of a paged list (`key` in each page), following its `next` cursors. */
export async function getAll(path, key) {
  const first = await get(path);
  const rows = [...first[key]];
  const sep = path.includes("?") ? "&" : "?";
  for (let next = first.next; next; ) {
    const page = await get(`${path}${sep}after=${encodeURIComponent(next)}`);
    rows.push(...page[key]);
    next = page.next;
  }
  return { ...first, [key]: rows, next: null };
}
export const post = (path, body, opts) => api("POST", path, body ?? {}, opts);
