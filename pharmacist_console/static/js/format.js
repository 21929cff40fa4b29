// Formatting of times, ages, codes and labels for display. Nothing here logs or stores anything.

export const PRIORITY_LABELS = { waiting: "Patient waiting", routine: "Routine", delivery: "Delivery" };
export const PRIORITY_RANK = { waiting: 0, routine: 1, delivery: 2 };
export const STATE_LABELS = {
  draft: "Draft", queued: "Waiting", in_review: "In review", approved: "Approved", handed_out: "Handed out",
  rejected: "Rejected",
};
export const CHECK_LABELS = {
  match: "Match", mismatch: "Mismatch", expired: "Expired", unreadable: "Unreadable", none: "No scan",
};
export const CHECK_HINTS = {
  match: "The scanned barcode matches the prescribed NDC and is in date.",
  mismatch: "A scanned barcode identifies a different product than the prescribed NDC.",
  expired: "The matching stock is past its expiry date.",
  unreadable: "Barcodes were sent but none identified a product.",
  none: "No barcode was scanned or read from the stock bottle photo.",
};
export const KIND_LABELS = {
  stock_bottle: "Stock bottle", pills: "Counted pills", vial_label: "Labelled vial",
  measured_volume: "Measured volume", bottle_label: "Labelled bottle",
  final_package: "Final package", count_video: "Count video", other: "Other",
};

/** "45s", "12m 04s", "1h 03m", "2d 04h": an age that stays short in a table cell. */
export function formatAge(ms) {
  const sec = Math.max(0, Math.floor(ms / 1000));
  if (sec < 60) return `${sec}s`;
  const min = Math.floor(sec / 60);
  if (min < 60) return `${min}m ${String(sec % 60).padStart(2, "0")}s`;
  const hours = Math.floor(min / 60);
  if (hours < 48) return `${hours}h ${String(min % 60).padStart(2, "0")}m`;
  return `${Math.floor(hours / 24)}d ${String(hours % 24).padStart(2, "0")}h`;
}

/** Seconds as "1.4 min" or "2.1 h" for charts and tables of turnaround. */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "–";
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Number((seconds / 60).toFixed(1))} min`;
  return `${Number((seconds / 3600).toFixed(1))} h`;
}

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const dateTimeFmt = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
});

export function formatTime(iso) {
  return iso ? timeFmt.format(new Date(iso)) : "–";
}

/** Today's times as a clock time; other days with the date. */
export function formatWhen(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toDateString() === new Date().toDateString() ? timeFmt.format(d) : dateTimeFmt.format(d);
}

export function formatDateTime(iso) {
  return iso ? dateTimeFmt.format(new Date(iso)) : "–";
}

/** A date of birth as written (YYYY-MM-DD, no time zone shift) with the age in years. */
export function formatDob(isoDate) {
  if (!isoDate) return "–";
  const [y, m, d] = isoDate.split("-").map(Number);
  const now = new Date();
  let age = now.getFullYear() - y;
  if (now.getMonth() + 1 < m || (now.getMonth() + 1 === m && now.getDate() < d)) age -= 1;
  return `${isoDate} (${age} y)`;
}

/** 11 digits as 5-4-2, the billing form pharmacists read. */
export function formatNdc(ndc11) {
  if (!ndc11) return "–";
  const d = String(ndc11).replace(/\D/g, "");
  return d.length === 11 ? `${d.slice(0, 5)}-${d.slice(5, 9)}-${d.slice(9)}` : String(ndc11);
}

export function formatQuantity(q) {
  if (q === null || q === undefined) return "–";
  return Number.isInteger(q) ? String(q) : String(Number(q.toFixed(2)));
}

export function plural(n, one, many) {
  return `${n} ${n === 1 ? one : many}`;
}
