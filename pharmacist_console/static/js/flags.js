// The server's flags on a fill, as words: a short badge for the queue, a sentence for the verification
// view. Flags carry ids and numbers only; the labels come from /api/v1/reasons where it has them.

import { h } from "./dom.js";
import { CHECK_LABELS, KIND_LABELS, formatDateTime, formatQuantity } from "./format.js";

export const FLAG_LABELS = {
  product_check: "Product check",
  quantity_mismatch: "Count differs",
  override: "Technician override",
  reused_photo: "Reused photo",
  refill_too_soon: "Refill too soon",
};

// Used until /api/v1/reasons lists its own.
export const ACK_REASONS = [
  { code: "verified_visually", label: "Verified visually on the photos" },
  { code: "partial_fill_documented", label: "Partial fill documented" },
  { code: "manufacturer_change_confirmed", label: "Manufacturer change confirmed" },
  { code: "early_refill_authorized", label: "Early refill authorized" },
  { code: "photo_confirmed_current", label: "Photo confirmed as current" },
  { code: "other", label: "Other (note required)" },
];

// The site's check codes (server/evidence/photo_quality.py, remote_site_client/checks.py) as words.
export const CHECK_NAMES = {
  blurred: "blurred", blurry: "blurred", glare: "glare", too_bright: "too bright", too_dark: "too dark",
  too_small: "too small", unreadable: "cannot be opened", expired: "expired stock", no_barcode: "no barcode",
  wrong_ndc: "barcode of another NDC", barcode_unreadable: "barcode unreadable",
};

let labels = { ...FLAG_LABELS };

export function setFlagLabels(fromServer) {
  labels = { ...FLAG_LABELS, ...(fromServer || {}) };
}

export function flagLabel(code) {
  return labels[code] || code;
}

function kindLabel(kind) {
  return KIND_LABELS[kind] || kind;
}

/** "blurry on Counted pills, too dark on Labelled vial" */
export function describeChecks(checks) {
  return (checks || []).map((c) => `${CHECK_NAMES[c.check] || c.check} on ${kindLabel(c.kind)}`).join(", ");
}

/** A few words for the queue's Flags column. */
export function shortFlag(f) {
  switch (f.code) {
    case "product_check": return CHECK_LABELS[f.result] || f.result;
    case "quantity_mismatch": return f.counted === null || f.counted === undefined ? "No count" : `Count ${formatQuantity(f.counted)}/${formatQuantity(f.prescribed)}`;
    case "override": return "Override";
    case "reused_photo": return "Reused photo";
    case "refill_too_soon": return "Too soon";
    default: return flagLabel(f.code);
  }
}

/** A sentence that says what the flag is about. */
export function describeFlag(f) {
  switch (f.code) {
    case "product_check":
      return `${CHECK_LABELS[f.result] || f.result}: ${{
        mismatch: "a scanned barcode names another product than the prescribed NDC.",
        expired: "the matching stock is past its expiry date.",
        unreadable: "no barcode sent identified a product.",
        none: "no barcode was scanned or read from the stock bottle photo.",
      }[f.result] || "the barcode check did not pass."}`;
    case "quantity_mismatch":
      return f.counted === null || f.counted === undefined
        ? `No count was entered; ${formatQuantity(f.prescribed)} prescribed.`
        : `Counted ${formatQuantity(f.counted)}, prescribed ${formatQuantity(f.prescribed)}.`;
    case "override":
      return `The technician sent past the photo checks: ${describeChecks(f.checks) || "which checks is not recorded"}.`;
    case "reused_photo": {
      // A photo may match several photos of one other fill (sent there as two views): said once.
      const lines = new Map();
      for (const p of f.photos || []) {
        const head = `${kindLabel(p.kind)} is ${p.match === "identical" ? "identical to" : "very like"}`;
        const other = String(p.other_fill_id).slice(0, 8);
        const line = lines.get(`${head} ${other}`) || { head, other, n: 0 };
        line.n += 1;
        lines.set(`${head} ${other}`, line);
      }
      return [...lines.values()]
        .map(({ head, other, n }) => `${head} ${n === 1 ? "a photo" : `${n} photos`} of fill ${other}`)
        .join("; ") + ".";
    }
    case "refill_too_soon":
      return `${Number(f.elapsed_days).toFixed(1)} of ${f.days_supply} days' supply elapsed since the last approval (${formatDateTime(f.previous_approved_at)}); the threshold is ${f.threshold_percent} %.`;
    default:
      return "";
  }
}

/** Severity for the badge colour. */
function tone(f) {
  if (f.code === "product_check" && (f.result === "unreadable" || f.result === "none")) return "warn";
  if (f.code === "override") return "warn";
  return "bad";
}

export function flagBadge(f, { long = false } = {}) {
  return h("span", { class: ["badge", "flag", `flag-${tone(f)}`], "data-flag": f.code, title: describeFlag(f) },
    long ? flagLabel(f.code) : shortFlag(f));
}
