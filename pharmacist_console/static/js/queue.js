// The queue as the console knows it: loaded once, then kept current by live events (versions decide).

import { get } from "./api.js";
import { PRIORITY_RANK } from "./format.js";
import { isVideo } from "./prefetch.js";

const OPEN = new Set(["queued", "in_review"]);
const PAGE_ROWS = 500; // rows per page of the queue; the console reads every page

/** "Joan M. Whitfield" -> "J. W.": the first and last name's initials, as the server's queue rows give. */
export function initials(name) {
  const parts = String(name || "").trim().split(/\s+/).filter((p) => /\p{L}/u.test(p));
  if (!parts.length) return null;
  const first = parts[0][0].toUpperCase();
  return parts.length === 1 ? `${first}.` : `${first}. ${parts[parts.length - 1][0].toUpperCase()}.`;
}

/** A queue row from a fill's detail (what a live arrival is fetched as). */
export function rowFromDetail(d) {
  const media = d.media || [];
  const videos = media.filter(isVideo).length;
  const rx = d.prescription || {};
  return {
    id: d.id, state: d.state, version: d.version, priority: d.priority, site: d.site,
    product_check: d.product_check, claimed_by: d.claimed_by, lease_expires_at: d.lease_expires_at,
    created_at: d.created_at, submitted_at: d.submitted_at, queued_at: d.queued_at,
    previous_fill_id: d.previous_fill_id, images: media.length - videos, videos,
    flags: d.flags || [], rx_number: rx.rx_number, drug: rx.drug, strength: rx.strength,
    patient_initials: d.patient_initials || initials(rx.patient_name), schedule: d.schedule || null,
  };
}

/** The PV1 rows of the queue: its first page, and the pages after `next`. */
export async function dataEntryRows(first, next, siteId = "") {
  const rows = [...first];
  const q = new URLSearchParams();
  if (siteId) q.set("site_id", siteId);
  while (next) {
    q.set("after", next);
    const page = await get(`/api/v1/queue/data-entry?${q}`);
    rows.push(...page.data_entry);
    next = page.next;
  }
  return rows;
}

