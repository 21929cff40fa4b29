// The evidence viewer: a photo with zoom and pan (wheel, drag, keys) and full resolution on demand,
// or the count video with seeking and frame steps.

import { h, fill } from "./dom.js";
import { KIND_LABELS } from "./format.js";
import { isVideo, mediaUrl, viewVariant } from "./prefetch.js";

const ZOOM_STEP = 1.25;
const PAN_STEP = 80;
const MAX_FULL_RES_ZOOM = 8; // eight screen pixels per photo pixel is plenty for a pill imprint
const FRAME = 1 / 30; // the count video's frame rate is not in the API; 30 fps is the phone default

export class Viewer {
  constructor(stage, { images, zoomLabel, info, tools }) {
    this.stage = stage;
    // Told what is on screen: a photo placed (id), the zoom reached on it relative to fitting the screen.
    this.onPlaced = () => {};
    this.onZoom = () => {};
    this.comparing = false;
    this.images = images;
    this.zoomLabel = zoomLabel;
    this.info = info;
    this.tools = tools;
    this.layer = h("div", { class: "stage-layer" });
    stage.prepend(this.layer);
    this.media = null;
    this.img = null;
    this.video = null;
    this.full = false;
    this.loadingFull = false;
    this.t = { s: 1, x: 0, y: 0 };
    this.fitMode = true;
    this.drag = null;
    this.token = 0;

    stage.addEventListener("wheel", (e) => this.onWheel(e), { passive: false });
    stage.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    stage.addEventListener("pointermove", (e) => this.onPointerMove(e));
    stage.addEventListener("pointerup", (e) => this.onPointerUp(e));
    stage.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    stage.addEventListener("dblclick", (e) => this.onDoubleClick(e));
    new ResizeObserver(() => {
      if (this.img && this.fitMode) this.fit();
    }).observe(stage);
    tools.addEventListener("click", (e) => {
      const button = e.target.closest("[data-zoom]");
      if (!button) return;
      const action = button.dataset.zoom;
      if (action === "in") this.zoomBy(ZOOM_STEP);
      else if (action === "out") this.zoomBy(1 / ZOOM_STEP);
      else if (action === "fit") this.fit();
      else if (action === "full") this.loadFull();
    });
  }

  clear() {
    this.token += 1;
    this.media = null;
    this.img = null;
    if (this.video) this.video.pause();
    this.video = null;
    this.comparing = false;
    this.layer.replaceChildren();
    fill(this.info);
    this.stage.classList.remove("is-video", "is-zoomed", "is-compare");
    this.zoomLabel.textContent = "";
  }

  /** Shows a photo; `img` is a decoded element from the cache, or null to load it here. */
  showImage(media, img) {
    this.clear();
    const token = this.token;
    this.media = media;
    this.full = false;
    this.wantFull = false;
    this.fitMode = true;
    this.tools.hidden = false;
    this.setInfo();
    if (img) {
      this.place(img);
      return Promise.resolve(img);
    }
    const spinner = h("div", { class: "stage-loading" }, "Loading photo…");
    this.layer.append(spinner);
    return this.images.load(mediaUrl(media, viewVariant(media))).then((loaded) => {
      if (token === this.token) this.place(loaded);
      return loaded;
    });
  }

  place(img) {
    img.classList.add("stage-img");
    img.alt = KIND_LABELS[this.media.kind] || this.media.kind;
    this.img = img;
    this.layer.replaceChildren(img);
    // A photo no larger than the preview size is its own preview: nothing more to fetch.
    if (!this.media.width || img.naturalWidth >= this.media.width) this.full = true;
    this.fit();
    this.setInfo();
    this.onPlaced(this.media.id);
    if (this.wantFull) this.loadFull();
  }

  setInfo() {
    const m = this.media;
    const parts = [h("strong", {}, KIND_LABELS[m.kind] || m.kind)];
    if (m.width && m.height) parts.push(h("span", {}, `${m.width} × ${m.height}`));
    if (m.duration_seconds) parts.push(h("span", {}, `${m.duration_seconds.toFixed(1)} s`));
    if (this.img || !isVideo(m)) {
      const preview = this.img ? `Preview ${this.img.naturalWidth} px · F for full` : "Preview";
      parts.push(h("span", { class: this.full ? "res-full" : "res-preview" },
        this.loadingFull ? "Loading full resolution…" : this.full ? "Full resolution" : preview));
    }
    fill(this.info, ...parts);
  }

