// Fetching ahead: fill details and decoded images, so the next fill shows the moment it is opened.

import { get } from "./api.js";

const MAX_IMAGES = 48;
const MAX_DETAILS = 24;

export function mediaUrl(media, variant) {
  return `${media.url}?variant=${encodeURIComponent(variant)}`;
}

/** The variant to show a photo at in the viewer: the 2048 px one when there is one. */
export function viewVariant(media) {
  const v = media.variants || [];
  if (v.includes("2048")) return "2048";
  if (v.includes("full")) return "full";
  return v[0] || "2048";
}

/** The variant for a thumbnail: the small one, the video poster, or whatever there is. */
export function thumbVariant(media) {
  const v = media.variants || [];
  for (const name of ["320", "poster", "2048", "full"]) if (v.includes(name)) return name;
  return v[0] || "320";
}

/** Whether a medium is a video: the server's VIDEO_KINDS, which is the count video alone. */
export function isVideo(media) {
  return media.kind === "count_video";
}

/** The photos and video posters of a fill that the view draws at once: the first photo large, all thumbnails. */
export function imagesToShow(detail) {
  const media = detail.media || [];
  const urls = media.map((m) => mediaUrl(m, thumbVariant(m)));
  const first = media.find((m) => !isVideo(m));
  if (first) urls.push(mediaUrl(first, viewVariant(first)));
  return urls;
}

/** Every image of a fill worth decoding ahead: all large photos too, so arrow keys switch instantly. */
export function imagesToWarm(detail) {
  const media = detail.media || [];
  const urls = imagesToShow(detail);
  for (const m of media) {
    if (!isVideo(m)) urls.push(mediaUrl(m, viewVariant(m)));
    else if ((m.variants || []).includes("poster")) urls.push(mediaUrl(m, "poster"));
  }
  return [...new Set(urls)];
}

/** Fill details by id; one request per id at a time. */
export class DetailCache {
  constructor() {
    this.map = new Map();
  }

  fetch(fillId) {
    const hit = this.map.get(fillId);
    if (hit && hit.promise) return hit.promise;
    const promise = get(`/api/v1/fills/${encodeURIComponent(fillId)}`).then(
      (detail) => {
        this.put(detail);
        return detail;
      },
      (err) => {
        this.map.delete(fillId);
        throw err;
      },
    );
    this.map.set(fillId, { promise, detail: hit?.detail ?? null });
    this.trim();
    return promise;
  }

  put(detail) {
    this.map.set(detail.id, { promise: Promise.resolve(detail), detail });
    this.trim();
  }

  peek(fillId) {
    return this.map.get(fillId)?.detail ?? null;
  }

  forget(fillId) {
    this.map.delete(fillId);
  }

  trim() {
    while (this.map.size > MAX_DETAILS) this.map.delete(this.map.keys().next().value);
  }
}

/**
 * Decoded images by URL. decode() resolves once the pixels are ready to paint, so an element
 * taken from here and put in the page shows in the next frame without any decoding work.
 */
export class ImageCache {
  constructor() {
    this.map = new Map();
  }

  load(url) {
    const hit = this.map.get(url);
    if (hit) {
      this.map.delete(url);
      this.map.set(url, hit); // most recently used last
      return hit.promise;
    }
    const img = new Image();
    img.decoding = "async";
    img.draggable = false;
    img.alt = "";
    img.src = url;
    const promise = img.decode().then(() => img);
    const entry = { img, promise, ready: false };
    promise.then(() => { entry.ready = true; }, () => this.map.delete(url));
    this.map.set(url, entry);
    while (this.map.size > MAX_IMAGES) this.map.delete(this.map.keys().next().value);
    return promise;
  }

  ready(url) {
    return Boolean(this.map.get(url)?.ready);
  }

  /** The decoded element if ready; a fresh one otherwise (it decodes while shown). */
  element(url) {
    const entry = this.map.get(url);
    if (entry?.ready) return entry.img;
    return null;
  }
}

/** Warms the fill that would come next: its detail and every image it will show. */
export class Prefetcher extends EventTarget {
  constructor(details, images) {
    super();
    this.details = details;
    this.images = images;
    this.target = null;
    this.readyId = null;
  }

  warm(fillId) {
    if (!fillId) {
      this.target = null;
      this.setReady(null);
      return;
    }
    if (this.target === fillId) return;
    this.target = fillId;
    this.setReady(null);
    this.details
      .fetch(fillId)
      .then((detail) => Promise.all(imagesToWarm(detail).map((u) => this.images.load(u))))
      .then(() => {
        if (this.target === fillId) this.setReady(fillId);
      })
      .catch(() => {
        if (this.target === fillId) this.target = null; // gone or unreachable; the next change retries
      });
  }

  setReady(fillId) {
    this.readyId = fillId;
    // Exposed for the benchmark and tests: an opaque id, never patient data.
    if (fillId) document.body.dataset.prefetched = fillId;
    else delete document.body.dataset.prefetched;
  }
}
