// The live queue table: rows in queue order, ages that tick, counts and the oldest wait.

import { h, fill } from "./dom.js";
import { formatAge, plural } from "./format.js";
import { flagBadge } from "./flags.js";
import { checkBadge, priorityBadge, scheduleBadge } from "./verify_view.js";

const ARRIVAL_MS = 4000;
const OLDEST_WARN_MIN = 15;
const OLDEST_BAD_MIN = 30;

export class QueueView {
  constructor({ store, els, onOpen }) {
    this.store = store;
    this.els = els;
    this.onOpen = onOpen;
    this.me = null;
    this.selectedId = null;
    this.arrivals = new Map();
    store.addEventListener("change", (e) => {
      if (e.detail.arrived && e.detail.fillId) this.arrivals.set(e.detail.fillId, Date.now());
      this.render();
    });
    els.body.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-id]");
      if (tr) this.onOpen(tr.dataset.id);
    });
    setInterval(() => this.tick(), 1000);
  }

  setUser(me) {
    this.me = me;
  }

  statusCell(row) {
    if (row.state === "in_review") {
      const mine = this.me && row.claimed_by === this.me.id;
      return h("span", { class: ["status", mine ? "status-mine" : "status-other"] },
        mine ? "In review · you" : "In review · another pharmacist");
    }
    return h("span", { class: "status status-waiting" }, "Waiting");
  }

  render() {
    const rows = this.store.ordered();
    const now = Date.now();
    for (const [id, at] of this.arrivals) if (now - at > ARRIVAL_MS) this.arrivals.delete(id);
    if (this.selectedId && !this.store.rows.has(this.selectedId)) this.selectedId = null;
    fill(this.els.body, rows.map((r) => {
      const media = [plural(r.images ?? 0, "photo", "photos")];
      if (r.videos) media.push(plural(r.videos, "video", "videos"));
      return h("tr", {
        "data-id": r.id, "data-state": r.state,
        class: [r.state === "in_review" ? "is-claimed" : null, this.arrivals.has(r.id) ? "arrived" : null,
          r.id === this.selectedId ? "is-selected" : null],
        "aria-selected": r.id === this.selectedId ? "true" : "false",
      },
      h("td", {}, priorityBadge(r.priority)),
      h("td", {}, h("div", { class: "rx-cell" }, h("span", { class: "rx-number mono" }, r.rx_number ? `Rx ${r.rx_number}` : "–"),
        h("span", { class: "rx-drug" }, [r.drug, r.strength].filter(Boolean).join(" ") || "–", r.schedule ? " " : null, scheduleBadge(r.schedule)))),
      h("td", { class: "initials" }, r.patient_initials || "–"),
      h("td", {}, h("div", { class: "site-cell" }, h("span", { class: "site-code" }, r.site.code), h("span", { class: "site-name" }, r.site.name))),
      h("td", {}, h("span", { class: "us-state" }, r.site.state)),
      h("td", { class: "num age", "data-since": r.submitted_at || "" }, this.age(r.submitted_at)),
      h("td", {}, checkBadge(r.product_check)),
      h("td", { class: "flags-cell" }, h("div", { class: "flag-list" },
        (r.flags || []).filter((f) => f.code !== "product_check").map((f) => flagBadge(f)))),
      h("td", { class: "evidence-cell" }, media.join(" · ")),
      h("td", {}, this.statusCell(r), r.previous_fill_id ? h("span", { class: "badge badge-resub" }, "Resubmitted") : null));
    }));
    this.els.empty.hidden = rows.length > 0;
    this.els.countQueued.textContent = String(this.store.counts.queued || 0);
    this.els.countInReview.textContent = String(this.store.counts.in_review || 0);
    this.tick();
  }

  age(iso) {
    return iso ? formatAge(this.store.now() - Date.parse(iso)) : "–";
  }

  tick() {
    for (const cell of this.els.body.querySelectorAll("td[data-since]")) {
      cell.textContent = this.age(cell.dataset.since);
    }
    const oldest = this.store.oldest();
    const ms = oldest ? this.store.now() - Date.parse(oldest) : 0;
    const text = oldest ? formatAge(ms) : "–";
    const min = ms / 60000;
    const level = !oldest ? "none" : min >= OLDEST_BAD_MIN ? "bad" : min >= OLDEST_WARN_MIN ? "warn" : "ok";
    // Shown twice: in the queue, and in the top bar so it stays in sight while verifying.
    this.els.oldest.textContent = text;
    this.els.oldestBox.dataset.level = level;
    this.els.pressureOldest.textContent = text;
    this.els.pressureWaiting.textContent = String(this.store.counts.queued || 0);
    this.els.pressure.dataset.level = level;
    // The tab's title carries the count, so a waiting queue shows in a background tab too.
    const waiting = this.store.counts.queued || 0;
    document.title = `${waiting ? `(${waiting}) ` : ""}Verification console · Telepharmacy`;
  }

  /** Keys in the queue; returns true when used. */
  onKey(e) {
    const rows = this.store.ordered();
    const idx = rows.findIndex((r) => r.id === this.selectedId);
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    if (key === "ArrowDown" || key === "j") this.select(rows[Math.min(rows.length - 1, idx + 1)]);
    else if (key === "ArrowUp" || key === "k") this.select(rows[Math.max(0, idx - 1)]);
    else if (key === "Enter" && idx >= 0) this.onOpen(rows[idx].id);
    else return false;
    return true;
  }

  select(row) {
    if (!row) return;
    this.selectedId = row.id;
    for (const tr of this.els.body.children) {
      const on = tr.dataset.id === row.id;
      tr.classList.toggle("is-selected", on);
      tr.setAttribute("aria-selected", on ? "true" : "false");
      if (on) tr.scrollIntoView({ block: "nearest" });
    }
  }
}
