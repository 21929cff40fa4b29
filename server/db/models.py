"""Typed SQLAlchemy models. Names follow the pharmacy: site, prescription, fill, media, decision."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    text,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Stores aware UTC datetimes; SQLite hands back naive ones, so make them aware again."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime refused: use aware UTC datetimes")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class ChainJSON(TypeDecorator[dict[str, Any]]):
    """JSON written as the audit chain hashes it (keys sorted, no spaces), so that verifying the chain
    hashes the stored text as it is instead of parsing and writing it again."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:
        def process(value: Any) -> str | None:
            if value is None:
                return None
            return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)

        return process


# BigInteger ids on PostgreSQL, INTEGER PRIMARY KEY (rowid) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    state: Mapped[str] = mapped_column(String(2), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # The site's policy: its fills are decided only by a pharmacist who proved a second factor.
    require_second_factor: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Media kinds a fill from this site must carry before it can be submitted; None means the default.
    required_media_kinds: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # A prescription entered or received here waits for a pharmacist's data-entry verification (PV1)
    # before any fill is made for it.
    requires_pv1: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"), nullable=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    licenses: Mapped[list[License]] = relationship(back_populates="user", lazy="selectin")


class License(Base):
    __tablename__ = "licenses"
    __table_args__ = (UniqueConstraint("user_id", "state"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    state: Mapped[str] = mapped_column(String(2))
    number: Mapped[str] = mapped_column(String(64))
    expires_on: Mapped[dt.date] = mapped_column(Date)
    user: Mapped[User] = relationship(back_populates="licenses")


class DeviceToken(Base):
    __tablename__ = "device_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    label: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class ConsoleSession(Base):
    __tablename__ = "console_sessions"
    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column()
    # "ready"; "second_factor" between the password and the second factor; "enrol" while policy
    # requires a second factor the user has not enrolled yet (server/security/identity.py).
    stage: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    # The last proof of identity (password, second factor, unlock): a decision after a while asks again.
    proved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # When a second factor was last proved in this session (sign-in or step-up).
    factor_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # A step-up proved for the next decision that needs one, which uses it up.
    stepped_up_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # The pharmacist's last action; past the idle time the session is locked until proved again.
    active_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # A pending WebAuthn challenge or TOTP enrolment secret (JSON), for this session only.
    challenge: Mapped[str | None] = mapped_column(Text, nullable=True)


class SecondFactor(Base):
    """A pharmacist's or admin's authenticator: a TOTP app or a WebAuthn security key or passkey."""

    __tablename__ = "second_factors"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "totp" or "webauthn"
    label: Mapped[str] = mapped_column(String(200))
    # TOTP: the shared secret (base32) and the last time step used, so a code is never taken twice.
    totp_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # WebAuthn: the credential's id and public key (base64url) and its signature counter.
    credential_id: Mapped[str | None] = mapped_column(String(1400), unique=True, nullable=True)
    public_key: Mapped[str | None] = mapped_column(Text, nullable=True)
    sign_count: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class RecoveryCode(Base):
    """One-time codes shown once at enrolment, for a lost authenticator; only their SHA-256 is kept."""

    __tablename__ = "recovery_codes"
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)


class SignInFailure(Base):
    """Wrong passwords counted per account (`account:<username>`) and per client address
    (`address:<ip>`), shared by every server instance; forgotten a while after the last one."""

    __tablename__ = "sign_in_failures"
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column()
    last_at: Mapped[dt.datetime] = mapped_column(index=True)


# Prescriptions waiting for data-entry verification (PV1) or in a pharmacist's hands.
OPEN_PRESCRIPTION = text("verification_state IN ('awaiting_verification', 'in_review')")


class Prescription(Base):
    __tablename__ = "prescriptions"
    __table_args__ = (
        UniqueConstraint("site_id", "rx_number"),
        # A message received twice is one prescription: the sender's identifier is unique per site.
        UniqueConstraint("site_id", "source_kind", "source_id", name="uq_prescriptions_source"),
        # The PV1 queue: a few among a year's prescriptions (decision 0022).
        Index(
            "ix_prescriptions_open",
            "awaiting_since",
            "id",
            postgresql_where=OPEN_PRESCRIPTION,
            sqlite_where=OPEN_PRESCRIPTION,
        ),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    rx_number: Mapped[str] = mapped_column(String(32))
    patient_name: Mapped[str] = mapped_column(String(200))
    patient_dob: Mapped[dt.date] = mapped_column(Date)
    prescriber: Mapped[str] = mapped_column(String(200))
    drug: Mapped[str] = mapped_column(String(200))
    strength: Mapped[str] = mapped_column(String(64))
    dosage_form: Mapped[str] = mapped_column(String(64))
    # NDC in the 11-digit 5-4-2 billing form, digits only.
    expected_ndc: Mapped[str] = mapped_column(String(11))
    quantity: Mapped[Decimal] = mapped_column(Numeric(10, 2))
    days_supply: Mapped[int] = mapped_column(Integer)
    directions: Mapped[str] = mapped_column(Text)
    dea_schedule: Mapped[str | None] = mapped_column(String(4), nullable=True)
    fill_type: Mapped[str] = mapped_column(String(8))
    # Where the prescription came from: "entered" at the counter, or a message from the pharmacy
    # system ("fhir", "ncpdp") kept verbatim, identified by the sender's own prescription identifier.
    source_kind: Mapped[str] = mapped_column(String(16), default="entered", server_default="entered")
    source_id: Mapped[str | None] = mapped_column(String(300), nullable=True)
    source_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    source_digest: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Refills the prescriber authorised beyond the first fill (0: one fill in all).
    refills_authorized: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # How the entered drug, strength, form and schedule compare with the drug reference at intake:
    # {"status": "no_reference" | "agrees" | "flagged" | ..., "filled_in": [...], "flags": [...]}.
    reference_check: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict, server_default="{}")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # Data-entry verification (server/data_entry/rules.py): "not_required" where the site does without
    # it (and for prescriptions from before it existed), else awaiting_verification, in_review,
    # verified or returned. Changed like a fill's state: conditionally, on the version.
    verification_state: Mapped[str] = mapped_column(
        String(24), default="not_required", server_default="not_required", index=True
    )
    version: Mapped[int] = mapped_column(default=1, server_default="1")
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # When it last began to wait for verification: the data-entry queue's age.
    awaiting_since: Mapped[dt.datetime | None] = mapped_column(nullable=True)


# A patient's name and a drug as the same patient's prescriptions are matched (server/fills/history.py):
# without case, as one technician types "JANE Q. PATIENT" and another "Jane Q. Patient" (ASCII letters
# only on SQLite). Earlier fills of the same patient and drug are found through their index.
patient_key = func.lower(Prescription.patient_name)
drug_key = func.lower(Prescription.drug)
Index("ix_prescriptions_patient_drug", patient_key, Prescription.patient_dob, drug_key)


class PrescriptionVerification(Base):
    """A pharmacist's data-entry verification (PV1) of one version of a prescription: verified, or
    returned to the site with reasons. A prescription returned and corrected has several."""

    __tablename__ = "prescription_verifications"
    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id"), index=True)
    # The prescription's version the pharmacist saw: at most one verification per version.
    prescription_version: Mapped[int] = mapped_column()
    pharmacist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(16))
    reason_codes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The licence the pharmacist verified under: the one for the state of the prescription's site.
    license_state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    license_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    __table_args__ = (UniqueConstraint("prescription_id", "prescription_version"),)


