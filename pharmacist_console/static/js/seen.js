// What the pharmacist has seen of a fill: each medium's time on screen, the highest zoom reached and,
// for a video, the share of it played or scrubbed through. Approve waits until every medium was shown;
// the decision carries the record (`views_seen`), so "what did the pharmacist see?" has an answer.

import { KIND_LABELS } from "./format.js";
import { isVideo } from "./prefetch.js";

// A video counts as seen once this share of it was played or scrubbed through: the server's rule, read
// from GET /api/v1/reasons at sign-in (all of it until then).
let videoSeenFraction = 1;
export function setVideoSeenFraction(share) {
  if (typeof share === "number" && share > 0 && share <= 1) videoSeenFraction = share;
}
// Seeks this close together are a scrub: the frames between them passed on screen.
const SCRUB_GAP_S = 1.5;
const BUCKETS = 200;

// The strip's order, the same for every fill whatever order the server lists the media in.
const KIND_ORDER = [
  "stock_bottle", "pills", "vial_label", "measured_volume", "bottle_label", "final_package", "other",
];

function kindRank(m) {
  if (isVideo(m)) return KIND_ORDER.length + 1;
  const i = KIND_ORDER.indexOf(m.kind);
  return i < 0 ? KIND_ORDER.length : i;
}

/** The media of a fill in the order of the site's required views, then the rest, then videos. */
export function orderedMedia(media) {
  return (media || []).map((m, i) => [m, i]).sort((a, b) => kindRank(a[0]) - kindRank(b[0]) || a[1] - b[1]).map(([m]) => m);
}

class View {
  constructor(media) {
    this.media = media;
    this.ms = 0;
    this.since = null;
    this.shown = false;
    this.maxZoom = 1;
    // Stretches of a video played or scrubbed through, in seconds: kept as such because a video's
    // duration may be unknown when the first seeks come (a WebM whose header does not say it), and the
    // share is measured once it is.
    this.spans = [];
    this.duration = media.duration_seconds || 0;
    this.lastSeek = null;
  }

  seconds(now) {
    return (this.ms + (this.since === null ? 0 : now - this.since)) / 1000;
  }

  playedFraction() {
    const duration = this.duration;
    if (!(duration > 0)) return 0;
    const covered = new Uint8Array(BUCKETS);
    for (const [from, to] of this.spans) {
      const a = Math.max(0, Math.floor((from / duration) * BUCKETS));
      const b = Math.min(BUCKETS - 1, Math.ceil((to / duration) * BUCKETS) - 1);
      for (let i = a; i <= Math.max(a, b); i += 1) covered[i] = 1;
    }
    let n = 0;
    for (const c of covered) n += c;
    return n / BUCKETS;
  }

  cover(from, to) {
    if (!Number.isFinite(from) || !Number.isFinite(to)) return;
    this.spans.push([Math.min(from, to), Math.max(from, to)]);
  }

  get seen() {
    return isVideo(this.media) ? this.playedFraction() >= videoSeenFraction : this.shown;
  }
}

/** One fill's viewing record. `onChange` runs whenever what counts as seen changes. */
export class SeenTracker {
  constructor(media, onChange = () => {}) {
    this.views = new Map(media.map((m) => [m.id, new View(m)]));
    this.onChange = onChange;
    this.currentId = null;
    this.paused = false;
  }

  /** The medium now on screen (null: none); its photo is in the page once `placed` is true. */
  show(mediaId, { placed = false } = {}) {
    const now = performance.now();
    const prev = this.views.get(this.currentId);
    if (prev && prev.since !== null) {
      prev.ms += now - prev.since;
      prev.since = null;
    }
    this.currentId = mediaId;
    const v = this.views.get(mediaId);
    if (!v) return;
    if (!this.paused) v.since = now;
    if (placed) this.placed(mediaId);
  }

  /** The photo is decoded and drawn: it has been shown. */
  placed(mediaId) {
    const v = this.views.get(mediaId);
    if (!v || v.shown || isVideo(v.media)) return;
    v.shown = true;
    this.onChange();
  }