  showVideo(media) {
    this.clear();
    this.media = media;
    this.tools.hidden = true;
    this.stage.classList.add("is-video");
    const variants = media.variants || [];
    const src = mediaUrl(media, variants.includes("full") ? "full" : "original");
    const video = h("video", {
      class: "stage-video", controls: true, preload: "auto", playsinline: true, src,
      poster: variants.includes("poster") ? mediaUrl(media, "poster") : null,
      "aria-label": "Count video",
    });
    video.muted = true;
    this.video = video;
    const time = h("span", { class: "video-time" }, "0.0 s");
    const button = (label, title, fn) => h("button", { type: "button", class: "btn dark small", title, onclick: fn }, label);
    const play = button("Play", "Play or pause (Space)", () => this.togglePlay());
    const speed = h("select", { class: "video-speed", "aria-label": "Playback speed" },
      ...[0.25, 0.5, 1, 2].map((r) => h("option", { value: r, selected: r === 1 }, `${r}×`)));
    speed.addEventListener("change", () => { video.playbackRate = Number(speed.value); });
    const bar = h("div", { class: "video-bar" },
      button("−1 s", "Back 1 s ([)", () => this.seekBy(-1)),
      button("◀ frame", "Step back (,)", () => this.step(-1)),
      play,
      button("frame ▶", "Step forward (.)", () => this.step(1)),
      button("+1 s", "Forward 1 s (])", () => this.seekBy(1)),
      speed, time);
    const update = () => {
      time.textContent = `${video.currentTime.toFixed(2)} / ${Number.isFinite(video.duration) ? video.duration.toFixed(2) : "–"} s`;
      play.textContent = video.paused ? "Play" : "Pause";
    };
    for (const ev of ["timeupdate", "seeked", "play", "pause", "loadedmetadata"]) video.addEventListener(ev, update);
    this.layer.append(h("div", { class: "video-wrap" }, video, bar));
    this.setInfo();
    return video;
  }

  /**
   * Two photos side by side, each fitted: this fill's and an earlier one's (`left`, `right` are
   * {media, caption}). Resolves once both are in the page.
   */
  showCompare(left, right) {
    this.clear();
    const token = this.token;
    this.comparing = true;
    this.tools.hidden = true;
    this.stage.classList.add("is-compare");
    fill(this.info, h("strong", {}, "Compare"), h("span", {}, "H to go back"));
    const pane = (side, which) => {
      const slot = h("div", { class: "compare-img" }, h("div", { class: "stage-loading" }, "Loading photo…"));
      const el = h("figure", { class: "compare-pane", "data-side": which }, slot, h("figcaption", {}, side.caption));
      if (side.media.removed_under_retention) {
        // The earlier fill's photo is past its retention period: its record stays, its image does not.
        slot.replaceChildren(h("div", { class: "stage-loading" },
          `Removed under retention on ${side.media.removed_under_retention.slice(0, 10)}`));
        return [el, Promise.resolve()];
      }
      const ready = this.images.load(mediaUrl(side.media, viewVariant(side.media))).then((img) => {
        if (token !== this.token) return;
        // A decoded element can sit in one place only: the cached one may be the main viewer's.
        const copy = img.cloneNode();
        copy.alt = side.caption;
        copy.classList.remove("stage-img");
        copy.removeAttribute("style");
        slot.replaceChildren(copy);
      });
      return [el, ready];
    };
    const [a, aReady] = pane(left, "this");
    const [b, bReady] = pane(right, "earlier");
    this.layer.append(h("div", { class: "compare" }, a, b));
    return Promise.all([aReady, bReady]).then(() => {
      if (token === this.token) this.onPlaced(left.media.id);
    });
  }

  togglePlay() {
    if (!this.video) return;
    if (this.video.paused) this.video.play().catch(() => {});
    else this.video.pause();
  }

  seekBy(seconds) {
    if (!this.video) return;
    const v = this.video;
    const from = v.currentTime;
    const to = Math.max(0, Math.min(Number.isFinite(v.duration) ? v.duration : Infinity, from + seconds));
    v.currentTime = to;
    // Said at once, with where the seek came from: the element's own "seeking" events come later, and
    // two quick presses are both seen at the second one's position.
    v.dispatchEvent(new CustomEvent("tp-seek", { detail: { from, to } }));
  }

  step(frames) {
    if (!this.video) return;
    this.video.pause();
    this.seekBy(frames * FRAME);
  }

  // -- geometry ---------------------------------------------------------------------------------

  naturalSize() {
    return { w: this.img.naturalWidth || 1, h: this.img.naturalHeight || 1 };
  }

  fitScale() {
    const { w, h: ih } = this.naturalSize();
    const r = this.stage.getBoundingClientRect();
    return Math.min(r.width / w, r.height / ih) || 1;
  }

  fit() {
    if (!this.img) return;
    const { w, h: ih } = this.naturalSize();
    const r = this.stage.getBoundingClientRect();
    const s = this.fitScale();
    this.t = { s, x: (r.width - w * s) / 2, y: (r.height - ih * s) / 2 };
    this.fitMode = true;
    this.apply();
  }

  limits() {
    const fitS = this.fitScale();
    const fullW = this.media.width || this.naturalSize().w;
    return { min: Math.min(fitS * 0.5, 1), max: (MAX_FULL_RES_ZOOM * fullW) / this.naturalSize().w };
  }