export function compareRows(a, b) {
  const pa = PRIORITY_RANK[a.priority] ?? 9;
  const pb = PRIORITY_RANK[b.priority] ?? 9;
  if (pa !== pb) return pa - pb;
  const ta = a.submitted_at || "";
  const tb = b.submitted_at || "";
  if (ta !== tb) return ta < tb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/**
 * Emits "change" ({fillId, arrived}) whenever rows, counts or the oldest time change.
 * Events that arrive before the first load are kept and applied after it; an event older than
 * the row (by version) is ignored, so replays and races are harmless.
 */
export class QueueStore extends EventTarget {
  constructor({ details }) {
    super();
    this.details = details; // where fetched fill details are shared with the prefetcher
    this.rows = new Map();
    this.counts = { queued: 0, in_review: 0 };
    this.loaded = false;
    this.pending = [];
    this.inflight = new Map();
    this.filters = { siteId: "", priority: "" };
    this.skewMs = 0;
    this.generation = 0;
  }

  now() {
    return Date.now() + this.skewMs;
  }

  /** Forgets everything (signing out): the next load starts afresh. */
  reset() {
    this.generation += 1;
    this.rows = new Map();
    this.counts = { queued: 0, in_review: 0 };
    this.loaded = false;
    this.pending = [];
    this.inflight = new Map();
    this.emit(null, false);
  }

  setFilters(filters) {
    this.filters = { ...this.filters, ...filters };
    return this.load();
  }

  async load() {
    const gen = ++this.generation;
    const q = new URLSearchParams();
    if (this.filters.siteId) q.set("site_id", this.filters.siteId);
    if (this.filters.priority) q.set("priority", this.filters.priority);
    q.set("limit", String(PAGE_ROWS));
    // The whole queue, page by page: each page starts after the last row of the one before, so a fill
    // queued meanwhile is neither missed nor listed twice (and live events bring the rest).
    const data = await get(`/api/v1/queue?${q}`);
    const rows = [...data.fills];
    for (let next = data.next; next; ) {
      q.set("after", next);
      const page = await get(`/api/v1/queue?${q}`);
      if (gen !== this.generation) return;
      rows.push(...page.fills);
      next = page.next;
    }
    if (gen !== this.generation) return;
    if (data.now) this.skewMs = Date.parse(data.now) - Date.now();
    this.rows = new Map(rows.map((f) => [f.id, f]));
    // Counted from the rows read, which hold the whole queue (the first page's counts may be older).
    this.counts = { queued: 0, in_review: 0 };
    for (const r of rows) this.counts[r.state] = (this.counts[r.state] || 0) + 1;
    // The same queue's prescriptions waiting for PV1 (pv1.js), with their own later pages.
    this.dataEntry = await dataEntryRows(data.data_entry || [], data.data_entry_next, this.filters.siteId);
    if (gen !== this.generation) return;
    this.loaded = true;
    const pending = this.pending;
    this.pending = [];
    for (const ev of pending) this.apply(ev);
    this.emit(null, false);
  }

  emit(fillId, arrived) {
    this.dispatchEvent(new CustomEvent("change", { detail: { fillId, arrived } }));
  }

  matches(ev) {
    if (this.filters.siteId && String(ev.site_id ?? ev.site?.id) !== String(this.filters.siteId)) return false;
    if (this.filters.priority && ev.priority !== this.filters.priority) return false;
    return true;
  }

  /** Applies one live event. */
  handle(ev) {
    if (!ev.fill_id) return;
    if (!this.loaded) {
      this.pending.push(ev);
      return;
    }
    this.apply(ev);
  }

  apply(ev) {
    const waiting = this.inflight.get(ev.fill_id);
    if (waiting) {
      waiting.push(ev);
      return;
    }
    const row = this.rows.get(ev.fill_id);
    if (row) {
      if (ev.version <= row.version) return;
      this.bump(row.state, -1);
      if (OPEN.has(ev.state) && this.matches(ev)) {
        Object.assign(row, {
          state: ev.state, version: ev.version, priority: ev.priority, product_check: ev.product_check,
          claimed_by: ev.claimed_by,
        });
        if (Array.isArray(ev.flags)) row.flags = ev.flags;
        this.bump(row.state, +1);
      } else {
        this.rows.delete(ev.fill_id);
      }
      this.emit(ev.fill_id, false);
      return;
    }
    if (!OPEN.has(ev.state) || !this.matches(ev)) return;
    this.fetchRow(ev.fill_id);
  }

  bump(state, delta) {
    if (state in this.counts || delta > 0) this.counts[state] = Math.max(0, (this.counts[state] || 0) + delta);
  }

  async fetchRow(fillId) {
    this.inflight.set(fillId, []);
    const gen = this.generation;
    let detail = null;
    try {
      detail = await this.details.fetch(fillId);
    } catch {
      detail = null; // not visible (any more) or the network failed: the next event or reload fixes it
    }
    const later = this.inflight.get(fillId) || [];
    this.inflight.delete(fillId);
    if (gen !== this.generation) return;
    if (detail && OPEN.has(detail.state) && this.matches(detail) && !this.rows.has(fillId)) {
      this.rows.set(fillId, rowFromDetail(detail));
      this.bump(detail.state, +1);
      this.emit(fillId, true);
    }
    for (const ev of later) this.apply(ev);
  }

  /** Open rows in queue order: priority, then time of submission. */
  ordered() {
    return [...this.rows.values()].sort(compareRows);
  }

  /** The first fill waiting (not in review) in queue order, skipping the given ids. */
  nextWaiting(exclude = new Set()) {
    return this.ordered().find((r) => r.state === "queued" && !exclude.has(r.id)) || null;
  }

  /** When the oldest open fill was submitted (ISO), as the server counts it. */
  oldest() {
    let oldest = null;
    for (const r of this.rows.values()) if (r.submitted_at && (!oldest || r.submitted_at < oldest)) oldest = r.submitted_at;
    return oldest;
  }
}