  /** The page is hidden or the fill is put away: the clock stops, and starts again on resume(). */
  pause() {
    const now = performance.now();
    for (const v of this.views.values()) {
      if (v.since !== null) {
        v.ms += now - v.since;
        v.since = null;
      }
    }
    this.paused = true;
  }

  resume() {
    this.paused = false;
    const v = this.views.get(this.currentId);
    if (v && v.since === null) v.since = performance.now();
  }

  /** Zoom relative to fitting the screen (1: fitted). */
  zoomed(mediaId, factor) {
    const v = this.views.get(mediaId);
    if (v && factor > v.maxZoom) v.maxZoom = factor;
  }

  /** Follows a video element: what it plays, and what is scrubbed through by small seeks. */
  watchVideo(mediaId, video) {
    const v = this.views.get(mediaId);
    if (!v) return;
    // What the status line shows: seen or not, and the share played in whole percent.
    const state = () => `${v.seen}:${Math.round(v.playedFraction() * 100)}`;
    const update = (fn) => {
      const was = state();
      fn();
      if (state() !== was) this.onChange();
    };
    const known = () => {
      if (Number.isFinite(video.duration) && video.duration > 0) v.duration = video.duration;
    };
    const duration = () => {
      known();
      return v.duration;
    };
    known();
    v.lastSeek = 0; // a video element starts at its beginning
    for (const name of ["loadedmetadata", "durationchange"]) video.addEventListener(name, () => update(known));
    video.addEventListener("timeupdate", () => update(() => {
      // While playing the position moves on its own; a scrub is measured from where it was left.
      if (!video.paused && !video.seeking) v.lastSeek = video.currentTime;
      const ranges = video.played;
      for (let i = 0; i < ranges.length; i += 1) v.cover(ranges.start(i), ranges.end(i));
    }));
    // Each seek, including one that interrupts the last (a drag fires many), is a step of the scrub.
    const step = (from, to) => {
      if (Math.abs(to - from) <= SCRUB_GAP_S) v.cover(from, to);
      else v.cover(to, to);
      v.lastSeek = to;
      // The end of a video is reached by scrubbing when the last step lands there.
      if (duration() > 0 && duration() - to < 0.05) v.cover(Math.max(0, to - 0.05), duration());
    };
    video.addEventListener("seeking", () => update(() => step(v.lastSeek, video.currentTime)));
    // The viewer's own steps (keys, buttons) say where each came from, however fast they follow.
    video.addEventListener("tp-seek", (e) => update(() => step(e.detail.from, e.detail.to)));
    video.addEventListener("ended", () => update(() => v.cover(Math.max(0, duration() - 0.05), duration())));
    video.addEventListener("play", () => { v.lastSeek = video.currentTime; });
  }

  isSeen(mediaId) {
    return Boolean(this.views.get(mediaId)?.seen);
  }

  /** Labels of what has not been seen yet, in strip order. */
  unseen() {
    const out = [];
    for (const v of this.views.values()) {
      if (v.seen) continue;
      const label = KIND_LABELS[v.media.kind] || v.media.kind;
      out.push(isVideo(v.media) ? `${label} (${Math.round(v.playedFraction() * 100)} % played)` : label);
    }
    return out;
  }

  get allSeen() {
    return [...this.views.values()].every((v) => v.seen);
  }

  /** The record sent with the decision: every medium that was on screen. */
  report() {
    const now = performance.now();
    const out = [];
    for (const v of this.views.values()) {
      const seconds = v.seconds(now);
      if (seconds <= 0 && !v.shown) continue;
      const entry = { media_id: v.media.id, seconds: Math.max(0.001, Math.round(seconds * 1000) / 1000), max_zoom: Math.round(v.maxZoom * 100) / 100 };
      if (isVideo(v.media)) entry.played_fraction = Math.round(v.playedFraction() * 1000) / 1000;
      out.push(entry);
    }
    return out;
  }
}
