// Words and times as the technician reads them: local time, short ids, plain state names.

export const STATE_WORDS = {
  waiting_to_send: "Waiting to send",
  refused: "Needs your attention",
  queued: "Waiting for the pharmacist",
  in_review: "Pharmacist is checking",
  approved: "Approved: ready to bag",
  handed_out: "Handed out",
  rejected: "Rejected: retake",
  discarded: "Discarded",
};

// A fill's priority (what `tp-site submit --priority` takes), as the pharmacist's queue names it.
export const PRIORITY_WORDS = { waiting: "Patient waiting", routine: "Routine", delivery: "Delivery" };

// Where an approved fill's counselling stands, in the technician's words.
export const COUNSELLING_WORDS = {
  due: "counselling due",
  counselled_video: "counselling done",
  counselled_phone: "counselling done",
  declined: "counselling declined",
};

/** The state as the work list shows it: an approved fill says whether its counselling is due or done. */
export function stateWords(state, counselling) {
  const words = STATE_WORDS[state] || state;
  if (state === "approved" && COUNSELLING_WORDS[counselling]) return `Approved, ${COUNSELLING_WORDS[counselling]}`;
  return words;
}

export function shortId(id) {
  return String(id || "").replaceAll("-", "").slice(0, 8);
}

/** A time as this computer's clock shows it: "14:05" today, "Tue 3 Dec 14:05" otherwise. */
export function localTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const now = new Date();
  const time = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  if (d.toDateString() === now.toDateString()) return time;
  return `${d.toLocaleDateString([], { weekday: "short", day: "numeric", month: "short" })} ${time}`;
}

export function bytes(n) {
  if (!Number.isFinite(n)) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

export function product(rx) {
  return [rx?.drug, rx?.strength].filter(Boolean).join(" ");
}