  zoomBy(factor, cx, cy) {
    if (!this.img) return;
    const r = this.stage.getBoundingClientRect();
    const px = cx ?? r.width / 2;
    const py = cy ?? r.height / 2;
    const { min, max } = this.limits();
    const s = Math.max(min, Math.min(max, this.t.s * factor));
    const k = s / this.t.s;
    this.t = { s, x: px - (px - this.t.x) * k, y: py - (py - this.t.y) * k };
    this.fitMode = false;
    this.apply();
    // Past one screen pixel per preview pixel the preview runs out of detail: fetch the original.
    if (s > 1.01 && !this.full) this.loadFull();
  }

  panBy(dx, dy) {
    if (!this.img) return;
    this.t = { ...this.t, x: this.t.x + dx, y: this.t.y + dy };
    this.fitMode = false;
    this.apply();
  }

  apply() {
    const { s, x, y } = this.t;
    // CSSOM writes are allowed by the CSP (only style attributes in markup are not).
    this.img.style.transform = `translate(${x}px, ${y}px) scale(${s})`;
    const fullW = this.media.width || this.naturalSize().w;
    const pct = Math.round(((s * this.naturalSize().w) / fullW) * 100);
    this.zoomLabel.textContent = this.fitMode ? `Fit · ${pct}%` : `${pct}%`;
    this.stage.classList.toggle("is-zoomed", !this.fitMode);
    const fitS = this.fitScale();
    if (fitS > 0) this.onZoom(this.media.id, s / fitS);
  }

  /** Swaps in the original photo, keeping what is on screen where it is. */
  loadFull() {
    const m = this.media;
    if (m && !this.img && !this.video) {
      this.wantFull = true; // asked for before the preview arrived: do it once it is placed
      return;
    }
    this.wantFull = false;
    if (!m || !this.img || this.full || this.loadingFull || !(m.variants || []).includes("full")) return;
    const token = this.token;
    this.loadingFull = true;
    this.setInfo();
    this.images.load(mediaUrl(m, "full")).then(
      (img) => {
        this.loadingFull = false;
        if (token !== this.token) return;
        const k = this.naturalSize().w / (img.naturalWidth || 1);
        img.classList.add("stage-img");
        img.alt = this.img.alt;
        this.img = img;
        this.layer.replaceChildren(img);
        this.full = true;
        this.t = { ...this.t, s: this.t.s * k };
        this.apply();
        this.setInfo();
      },
      () => {
        this.loadingFull = false;
        if (token === this.token) this.setInfo();
      },
    );
  }

  // -- input --------------------------------------------------------------------------------------

  onWheel(e) {
    if (!this.img) return;
    e.preventDefault();
    const r = this.stage.getBoundingClientRect();
    const unit = e.deltaMode === 1 ? 0.05 : e.deltaMode === 2 ? 1 : 0.0015;
    this.zoomBy(Math.exp(-e.deltaY * unit), e.clientX - r.left, e.clientY - r.top);
  }

  onPointerDown(e) {
    if (!this.img || e.button !== 0 || e.target.closest(".stage-tools")) return;
    this.drag = { id: e.pointerId, x: e.clientX, y: e.clientY };
    this.stage.setPointerCapture(e.pointerId);
    this.stage.classList.add("is-dragging");
  }

  onPointerMove(e) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    const dx = e.clientX - this.drag.x;
    const dy = e.clientY - this.drag.y;
    this.drag.x = e.clientX;
    this.drag.y = e.clientY;
    this.panBy(dx, dy);
  }

  onPointerUp(e) {
    if (!this.drag || e.pointerId !== this.drag.id) return;
    this.drag = null;
    this.stage.classList.remove("is-dragging");
  }

  onDoubleClick(e) {
    if (!this.img || e.target.closest(".stage-tools")) return;
    if (!this.fitMode) {
      this.fit();
      return;
    }
    const r = this.stage.getBoundingClientRect();
    const fullW = this.media.width || this.naturalSize().w;
    const target = fullW / this.naturalSize().w; // one screen pixel per original photo pixel
    this.zoomBy(target / this.t.s, e.clientX - r.left, e.clientY - r.top);
  }

  /** Viewer keys; returns true when the key was used. */
  onKey(e) {
    if (this.video) {
      if (e.key === " ") this.togglePlay();
      else if (e.key === ",") this.step(-1);
      else if (e.key === ".") this.step(1);
      else if (e.key === "[") this.seekBy(-1);
      else if (e.key === "]") this.seekBy(1);
      else return false;
      return true;
    }
    if (!this.img) return false;
    if (e.shiftKey && e.key.startsWith("Arrow")) {
      const d = { ArrowLeft: [PAN_STEP, 0], ArrowRight: [-PAN_STEP, 0], ArrowUp: [0, PAN_STEP], ArrowDown: [0, -PAN_STEP] }[e.key];
      this.panBy(d[0], d[1]);
      return true;
    }
    if (e.key === "+" || e.key === "=") this.zoomBy(ZOOM_STEP);
    else if (e.key === "-" || e.key === "_") this.zoomBy(1 / ZOOM_STEP);
    else if (e.key === "0") this.fit();
    else if (e.key === "f" || e.key === "F") this.loadFull();
    else return false;
    return true;
  }
}