class PrescriptionRevision(Base):
    """One correction of a prescription at the site: each changed field's old and new value. Patient
    data, so kept here beside the prescription; the audit event names the revision and its digest."""

    __tablename__ = "prescription_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id"), index=True)
    # The version the edit made.
    version: Mapped[int] = mapped_column()
    edited_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    # {field: {"old": value, "new": value}}, values as the API shows them.
    changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    # What PV1 said of it before the edit (a verified prescription edited goes back to PV1).
    previous_state: Mapped[str] = mapped_column(String(24))
    edited_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


# The fills waiting for a pharmacist or in one's hands: a few hundred among a year's millions.
OPEN_FILL = text("state IN ('queued', 'in_review')")
# A fill's place in the queue by its priority, as server.fills.lifecycle.PRIORITY_RANK writes it (the
# priorities of server.fills.rules.PRIORITIES, in order; tests/unit/test_queue_order.py holds them
# together). Indexed over the open fills with the rest of the queue's order, so a page of the queue and
# claim-next read the first rows in order instead of sorting every open fill.
QUEUE_RANK = "(CASE priority WHEN 'waiting' THEN 0 WHEN 'routine' THEN 1 WHEN 'delivery' THEN 2 ELSE 3 END)"


class Fill(Base):
    __tablename__ = "fills"
    __table_args__ = (
        # The queue and claim-next read only open fills (docs/decisions/0022-history-indexes-and-rollup.md).
        Index(
            "ix_fills_open",
            "state",
            "priority",
            "submitted_at",
            "id",
            postgresql_where=OPEN_FILL,
            sqlite_where=OPEN_FILL,
        ),
        Index(
            "ix_fills_open_order",
            text(QUEUE_RANK),
            "submitted_at",
            "id",
            postgresql_where=OPEN_FILL,
            sqlite_where=OPEN_FILL,
        ),
        # The dashboard's decided fills of a period.
        Index("ix_fills_decided_at", "decided_at"),
        # Fills by state among all (without statistics SQLite reads a state's fills through it).
        Index("ix_fills_queue", "state", "priority", "submitted_at"),
        # A fill's reference photo: the last approved fill of the same product, newest first.
        Index("ix_fills_approved_ndc", "approved_ndc", "decided_at"),
        # A site's fills newest first, a page at a time after the last one's key (server/fills/queries.py).
        Index("ix_fills_site_created", "site_id", "created_at", "id"),
        Index("ix_fills_site_handed_out", "site_id", "handed_out_at"),
        # The fills waiting for counselling, longest waiting first (server/counselling). Not partial: the
        # status arrives as a bound parameter, which neither database matches to an index's condition.
        Index("ix_fills_counselling_due", "counselling", "decided_at", "id"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    prescription_id: Mapped[int] = mapped_column(ForeignKey("prescriptions.id"), index=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    previous_fill_id: Mapped[str | None] = mapped_column(ForeignKey("fills.id"), nullable=True)
    priority: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    claimed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    barcodes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    counted_quantity: Mapped[Decimal | None] = mapped_column(Numeric(10, 2), nullable=True)
    product_check: Mapped[str] = mapped_column(String(16), default="none")
    product_check_detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The site's photo checks the technician sent the fill past: [{"kind": media kind, "check": code}].
    overridden_checks: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # What the pharmacist must acknowledge before approving, set when the fill is queued:
    # [{"code": "quantity_mismatch" | "refill_too_soon" | ..., ...what it is about}].
    flags: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    request_digest: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    queued_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # The product a pharmacist approved this fill as (the prescription's NDC then); None until approved.
    approved_ndc: Mapped[str | None] = mapped_column(String(11), nullable=True)
    # Counselling (server/counselling): whether the rules in force require it for this fill (set when it
    # is created and again when it is approved; None on fills made before the rule was kept), and where
    # it stands: not_required, due, or the kind of its record. The record itself is a CounsellingRecord.
    counselling_required: Mapped[bool | None] = mapped_column(nullable=True)
    counselling: Mapped[str | None] = mapped_column(String(24), nullable=True)
    handed_out_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    handed_out_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


# A medium belongs to exactly one of a fill, a consultation and a prescription.
MEDIA_ONE_OWNER = (
    "(CASE WHEN fill_id IS NULL THEN 0 ELSE 1 END) + (CASE WHEN consultation_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN prescription_id IS NULL THEN 0 ELSE 1 END) = 1"
)


class Media(Base):
    """A stored photo or video: evidence of a fill, the recording of a consultation, or a page of a
    prescription's paper original (exactly one of the three)."""

    __tablename__ = "media"
    __table_args__ = (
        UniqueConstraint("fill_id", "kind", "sha256"),
        # One recording per consultation, enforced by the database as well as by the service.
        UniqueConstraint("consultation_id", "kind", name="uq_media_consultation_kind"),
        CheckConstraint(MEDIA_ONE_OWNER, name="ck_media_one_owner"),
        # A page of an original is stored once per prescription, whatever file it came in.
        UniqueConstraint("prescription_id", "kind", "sha256", name="uq_media_prescription_kind_sha256"),
        # A byte-identical photo of another fill, found by its digest.
        Index("ix_media_sha256", "sha256"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    fill_id: Mapped[str | None] = mapped_column(ForeignKey("fills.id"), index=True, nullable=True)
    consultation_id: Mapped[int | None] = mapped_column(
        ForeignKey("consultations.id", name="fk_media_consultation_id"), nullable=True
    )
    prescription_id: Mapped[int | None] = mapped_column(
        ForeignKey("prescriptions.id", name="fk_media_prescription_id"), index=True, nullable=True
    )
    # A page of a multi-page original (a fax's TIFF, a PDF): its number from 1; None for other media.
    page: Mapped[int | None] = mapped_column(nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    sha256: Mapped[str] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int | None] = mapped_column(nullable=True)
    height: Mapped[int | None] = mapped_column(nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(nullable=True)
    # Derived files by name ("2048", "320", "poster") -> {"sha256", "content_type", "width", "height"}.
    variants: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    quality: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # A 64-bit difference hash of a photo (signed, as databases store 64 bits), to find reused photos.
    perceptual_hash: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Its vertical half and the band values of both halves, indexed to find a near hash among a year's
    # photos without reading them all (server/evidence/photo_hash.py, server/media/reuse.py).
    perceptual_hash_vertical: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    hash_band_0: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    hash_band_1: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    hash_band_2: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    hash_band_3: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    hash_band_4: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    hash_band_5: Mapped[int | None] = mapped_column(Integer, index=True, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # When its stored files were removed under the retention rules (server/compliance/retention.py):
    # the row stays, with its SHA-256, kind, size and hashes, as the record that it existed.
    removed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # Its stored files by digest, written with it: never read through here.
    files: Mapped[list[MediaFile]] = relationship(lazy="raise", cascade="save-update")


class MediaFile(Base):
    """A stored file (a variant) of a medium by its SHA-256. Content addressing stores a file once
    however many media have it (a photo sent again, a video's poster like another's): a file is
    removed only when no medium still kept has it, which this table answers by digest."""

    __tablename__ = "media_files"
    media_id: Mapped[int] = mapped_column(ForeignKey("media.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Decision(Base):
    __tablename__ = "decisions"
    # The sites a pharmacist supervises: their decisions of the last minutes (server.compliance.checks).
    __table_args__ = (Index("ix_decisions_pharmacist_decided", "pharmacist_id", "decided_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    # One decision per fill, enforced by the database as well as by the conditional update.
    fill_id: Mapped[str] = mapped_column(ForeignKey("fills.id"), unique=True)
    pharmacist_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    outcome: Mapped[str] = mapped_column(String(8))
    reason_codes: Mapped[list[Any]] = mapped_column(JSON, default=list)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Each flag of the fill acknowledged: [{"flag": code, "reason": code, "note": text or null}].
    acknowledgements: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # What the pharmacist had on screen: [{"media_id", "kind", "seconds", "max_zoom", ...}].
    views_seen: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default="[]")
    # A Schedule II approval: the count the pharmacist read off the counted-units photo.
    confirmed_count: Mapped[Decimal | None] = mapped_column(Numeric(10, 2), nullable=True)
    # The licence the pharmacist decided under: the one for the state of the fill's site.
    license_state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    license_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DashboardHour(Base):
    """One closed hour (or day) of the dashboard's figures, summarised once from the records by the same
    code that scans them (server/reports/dashboard.py): its decisions ("decided", "decided-day", for
    every site) or the queue depth of a scope of sites ("depth", "depth-day")."""

    __tablename__ = "dashboard_hours"
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    # "" for decisions; for depth, whose sites: "all", "states:MN,ND" or "site:7".
    scope: Mapped[str] = mapped_column(String(200), primary_key=True)
    # The hour's (or day's) start.
    hour: Mapped[dt.datetime] = mapped_column(primary_key=True)
    figures: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditEvent(Base):
    """Append-only, hash-chained record of every change. Carries ids, never patient data. On PostgreSQL
    partitioned by month on `at` (server/db/partitions.py), with the primary key (id, at) there."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor_id: Mapped[int | None] = mapped_column(nullable=True)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(ChainJSON, default=dict)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AccessLogEntry(Base):
    """A person read a record with patient data: a fill, a prescription, a photo or a recording. Ids
    only; a patient's access report joins them to the patient's prescriptions. Partitioned by month on
    PostgreSQL, as the audit trail."""

    __tablename__ = "access_log"
    __table_args__ = (Index("ix_access_log_entity", "entity_type", "entity_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    user_id: Mapped[int] = mapped_column(index=True)
    # "fill", "prescription" or "media" (a photo, a video or a consultation's recording).
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))


class Event(Base):
    """Realtime events, persisted so a reconnecting client catches up by cursor. Partitioned by month
    on PostgreSQL, as the audit trail."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    type: Mapped[str] = mapped_column(String(64))
    site_id: Mapped[int | None] = mapped_column(nullable=True, index=True)
    us_state: Mapped[str | None] = mapped_column(String(2), nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class Consultation(Base):
    """A video consultation (counselling) or a live look at the counting tray; its recording is media."""

    __tablename__ = "consultations"
    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"), index=True)
    prescription_id: Mapped[int | None] = mapped_column(ForeignKey("prescriptions.id"), nullable=True)
    fill_id: Mapped[str | None] = mapped_column(ForeignKey("fills.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(16), default="counsel")
    state: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(default=1)
    requested_by: Mapped[int] = mapped_column(ForeignKey("users.id"))
    pharmacist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    requested_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    answered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    connected_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(nullable=True)
    end_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    ended_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    outcome_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    recording_consent: Mapped[bool] = mapped_column(default=False)
    # Consent is stamped before the site starts recording; the recording (mp4) is media of this
    # consultation in the media store once the site's outbox delivered it.
    recording_consent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # Where a state needs every party's consent to record, the pharmacist's own, stamped by the pharmacist.
    pharmacist_consent_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # use_alter: media rows point back at their consultation, so one of the two keys comes second.
    recording_media_id: Mapped[int | None] = mapped_column(
        ForeignKey("media.id", name="fk_consultations_recording_media_id", use_alter=True), nullable=True
    )
    recording: Mapped[Media | None] = relationship(foreign_keys=[recording_media_id], lazy="joined")
    # Times the media path was re-established inside this consultation after it dropped.
    reconnections: Mapped[int] = mapped_column(default=0, server_default="0")


class CounsellingRecord(Base):
    """How the patient of a fill was counselled, or that they declined: one record per fill.

    By video: the consultation, its pharmacist and duration, and the pharmacist's note. By phone: the
    pharmacist who called. Declined: who declined as a role ("patient" or "agent", never a name) and the
    technician who recorded it (recorded_by)."""

    __tablename__ = "counselling_records"
    __table_args__ = (Index("ix_counselling_records_site_recorded", "site_id", "recorded_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    fill_id: Mapped[str] = mapped_column(ForeignKey("fills.id"), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    kind: Mapped[str] = mapped_column(String(16))  # video, phone or declined
    consultation_id: Mapped[int | None] = mapped_column(ForeignKey("consultations.id"), nullable=True)
    pharmacist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    duration_seconds: Mapped[float | None] = mapped_column(nullable=True)
    declined_by: Mapped[str | None] = mapped_column(String(16), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    recorded_at: Mapped[dt.datetime] = mapped_column()
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)


class ConsultationSignal(Base):
    """Signalling (an offer, an answer, candidates) on its way to a party whose websocket is on another
    server instance. Transient: deleted when delivered, when the consultation ends, or after a short
    expiry. Never journaled or audited: only the instance holding the addressee's connection reads it."""

    __tablename__ = "consultation_signals"
    __table_args__ = (Index("ix_consultation_signals_to", "consultation_id", "party"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    consultation_id: Mapped[int] = mapped_column(ForeignKey("consultations.id"))
    party: Mapped[str] = mapped_column(String(16))
    message: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(index=True)


class DrugReferenceLoad(Base):
    """The drug reference (FDA NDC Directory) loaded now: one row, id 1, replaced by each import.

    No row means no reference is loaded."""

    __tablename__ = "drug_reference_loads"
    id: Mapped[int] = mapped_column(primary_key=True)
    loaded_at: Mapped[dt.datetime] = mapped_column()
    product_file: Mapped[str] = mapped_column(String(255))
    package_file: Mapped[str] = mapped_column(String(255))
    product_sha256: Mapped[str] = mapped_column(String(64))
    package_sha256: Mapped[str] = mapped_column(String(64))
    products: Mapped[int] = mapped_column(Integer)
    packages: Mapped[int] = mapped_column(Integer)
    # What the import left out and why: {"packages_without_product": n, "bad_ndc": n, ...}.
    skipped: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class DrugProduct(Base):
    """A row of the NDC Directory's product file. Multi-valued fields keep the file's "; " separators."""

    __tablename__ = "drug_products"
    # PRODUCTID: the product NDC and the SPL document id, unique in the file.
    product_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    product_ndc: Mapped[str] = mapped_column(String(10))
    product_type: Mapped[str] = mapped_column(String(80))
    proprietary_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    proprietary_name_suffix: Mapped[str | None] = mapped_column(Text, nullable=True)
    nonproprietary_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    dosage_form: Mapped[str | None] = mapped_column(String(120), nullable=True)
    route: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_marketing_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    end_marketing_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    marketing_category: Mapped[str | None] = mapped_column(String(80), nullable=True)
    application_number: Mapped[str | None] = mapped_column(String(40), nullable=True)
    labeler: Mapped[str | None] = mapped_column(Text, nullable=True)
    substance_name: Mapped[str | None] = mapped_column(Text, nullable=True)
    strength_numerator: Mapped[str | None] = mapped_column(Text, nullable=True)
    strength_unit: Mapped[str | None] = mapped_column(Text, nullable=True)
    pharm_classes: Mapped[str | None] = mapped_column(Text, nullable=True)
    dea_schedule: Mapped[str | None] = mapped_column(String(8), nullable=True)
    exclude_flag: Mapped[str | None] = mapped_column(String(2), nullable=True)
    certified_through: Mapped[dt.date | None] = mapped_column(Date, nullable=True)


class DrugPackage(Base):
    """A row of the NDC Directory's package file, keyed by its NDC in the 11-digit billing form: the
    product check reads it by primary key."""

    __tablename__ = "drug_packages"
    ndc11: Mapped[str] = mapped_column(String(11), primary_key=True)
    product_id: Mapped[str] = mapped_column(ForeignKey("drug_products.product_id"), index=True)
    # NDCPACKAGECODE as published, hyphenated (4-4-2, 5-3-2 or 5-4-1).
    package_code: Mapped[str] = mapped_column(String(14))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_marketing_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    end_marketing_date: Mapped[dt.date | None] = mapped_column(Date, nullable=True)
    exclude_flag: Mapped[str | None] = mapped_column(String(2), nullable=True)
    sample: Mapped[bool | None] = mapped_column(nullable=True)
