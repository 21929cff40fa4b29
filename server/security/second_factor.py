"""Second factors: TOTP authenticator apps, WebAuthn security keys and passkeys, and recovery codes.

A person proves who they are with one of these after the password, again before a decision that needs
it (step-up) and to unlock an idle console. What is pending between two requests (a TOTP secret being
enrolled, a WebAuthn challenge) is kept in the console session's own row, so it works on any server
instance and dies with the session. TOTP codes are taken once: the last time step used is stored.
Recovery codes are random (60 bits), shown once and stored as SHA-256, each good for one proof.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import segno
import webauthn
from sqlalchemy import ColumnElement, Label, RowMapping, bindparam, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from webauthn.helpers import bytes_to_base64url, options_to_json_dict
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import ConsoleSession, RecoveryCode, SecondFactor, User
from server.errors import Conflict, InvalidInput, NotAuthenticated, NotFound
from server.security import tokens
from server.security.principal import Principal, Role

# A check in the change's own transaction (a step-up: server/security/step_up.py).
Confirm = Callable[[AsyncSession], Awaitable[object]]
ISSUER = "Telepharmacy"
KINDS = ("totp", "webauthn")
# The roles that enrol a second factor: the people who decide and who manage.
ENROLLING_ROLES = frozenset({Role.PHARMACIST, Role.ADMIN})
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# A TOTP code of the step before or after the current one is still taken (clocks drift; typing takes time).
TOTP_WINDOW = 1
# How long a WebAuthn ceremony or a TOTP enrolment may take before it must start again.
PENDING_SECONDS = 300


def proof_columns(user_id: ColumnElement[int] | InstrumentedAttribute[int]) -> list[Label[bool]]:
    """Whether the user has a second factor of each kind and recovery codes left, as columns of one row
    (read by methods_from): a statement that reads them costs one round trip."""
    return [
        *(
            exists().where(SecondFactor.user_id == user_id, SecondFactor.kind == kind).label(kind)
            for kind in KINDS
        ),
        exists()
        .where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
        .label("recovery_code"),
    ]


def methods_from(has: RowMapping) -> list[str]:
    """The second factors a row with proof_columns says the user can prove (SecondFactors.methods_of)."""
    methods = [k for k in KINDS if has[k]]
    if methods and has["recovery_code"]:
        methods.append("recovery_code")
    return methods


_METHODS = select(*proof_columns(bindparam("user_id")))


@dataclass(frozen=True)
class RelyingParty:
    """Whom a WebAuthn credential is bound to: the console's host name, and the page's origin."""

    rp_id: str
    origin: str


@dataclass(frozen=True)
class Proof:
    """What a person sends to prove who they are: exactly one of these."""

    password: str | None = None
    totp: str | None = None
    recovery_code: str | None = None
    webauthn: dict[str, Any] | None = None

    @property
    def method(self) -> str:
        for name in ("password", "totp", "recovery_code", "webauthn"):
            if getattr(self, name) is not None:
                return name
        raise InvalidInput(
            "Give a password, a code from your authenticator, a recovery code or a security key."
        )


def new_recovery_code() -> str:
    """Twelve characters of an unambiguous base32 in three groups: 60 random bits, easy to type."""
    text = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(12))
    return f"{text[:4]}-{text[4:8]}-{text[8:]}"


def _recovery_digest(code: str) -> str:
    return tokens.digest(code.replace("-", "").replace(" ", "").upper())


def qr_svg(uri: str) -> str:
    """The enrolment QR code as an SVG document (no external resources: the console's CSP allows it)."""
    out = io.BytesIO()
    # A whole SVG document (with its namespace), so that it shows as an image of its own.
    segno.make(uri, error="m").save(
        out, kind="svg", scale=4, border=2, dark="#111", light="#fff", xmldecl=False
    )
    return out.getvalue().decode()


async def _session(s: AsyncSession, principal: Principal) -> ConsoleSession:
    row = await s.get(ConsoleSession, principal.session_id) if principal.session_id else None
    if row is None:
        raise NotAuthenticated("Sign in with a password first.")
    return row


def _pending(row: ConsoleSession, kind: str, now: dt.datetime) -> dict[str, Any]:
    try:
        pending = json.loads(row.challenge or "{}")
    except ValueError:
        pending = {}
    if pending.get("kind") != kind or now.timestamp() - float(pending.get("at", 0)) > PENDING_SECONDS:
        raise Conflict(
            "Start again: nothing of this kind is pending, or it took too long.", code="not_pending"
        )
    return dict(pending)


class SecondFactors:
    """Enrolment, removal and proofs of second factors. Every change is audited."""

    def __init__(self, db: Database, clock: Callable[[], dt.datetime]) -> None:
        self.db = db
        self.clock = clock

    # -- what is enrolled ------------------------------------------------------------------------

    @staticmethod
    async def methods_of(s: AsyncSession, user_id: int) -> list[str]:
        """The second factors the user can prove: "totp", "webauthn", and "recovery_code" when any is left."""
        return methods_from((await s.execute(_METHODS, {"user_id": user_id})).one()._mapping)

    async def listing(self, user_id: int) -> dict[str, Any]:
        async with self.db.read() as s:
            factors = (
                await s.execute(
                    select(SecondFactor).where(SecondFactor.user_id == user_id).order_by(SecondFactor.id)
                )
            ).scalars()
            left = await s.scalar(
                select(func.count()).where(RecoveryCode.user_id == user_id, RecoveryCode.used_at.is_(None))
            )
            return {
                "factors": [
                    {
                        "id": f.id,
                        "kind": f.kind,
                        "label": f.label,
                        "created_at": f.created_at.isoformat(),
                        "last_used_at": f.last_used_at.isoformat() if f.last_used_at else None,
                    }
                    for f in factors
                ],
                "recovery_codes_left": int(left or 0),
            }

    # -- enrolment ---------------------------------------------------------------------------------

    async def begin_totp(self, principal: Principal) -> dict[str, str]:
        """A new TOTP secret for the person's authenticator app, kept in the session until confirmed."""
        secret = pyotp.random_base32()
        uri = pyotp.TOTP(secret).provisioning_uri(name=principal.username, issuer_name=ISSUER)
        async with self.db.write() as s:
            row = await _session(s, principal)
            row.challenge = json.dumps({"kind": "totp", "secret": secret, "at": self.clock().timestamp()})
        return {"secret": secret, "otpauth_uri": uri, "qr_svg": qr_svg(uri)}

    async def finish_totp(
        self, principal: Principal, code: str, label: str
    ) -> tuple[SecondFactor, list[str]]:
        """Enrols the pending secret once a code from the app proves it was scanned."""
        async with self.db.write() as s:
            row = await _session(s, principal)
            now = self.clock()
            pending = _pending(row, "totp", now)
            step = _totp_step(pending["secret"], code, now, None)
            if step is None:
                raise InvalidInput(
                    "That code does not match: check the app's clock and enter the current code."
                )
            factor = SecondFactor(
                user_id=principal.user_id,
                kind="totp",
                label=label or "Authenticator app",
                totp_secret=pending["secret"],
                totp_last_step=step,
                sign_count=0,
                created_at=now,
            )
            return factor, await self._enrolled(s, principal, row, factor)

    async def begin_webauthn(self, principal: Principal, rp: RelyingParty) -> dict[str, Any]:
        """Options for navigator.credentials.create(); the challenge waits in the session."""
        async with self.db.write() as s:
            row = await _session(s, principal)
            existing = (
                await s.execute(
                    select(SecondFactor.credential_id).where(
                        SecondFactor.user_id == principal.user_id, SecondFactor.kind == "webauthn"
                    )
                )
            ).scalars()
            options = webauthn.generate_registration_options(
                rp_id=rp.rp_id,
                rp_name=ISSUER,
                user_name=principal.username,
                user_id=str(principal.user_id).encode(),
                user_display_name=principal.display_name,
                authenticator_selection=AuthenticatorSelectionCriteria(
                    resident_key=ResidentKeyRequirement.PREFERRED,
                    user_verification=UserVerificationRequirement.PREFERRED,
                ),
                exclude_credentials=[
                    PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c)) for c in existing if c
                ],
            )
            row.challenge = json.dumps(
                {
                    "kind": "webauthn-register",
                    "challenge": bytes_to_base64url(options.challenge),
                    "at": self.clock().timestamp(),
                }
            )
        return dict(options_to_json_dict(options))

    async def finish_webauthn(
        self, principal: Principal, credential: dict[str, Any], label: str, rp: RelyingParty
    ) -> tuple[SecondFactor, list[str]]:
        """Enrols the security key or passkey the browser made for the pending challenge."""
        async with self.db.write() as s:
            row = await _session(s, principal)
            now = self.clock()
            pending = _pending(row, "webauthn-register", now)
            try:
                verified = webauthn.verify_registration_response(
                    credential=credential,
                    expected_challenge=webauthn.base64url_to_bytes(pending["challenge"]),
                    expected_rp_id=rp.rp_id,
                    expected_origin=rp.origin,
                )
            except (WebAuthnException, ValueError, KeyError, TypeError) as exc:
                raise InvalidInput(f"The security key's answer was not accepted: {exc}"[:300]) from exc
            credential_id = bytes_to_base64url(verified.credential_id)
            if await s.scalar(select(SecondFactor.id).where(SecondFactor.credential_id == credential_id)):
                raise Conflict("This security key is enrolled already.")
            factor = SecondFactor(
                user_id=principal.user_id,
                kind="webauthn",
                label=label or "Security key",
                credential_id=credential_id,
                public_key=bytes_to_base64url(verified.credential_public_key),
                sign_count=verified.sign_count,
                created_at=now,
            )
            return factor, await self._enrolled(s, principal, row, factor)

    async def _enrolled(
        self, s: AsyncSession, principal: Principal, row: ConsoleSession, factor: SecondFactor
    ) -> list[str]:
        """Stores a new factor; the first one comes with recovery codes, returned once. A session that
        waited for an enrolment is ready now, and has just proved the factor."""
        first = not await self.methods_of(s, principal.user_id)
        s.add(factor)
        await s.flush()
        now = self.clock()
        row.challenge = None
        row.stage, row.factor_at, row.proved_at, row.active_at = "ready", now, now, now
        codes = await self._new_recovery_codes(s, principal.user_id) if first else []
        await audit.append(
            self.db,
            s,
            principal,
            "second_factor.enrolled",
            "user",
            principal.user_id,
            {"factor_id": factor.id, "kind": factor.kind, "recovery_codes": len(codes)},
            at=now,
        )
        return codes

    async def _new_recovery_codes(self, s: AsyncSession, user_id: int) -> list[str]:
        await s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user_id))
        codes = [new_recovery_code() for _ in range(RECOVERY_CODES)]
        s.add_all(RecoveryCode(user_id=user_id, code_hash=_recovery_digest(c)) for c in codes)
        return codes

    async def new_recovery_codes(self, principal: Principal, confirm: Confirm) -> list[str]:
        """A fresh set of recovery codes (the old ones stop working), shown once, once `confirm` holds."""
        async with self.db.write() as s:
            await confirm(s)
            if not await self.methods_of(s, principal.user_id):
                raise Conflict("Enrol an authenticator or a security key first.", code="no_second_factor")
            codes = await self._new_recovery_codes(s, principal.user_id)
            await audit.append(
                self.db,
                s,
                principal,
                "recovery_codes.replaced",
                "user",
                principal.user_id,
                {},
                at=self.clock(),
            )
            return codes

    async def remove(self, principal: Principal, factor_id: int, confirm: Confirm) -> None:
        """Removes one of the person's own factors, once `confirm` (a step-up) holds; with the last one
        go the recovery codes."""
        async with self.db.write() as s:
            await confirm(s)
            factor = await s.get(SecondFactor, factor_id)
            if factor is None or factor.user_id != principal.user_id:
                raise NotFound("No such second factor.")
            await s.delete(factor)
            await s.flush()
            if not await self.methods_of(s, principal.user_id):
                await s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == principal.user_id))
            await audit.append(
                self.db,
                s,
                principal,
                "second_factor.removed",
                "user",
                principal.user_id,
                {"factor_id": factor_id, "kind": factor.kind},
                at=self.clock(),
            )

    async def reset(self, admin: Principal | None, username: str) -> int:
        """An administrator removes every factor and recovery code of a user (a lost phone); returns how
        many factors went. The user enrols again at the next sign-in if policy requires it."""
        async with self.db.write() as s:
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
            if user is None:
                raise NotFound("No such user.")
            gone = (
                await s.execute(
                    delete(SecondFactor).where(SecondFactor.user_id == user.id).returning(SecondFactor.id)
                )
            ).all()
            await s.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
            await audit.append(
                self.db,
                s,
                admin,
                "second_factor.reset",
                "user",
                user.id,
                {"factors": len(gone)},
                at=self.clock(),
            )
            return len(gone)

    # -- proofs ------------------------------------------------------------------------------------

    async def assertion_options(self, principal: Principal, rp: RelyingParty) -> dict[str, Any]:
        """Options for navigator.credentials.get() over the person's own keys; the challenge waits in
        the session."""
        async with self.db.write() as s:
            row = await _session(s, principal)
            ids = (
                await s.execute(
                    select(SecondFactor.credential_id).where(
                        SecondFactor.user_id == principal.user_id, SecondFactor.kind == "webauthn"
                    )
                )
            ).scalars()
            allow = [PublicKeyCredentialDescriptor(id=webauthn.base64url_to_bytes(c)) for c in ids if c]
            if not allow:
                raise Conflict("No security key is enrolled for this account.", code="no_security_key")
            options = webauthn.generate_authentication_options(
                rp_id=rp.rp_id,
                allow_credentials=allow,
                user_verification=UserVerificationRequirement.PREFERRED,
            )
            row.challenge = json.dumps(
                {
                    "kind": "webauthn-assert",
                    "challenge": bytes_to_base64url(options.challenge),
                    "at": self.clock().timestamp(),
                }
            )
        return dict(options_to_json_dict(options))

    async def check(
        self, s: AsyncSession, principal: Principal, proof: Proof, rp: RelyingParty | None
    ) -> bool:
        """True when the proof (a second factor, not a password) is right; uses it up where it is
        one-time (a TOTP step, a recovery code, a WebAuthn challenge), in the caller's transaction."""
        now = self.clock()
        if proof.totp is not None:
            factors = (
                await s.execute(
                    select(SecondFactor).where(
                        SecondFactor.user_id == principal.user_id, SecondFactor.kind == "totp"
                    )
                )
            ).scalars()
            for factor in factors:
                step = _totp_step(factor.totp_secret or "", proof.totp, now, factor.totp_last_step)
                if step is not None:
                    # Conditional: of two requests with the same code only one is taken.
                    taken = await s.execute(
                        update(SecondFactor)
                        .where(
                            SecondFactor.id == factor.id,
                            func.coalesce(SecondFactor.totp_last_step, -1) < step,
                        )
                        .values(totp_last_step=step, last_used_at=now)
                    )
                    return bool(taken.rowcount)  # type: ignore[attr-defined]
            return False
        if proof.recovery_code is not None:
            used = await s.execute(
                update(RecoveryCode)
                .where(
                    RecoveryCode.user_id == principal.user_id,
                    RecoveryCode.code_hash == _recovery_digest(proof.recovery_code),
                    RecoveryCode.used_at.is_(None),
                )
                .values(used_at=now)
            )
            return bool(used.rowcount)  # type: ignore[attr-defined]
        if proof.webauthn is not None and rp is not None:
            return await self._check_webauthn(s, principal, proof.webauthn, rp, now)
        return False

    async def _check_webauthn(
        self,
        s: AsyncSession,
        principal: Principal,
        credential: dict[str, Any],
        rp: RelyingParty,
        now: dt.datetime,
    ) -> bool:
        row = await _session(s, principal)
        pending = _pending(row, "webauthn-assert", now)
        row.challenge = None  # a challenge answers once, right or wrong
        factor = (
            await s.execute(
                select(SecondFactor).where(
                    SecondFactor.user_id == principal.user_id,
                    SecondFactor.kind == "webauthn",
                    SecondFactor.credential_id == str(credential.get("id", ""))[:1400],
                )
            )
        ).scalar_one_or_none()
        if factor is None or factor.public_key is None:
            return False
        try:
            verified = webauthn.verify_authentication_response(
                credential=credential,
                expected_challenge=webauthn.base64url_to_bytes(pending["challenge"]),
                expected_rp_id=rp.rp_id,
                expected_origin=rp.origin,
                credential_public_key=webauthn.base64url_to_bytes(factor.public_key),
                credential_current_sign_count=factor.sign_count,
            )
        except (WebAuthnException, ValueError, KeyError, TypeError):
            return False
        factor.sign_count, factor.last_used_at = verified.new_sign_count, now
        return True


def _totp_step(secret: str, code: str, now: dt.datetime, last_step: int | None) -> int | None:
    """The time step whose code this is (within TOTP_WINDOW of now and after last_step), or None."""
    code = code.replace(" ", "")
    if not secret or len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = int(now.timestamp()) // totp.interval
    for step in range(current - TOTP_WINDOW, current + TOTP_WINDOW + 1):
        if (last_step is None or step > last_step) and secrets.compare_digest(
            totp.at(step * totp.interval), code
        ):
            return step
    return None
