"""The whole URL space in one table: method, path, handler, who may call it, what it does."""

from __future__ import annotations

from aiohttp import web

from pharmacist_console import assets as console
from server.api import (
    auth,
    consultations,
    dashboard,
    data_entry,
    fills,
    media,
    pharmacy_systems,
    records,
    reference,
    reports,
    system,
)
from server.api.table import ANY_USER, PUBLIC, Handler, Route
from server.consultations.service import RECORDING_KIND
from server.fills.rules import MEDIA_KINDS
from server.media.tus.endpoint import TusEndpoint
from server.security.principal import Role

TECH = frozenset({Role.TECHNICIAN})
INTEGRATION = frozenset({Role.INTEGRATION})
FHIR_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/fhir+json": {"schema": {"type": "object"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}
PHARM = frozenset({Role.PHARMACIST})
ADMIN = frozenset({Role.ADMIN})
TUS = web.AppKey("tus", TusEndpoint)


def _tus(name: str) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        method: Handler = getattr(request.app[TUS], name)
        return await method(request)

    handler.__name__ = f"tus_{name}"
    return handler


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", system.healthz, PUBLIC, "Liveness and database reachability", "operations"),
    Route("GET", "/metrics", system.metrics, PUBLIC, "Prometheus metrics (no patient data)", "operations"),
    Route(
        "GET",
        "/api/v1/openapi.json",
        system.openapi,
        PUBLIC,
        "This API described in OpenAPI 3.1",
        "operations",
    ),
    Route(
        "POST",
        "/api/v1/session",
        auth.login,
        PUBLIC,
        "Sign in to the console (sets the session cookie)",
        "session",
    ),
    Route("GET", "/api/v1/session", auth.me, ANY_USER, "Who is signed in, and the CSRF token", "session"),
    Route("DELETE", "/api/v1/session", auth.logout, ANY_USER, "Sign out", "session"),
    Route(
        "GET",
        "/api/v1/ws",
        system.websocket,
        ANY_USER,
        "Live events (websocket); ?cursor= catches up",
        "realtime",
    ),
    Route(
        "GET", "/api/v1/ice-servers", system.ice_servers, ANY_USER, "STUN/TURN settings for video", "realtime"
    ),
    Route(
        "GET",
        "/api/v1/reasons",
        fills.reasons,
        ANY_USER,
        "Reason codes for rejecting and for acknowledging flags",
        "verification",
    ),
    Route("GET", "/api/v1/sites", records.list_sites, ANY_USER, "Sites the caller may see", "directory"),
    Route("POST", "/api/v1/sites", records.create_site, ADMIN, "Create a site", "directory"),
    Route("GET", "/api/v1/users", records.list_users, ADMIN, "Users and their licenses", "directory"),
    Route("POST", "/api/v1/users", records.create_user, ADMIN, "Create a user", "directory"),
    Route(
        "POST",
        "/api/v1/users/{username}/licenses",
        records.add_license,
        ADMIN,
        "Add or renew a pharmacist's state license",
        "directory",
    ),
    Route(
        "POST",
        "/api/v1/device-tokens",
        records.issue_device_token,
        ADMIN,
        "Issue a device token for a technician's site device",
        "directory",
    ),
    Route(
        "DELETE",
        r"/api/v1/device-tokens/{token_id:\d+}",
        records.revoke_device_token,
        ADMIN,
        "Revoke a device token",
        "directory",
    ),
    Route(
        "GET",
        "/api/v1/prescriptions",
        records.list_prescriptions,
        TECH | ADMIN,
        "Prescriptions of the site",
        "prescriptions",
    ),
    Route(
        "POST",
        "/api/v1/prescriptions",
        records.create_prescription,
        TECH | ADMIN,
        "Enter a prescription",
        "prescriptions",
    ),
    Route(
        "GET",
        r"/api/v1/prescriptions/{prescription_id:\d+}",
        data_entry.get_prescription,
        ANY_USER,
        "One prescription as data-entry verification (PV1) shows it: the entry beside its source",
        "prescriptions",
    ),
    Route(
        "PATCH",
        r"/api/v1/prescriptions/{prescription_id:\d+}",
        data_entry.correct_prescription,
        TECH,
        "Correct a prescription's entry (a new version; it waits for PV1 again)",
        "prescriptions",
    ),
    Route(
        "POST",
        r"/api/v1/prescriptions/{prescription_id:\d+}/claim",
        data_entry.claim,
        PHARM,
        "Claim a prescription's data-entry verification (a lease)",
        "verification",
    ),
    Route(
        "POST",
        r"/api/v1/prescriptions/{prescription_id:\d+}/heartbeat",
        data_entry.heartbeat,
        PHARM,
        "Renew the lease on a prescription's data-entry verification",
        "verification",
    ),
    Route(
        "POST",
        r"/api/v1/prescriptions/{prescription_id:\d+}/release",
        data_entry.release,
        PHARM,
        "Put a claimed prescription back in the queue",
        "verification",
    ),
    Route(
        "POST",
        r"/api/v1/prescriptions/{prescription_id:\d+}/verification",
        data_entry.verify,
        PHARM,
        "Verify a prescription's data entry, or return it to the site with reasons",
        "verification",
    ),
    Route("GET", "/api/v1/fills", fills.list_fills, TECH | ADMIN, "The site's fills, newest first", "fills"),
    Route(
        "POST",
        "/api/v1/fills",
        fills.create_fill,
        TECH,
        "Create a draft fill (idempotent on its id)",
        "fills",
    ),
    Route("GET", "/api/v1/fills/{fill_id}", fills.get_fill, ANY_USER, "One fill with its evidence", "fills"),
    Route(
        "GET",
        "/api/v1/reference/ndc/{ndc}",
        reference.lookup_ndc,
        ANY_USER,
        "What the drug reference (FDA NDC Directory) says an NDC is",
        "reference",
    ),
    Route(
        "POST",
        "/api/v1/fills/{fill_id}/submit",
        fills.submit_fill,
        TECH,
        "Submit a fill for verification",
        "fills",
    ),
    Route(
        "POST",
        "/api/v1/fhir",
        pharmacy_systems.fhir_base,
        INTEGRATION,
        "FHIR R4: a Bundle of MedicationRequests (with Patient, Practitioner, Medication) from the site's "
        "pharmacy system",
        "prescriptions",
        FHIR_BODY,
    ),
    Route(
        "POST",
        "/api/v1/fhir/MedicationRequest",
        pharmacy_systems.fhir_medication_request,
        INTEGRATION,
        "FHIR R4: one MedicationRequest with its contained Patient, Practitioner and Medication",
        "prescriptions",
        FHIR_BODY,
    ),
    Route(
        "POST",
        "/api/v1/ncpdp/NewRx",
        pharmacy_systems.ncpdp_new_rx,
        INTEGRATION,
        "NCPDP SCRIPT: a NewRx message (XML) from the site's pharmacy system",
        "prescriptions",
        {"requestBody": {"required": True, "content": {"application/xml": {"schema": {"type": "string"}}}}},
    ),
    Route(
        "GET",
        "/api/v1/queue",
        fills.queue,
        PHARM | ADMIN,
        "Open fills in queue order, and prescriptions waiting for data-entry verification (PV1)",
        "verification",
    ),
    Route(
        "POST",
        "/api/v1/queue/claim-next",
        fills.claim_next,
        PHARM,
        "Claim the next fill in queue order",
        "verification",
    ),
    Route(
        "POST",
        "/api/v1/fills/{fill_id}/claim",
        fills.claim,
        PHARM,
        "Claim one fill (a lease)",
        "verification",
    ),
    Route(
        "POST", "/api/v1/fills/{fill_id}/heartbeat", fills.heartbeat, PHARM, "Renew the lease", "verification"
    ),
    Route(
        "POST",
        "/api/v1/fills/{fill_id}/release",
        fills.release,
        PHARM,
        "Put a claimed fill back",
        "verification",
    ),
    Route(
        "POST", "/api/v1/fills/{fill_id}/decision", fills.decide, PHARM, "Approve or reject", "verification"
    ),
    Route(
        "GET",
        r"/api/v1/media/{media_id:\d+}",
        media.get_media,
        ANY_USER,
        "A stored image or video variant (Range supported)",
        "media",
    ),
    Route("OPTIONS", "/api/v1/uploads", _tus("options"), PUBLIC, "tus discovery", "media"),
    Route(
        "POST",
        "/api/v1/uploads",
        _tus("create"),
        TECH,
        "tus: create an upload",
        "media",
        doc={
            "description": "Upload-Metadata names the file (sha256, filename) and what it belongs to: "
            f"fill_id with a kind ({', '.join(MEDIA_KINDS)}), or consultation_id with kind "
            f"{RECORDING_KIND} (an mp4, only from the consultation's site after the patient's consent "
            "was recorded, once), or prescription_id with kind rx_image (the paper original: JPEG, PNG, "
            "a multi-page TIFF or a PDF, stored page by page; Tp-Pages says how many). The request that "
            "completes it answers with Tp-Media-Id."
        },
    ),
    Route("HEAD", "/api/v1/uploads/{upload_id}", _tus("head"), TECH, "tus: upload offset", "media"),
    Route("PATCH", "/api/v1/uploads/{upload_id}", _tus("patch"), TECH, "tus: append bytes", "media"),
    Route("DELETE", "/api/v1/uploads/{upload_id}", _tus("delete"), TECH, "tus: terminate an upload", "media"),
    Route(
        "GET",
        "/api/v1/dashboard",
        dashboard.figures,
        PHARM | ADMIN,
        "Turnaround p50/p90 by site and pharmacist, rejections by reason, queue depth (?days=)",
        "reports",
    ),
    Route("GET", "/api/v1/audit/verify", reports.audit_verify, ADMIN, "Verify the audit hash chain", "audit"),
    Route(
        "GET",
        "/api/v1/audit/access",
        reports.access_report,
        ADMIN,
        "Who read a patient's records, as CSV (?patient_name=&patient_dob=&from=&to=)",
        "audit",
    ),
    Route(
        "GET",
        "/api/v1/audit/export",
        reports.audit_export,
        ADMIN,
        "Audit events as CSV (?from=&to=)",
        "audit",
    ),
    Route(
        "POST",
        "/api/v1/consultations",
        consultations.request_consultation,
        TECH,
        "Ask a pharmacist for a video consultation (counselling or a live look)",
        "consultations",
    ),
    Route(
        "POST",
        "/api/v1/consultations/invite",
        consultations.invite,
        PHARM,
        "Ask the site of a fill for counselling or a live look at the tray (linked to the fill)",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/answer",
        consultations.answer,
        TECH,
        "The invited site's kiosk answers a pharmacist's invitation",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/consent",
        consultations.consent,
        TECH,
        "The site records the patient's consent to recording (before it records)",
        "consultations",
    ),
    Route(
        "GET",
        r"/api/v1/consultations/{consultation_id:\d+}/recording",
        consultations.get_recording,
        ANY_USER,
        "The call's recording (mp4; ?variant=poster), for the two parties and admins; Range supported",
        "consultations",
    ),
    Route(
        "GET",
        "/api/v1/consultations",
        consultations.list_consultations,
        ANY_USER,
        "Open consultations the caller may see",
        "consultations",
    ),
    Route(
        "GET",
        r"/api/v1/consultations/{consultation_id:\d+}",
        consultations.get_consultation,
        ANY_USER,
        "One consultation record",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/accept",
        consultations.accept,
        PHARM,
        "Answer a consultation (licensed in the site's state; one pharmacist wins)",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/connected",
        consultations.connected,
        TECH | PHARM,
        "Report that media flows (stamps the connection time once)",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/reconnected",
        consultations.reconnected,
        TECH,
        "The site re-established the media path inside the call (counted, audited)",
        "consultations",
    ),
    Route(
        "POST",
        r"/api/v1/consultations/{consultation_id:\d+}/end",
        consultations.end,
        ANY_USER,
        "Hang up or cancel; the pharmacist may add an outcome note",
        "consultations",
    ),
    Route("GET", "/", console.index, PUBLIC, "The pharmacist console", "console"),
    Route("GET", "/console/{path:.+}", console.static, PUBLIC, "Console assets", "console"),
)
