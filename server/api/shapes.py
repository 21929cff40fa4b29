"""How the API answers: each record shaped as JSON.

The domain returns rows and records; handlers shape them here, so no domain module knows the wire format.
Times are left as datetimes and dates: the JSON encoder (server.api.responses) writes them as
`isoformat()` does, in C rather than one call each in Python.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.compliance.checks import CounsellingOptions
from server.compliance.controlled import decision_terms
from server.data_entry.rules import DATA_ENTRY, PRODUCT
from server.data_entry.service import DataEntryRecord, DataEntryRow
from server.data_entry.source import differences, entered_fields
from server.db.models import (
    Consultation,
    CounsellingRecord,
    Decision,
    Media,
    Prescription,
    PrescriptionVerification,
    Site,
    User,
)
from server.fills.flags import order_by_view
from server.fills.history import EarlierFill, FillHistory
from server.fills.queries import FillQueue, SiteFill, SummaryFill, SummarySite
from server.fills.records import FillRecord
from server.fills.rules import FillState
from server.security.step_up import Outlook


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def fill_summary(fill: SummaryFill, site: SummarySite) -> dict[str, Any]:
    """A queue row: enough to choose and route, nothing about the patient."""
    return {
        "id": fill.id,
        "state": fill.state,
        "version": fill.version,
        "priority": fill.priority,
        "site": {"id": site.id, "code": site.code, "name": site.name, "state": site.state},
        "product_check": fill.product_check,
        "claimed_by": fill.claimed_by,
        "lease_expires_at": fill.lease_expires_at,
        "created_at": fill.created_at,
        "submitted_at": fill.submitted_at,
        "queued_at": fill.queued_at,
        "decided_at": fill.decided_at,
        "previous_fill_id": fill.previous_fill_id,
        "flags": fill.flags or [],
        # not_required, due, counselled_video, counselled_phone or declined (None: made before it was kept)
        "counselling": fill.counselling,
        "handed_out_at": fill.handed_out_at,
    }


def initials(name: str) -> str:
    """A patient's initials for a queue row ("Jane Q. Patient" -> "J. P."): enough to tell two rows
    apart at a glance, not to identify anyone."""
    words = [w for w in name.replace(",", " ").split() if w[:1].isalpha()]
    if not words:
        return "?"
    picked = [words[0], words[-1]] if len(words) > 1 else words
    return " ".join(f"{w[0].upper()}." for w in picked)


def media_view(m: Media) -> dict[str, Any]:
    """A medium as shown with its fill, prescription or call; one whose files were removed under the
    retention rules keeps its facts, lists no variants and says when it was removed."""
    return {
        "id": m.id,
        "kind": m.kind,
        "sha256": m.sha256,
        "content_type": m.content_type,
        "bytes": m.bytes,
        "width": m.width,
        "height": m.height,
        "duration_seconds": m.duration_seconds,
        "variants": [] if m.removed_at else sorted(m.variants),
        "url": f"/api/v1/media/{m.id}",
        "quality": {k: v for k, v in m.quality.items() if k != "barcodes"},
        "removed_under_retention": m.removed_at,
    }


def prescription_view(
    rx: Prescription, *, fills_used: int | None = None, views: Sequence[str] | None = None
) -> dict[str, Any]:
    """The prescription in full: patient data, shown only to callers allowed to see the fill. With
    `fills_used` (submitted, not rejected), its refills used and the fills it has left; with `views`,
    the photos a fill of it needs (its dosage form under the site's rules), in the order taken."""
    refills: dict[str, Any] = {"refills_authorized": rx.refills_authorized}
    if fills_used is not None:
        refills["refills_used"] = max(0, fills_used - 1)
        refills["fills_remaining"] = max(0, 1 + rx.refills_authorized - fills_used)
    if views is not None:
        refills["required_media_kinds"] = list(views)
    return {
        "id": rx.id,
        "site_id": rx.site_id,
        "rx_number": rx.rx_number,
        "patient_name": rx.patient_name,
        "patient_dob": rx.patient_dob,
        "prescriber": rx.prescriber,
        "drug": rx.drug,
        "strength": rx.strength,
        "dosage_form": rx.dosage_form,
        "expected_ndc": rx.expected_ndc,
        "quantity": _num(rx.quantity),
        "days_supply": rx.days_supply,
        "directions": rx.directions,
        "dea_schedule": rx.dea_schedule,
        "fill_type": rx.fill_type,
        **refills,
        "reference_check": rx.reference_check,
        "created_at": rx.created_at,
        "source_kind": rx.source_kind,
        "verification_state": rx.verification_state,
        "version": rx.version,
    }


def verification_view(v: PrescriptionVerification, pharmacist_name: str) -> dict[str, Any]:
    return {
        "outcome": v.outcome,
        "prescription_version": v.prescription_version,
        "reason_codes": v.reason_codes,
        "note": v.note,
        "license": {"state": v.license_state, "number": v.license_number} if v.license_state else None,
        "decided_at": v.decided_at,
        "pharmacist": {"id": v.pharmacist_id, "name": pharmacist_name},
    }


def data_entry_view(record: DataEntryRecord, said: dict[str, Any] | None) -> dict[str, Any]:
    """A prescription's PV1 view: the entry beside its source (the message's fields with each
    difference named, or the pages of its paper original), the reference, the patient's other
    prescriptions, and what was decided and corrected before."""
    rx = record.prescription
    entered = prescription_view(rx)
    return {
        "kind": DATA_ENTRY,
        "prescription": entered,
        "site": site_view(record.site),
        "claimed_by": rx.claimed_by,
        "lease_expires_at": rx.lease_expires_at,
        "source": {
            "kind": rx.source_kind,
            "body": rx.source_body,
            "fields": said,
            "differences": differences(entered_fields(rx), said) if said is not None else [],
        },
        "original": [{**media_view(m), "page": m.page or 1} for m in record.pages],
        "reference": record.reference,
        "reference_loaded": record.reference_loaded,
        "other_prescriptions": [
            {
                "id": o.id,
                "rx_number": o.rx_number,
                "drug": o.drug,
                "strength": o.strength,
                "directions": o.directions,
                "verification_state": o.verification_state,
                "created_at": o.created_at,
            }
            for o in record.others
        ],
        "verifications": [verification_view(v, name) for v, name in record.verifications],
        "revisions": [
            {
                "version": r.version,
                "changes": r.changes,
                "previous_state": r.previous_state,
                "edited_at": r.edited_at,
                "edited_by": {"id": r.edited_by, "name": name},
            }
            for r, name in record.revisions
        ],
        "step_up": step_up_view(record.step_up) if record.step_up else None,
    }


def data_entry_row(row: DataEntryRow) -> dict[str, Any]:
    """A data-entry row of the pharmacist's queue: ids, state, what it is, the patient's initials."""
    rx = row.prescription
    return {
        "kind": DATA_ENTRY,
        "prescription_id": rx.id,
        "site_id": row.site.id,
        "site_code": row.site.code,
        "site_state": row.site.state,
        "verification_state": rx.verification_state,
        "version": rx.version,
        "claimed_by": rx.claimed_by,
        "lease_expires_at": rx.lease_expires_at,
        "awaiting_since": rx.awaiting_since,
        "source_kind": rx.source_kind,
        "rx_number": rx.rx_number,
        "drug": rx.drug,
        "strength": rx.strength,
        "patient_initials": initials(rx.patient_name),
    }


def decision_view(d: Decision, pharmacist_name: str | None) -> dict[str, Any]:
    return {
        "outcome": d.outcome,
        "reason_codes": d.reason_codes,
        "note": d.note,
        "acknowledgements": d.acknowledgements or [],
        "views_seen": d.views_seen or [],
        "confirmed_count": _num(d.confirmed_count),
        "license": {"state": d.license_state, "number": d.license_number} if d.license_state else None,
        "decided_at": d.decided_at,
        "pharmacist": {"id": d.pharmacist_id, "name": pharmacist_name},
    }


def detail_view(record: FillRecord) -> dict[str, Any]:
    """A fill in full: its prescription, evidence, decision and earlier attempts."""
    fill = record.fill
    decided = next((d for d in record.decisions if d.id == fill.id), None)
    earlier = [d for d in record.decisions if d.id != fill.id and d.state == FillState.REJECTED]
    out = fill_summary(fill, record.site)
    out.update(
        prescription=prescription_view(record.prescription),
        technician={"id": fill.technician_id, "name": record.technician_name},
        barcodes=fill.barcodes,
        counted_quantity=_num(fill.counted_quantity),
        product_check_detail=fill.product_check_detail,
        override_reason=fill.override_reason,
        overridden_checks=fill.overridden_checks or [],
        media=[media_view(m) for m in order_by_view(record.media, record.site.required_media_kinds or ())],
        decision=decision_view(decided.Decision, decided.display_name) if decided else None,
        earlier_rejections=[
            {
                "fill_id": e.id,
                "decided_at": e.Decision.decided_at,
                "reason_codes": e.Decision.reason_codes,
                "note": e.Decision.note,
            }
            for e in earlier
        ],
    )
    # A controlled substance: its schedule, and what that asks of a decision (count, no Undo).
    out["schedule"] = record.schedule
    out["controlled"] = decision_terms(record.schedule)
    out["counselling_record"] = counselling_view(record.counselling) if record.counselling else None
    options = record.counselling_options
    out["counselling_options"] = counselling_options_view(options) if options else None
    if record.history is not None:
        out["history"] = history_view(record.history)
    out["step_up"] = step_up_view(record.step_up) if record.step_up else None
    return out


def step_up_view(o: Outlook) -> dict[str, Any]:
    """What a decision on the fill (or a prescription's PV1: approve is verify, reject is return)
    would ask the reading pharmacist to prove, as the decision's 403 step_up_required would: the
    reasons for approving and for rejecting it (`approve`, `reject`), when the session's last proof
    grows too old so that any decision asks for one (`stale_at`, null: never), and the proofs that do
    (`methods`: none when the site wants a second factor not enrolled)."""
    return {"approve": o.approve, "reject": o.reject, "stale_at": o.stale_at, "methods": o.methods}


def counselling_view(r: CounsellingRecord) -> dict[str, Any]:
    """A fill's counselling record: how, by whom, when. Its note (what was said to the patient) stays in
    the record."""
    return {
        "kind": r.kind,
        "consultation_id": r.consultation_id,
        "pharmacist_id": r.pharmacist_id,
        "duration_seconds": r.duration_seconds,
        "declined_by": r.declined_by,
        "has_note": r.note is not None,
        "recorded_at": r.recorded_at,
        "recorded_by": r.recorded_by,
    }


def counselling_options_view(o: CounsellingOptions) -> dict[str, Any]:
    """What the rules in force let be recorded on a fill due counselling, besides a video call: the
    patient's decline and a telephone call, each allowed or not, with why not and the rule's source."""
    return {
        name: {"allowed": option.allowed, "why_not": option.why, "source": option.source}
        for name, option in (("decline", o.decline), ("phone", o.phone))
    }


def _earlier_view(e: EarlierFill) -> dict[str, Any]:
    return {
        "fill_id": e.fill_id,
        "rx_number": e.rx_number,
        "submitted_at": e.submitted_at,
        "decided_at": e.decided_at,
        "counted_quantity": _num(e.counted_quantity),
        "quantity": _num(e.quantity),
        "days_supply": e.days_supply,
        "state": e.state,
        "outcome": e.outcome,
        "pharmacist": {"id": e.pharmacist_id, "name": e.pharmacist_name} if e.pharmacist_id else None,
    }


def history_view(h: FillHistory) -> dict[str, Any]:
    """Earlier fills of the prescription and of the patient's drug, and the reference pills photo."""
    reference = None
    if (r := h.last_approved_pills) is not None:
        reference = {"fill_id": r.fill_id, "decided_at": r.decided_at, "media": media_view(r.media)}
    return {
        "same_prescription": [_earlier_view(e) for e in h.same_prescription],
        "same_patient_drug": [_earlier_view(e) for e in h.same_patient_drug],
        "last_approved_pills": reference,
    }


def queue_view(queue: FillQueue) -> dict[str, Any]:
    """The pharmacist's queue: its rows with their media counts, counts by state, the oldest wait."""
    fills = []
    for row in queue.rows:
        item = fill_summary(row.fill, row.site)
        item["images"], item["videos"] = row.images, row.videos
        rx_number, drug, strength, patient = row.rx
        item.update(rx_number=rx_number, drug=drug, strength=strength, patient_initials=initials(patient))
        item["schedule"] = row.schedule
        item["kind"] = PRODUCT
        fills.append(item)
    return {
        "fills": fills,
        "next": queue.next,
        "counts": queue.counts,
        "oldest_queued_at": queue.oldest_queued_at,
    }


def site_fill_view(row: SiteFill) -> dict[str, Any]:
    """A row of a site's recent fills, with its decision once there is one."""
    item = fill_summary(row.fill, row.site)
    item["decision"] = decision_view(row.decision, None) if row.decision else None
    return item


def consultation_view(c: Consultation, site: Site | None = None, *, with_note: bool) -> dict[str, Any]:
    """What the API returns about a consultation: ids, times and states; the outcome note (the one field
    about the patient) only `with_note`, for those who may read it."""
    body: dict[str, Any] = {
        "id": c.id,
        "site_id": c.site_id,
        "prescription_id": c.prescription_id,
        "fill_id": c.fill_id,
        "kind": c.kind,
        "state": c.state,
        "version": c.version,
        "requested_by": c.requested_by,
        "pharmacist_id": c.pharmacist_id,
        "requested_at": c.requested_at,
        "answered_at": c.answered_at,
        "connected_at": c.connected_at,
        "ended_at": c.ended_at,
        "duration_seconds": c.duration_seconds,
        "end_reason": c.end_reason,
        "ended_by": c.ended_by,
        "reconnections": c.reconnections,
        "recording_consent": c.recording_consent,
        "recording_consent_at": c.recording_consent_at,
        "pharmacist_consent_at": c.pharmacist_consent_at,
        # The delivered recording as media: its SHA-256 is the file the site sent, the url serves the
        # cleaned copy (remuxed without container metadata) and ?variant=poster its poster frame.
        "recording": media_view(c.recording) if c.recording is not None else None,
    }
    if with_note:
        body["outcome_note"] = c.outcome_note
    if site is not None:
        body["site"] = {"id": site.id, "code": site.code, "name": site.name, "state": site.state}
    return body


def site_view(site: Site) -> dict[str, Any]:
    return {
        "id": site.id,
        "code": site.code,
        "name": site.name,
        "state": site.state,
        "status": site.status,
        "require_second_factor": site.require_second_factor,
        "required_media_kinds": site.required_media_kinds,
        "requires_pv1": site.requires_pv1,
    }


def user_view(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "site_id": user.site_id,
        "active": user.active,
        "licenses": [
            {"state": lic.state, "number": lic.number, "expires_on": lic.expires_on} for lic in user.licenses
        ],
    }
