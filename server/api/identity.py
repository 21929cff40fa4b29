"""The second factor: enrolment, the step after the password, and proofs that unlock or step up."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncSession

from server.api.params import accepts, body_of, path_param
from server.api.responses import json_response
from server.api.table import principal_of
from server.errors import Forbidden, InvalidInput
from server.inputs import AnyObject, Body, Field, Text
from server.security import origin, step_up
from server.security.passwords import MAX_LENGTH
from server.security.principal import Principal
from server.security.second_factor import Confirm, Proof, RelyingParty
from server.services import services_of

PROOF = Body(
    {
        "password": Field(Text(MAX_LENGTH, 1)),
        "totp": Field(Text(16, 6), description="The 6-digit code the authenticator app shows"),
        "recovery_code": Field(Text(32, 12), description="One of the recovery codes shown at enrolment"),
        "webauthn": Field(
            AnyObject(), description="The security key's answer (PublicKeyCredential.toJSON())"
        ),
    },
    description="Exactly one of password, totp, recovery_code or webauthn.",
)
TOTP_CONFIRM = Body(
    {
        "code": Field(
            Text(16, 6), required=True, description="The app's current code, proving it was set up"
        ),
        "label": Field(Text(200, strip=True), description='What to call it ("Phone")'),
    }
)
WEBAUTHN_CONFIRM = Body(
    {
        "credential": Field(AnyObject(), required=True, description="PublicKeyCredential.toJSON()"),
        "label": Field(Text(200, strip=True), description='What to call it ("Office key")'),
    }
)


def relying_party(request: web.Request) -> RelyingParty:
    """The console page's origin (which the guard checked is ours) and the host name keys are bound to."""
    page = request.headers.get("Origin")
    if not page:
        raise InvalidInput("Security keys are used from the console's page (the request names no Origin).")
    return RelyingParty(services_of(request).config.webauthn_rp_id or urlsplit(page).hostname or "", page)


def _proof(body: dict[str, Any]) -> Proof:
    given = {k: v for k, v in body.items() if k in PROOF.fields}
    if len(given) != 1:
        raise InvalidInput("Give exactly one of password, totp, recovery_code or webauthn.")
    return Proof(**given)


def _person(request: web.Request) -> Principal:
    """The caller, signed in to the console with a password (a site device has no second factor)."""
    p = principal_of(request)
    if p.session_id is None:
        raise Forbidden("This is a step of a console sign-in; a device token has none.", code="console_only")
    return p


def _client(request: web.Request) -> str:
    return origin.client_address(request, services_of(request).config.trusted_proxies)


@accepts(body=PROOF)
async def second_factor(request: web.Request) -> web.Response:
    """The second step of signing in."""
    proof = _proof(await body_of(request, PROOF, max_bytes=16 * 1024))
    svc, p = services_of(request), _person(request)
    rp = relying_party(request) if proof.webauthn is not None else None
    await svc.auth.identity.finish_sign_in(p, proof, rp, _client(request))
    svc.auth.forget(request)
    return json_response({"stage": "ready"})


@accepts(body=PROOF)
async def prove(request: web.Request) -> web.Response:
    """Unlocks an idle console and steps up for the next decision that needs it."""
    proof = _proof(await body_of(request, PROOF, max_bytes=16 * 1024))
    svc, p = services_of(request), _person(request)
    rp = relying_party(request) if proof.webauthn is not None else None
    done = await svc.auth.identity.prove(p, proof, rp, _client(request))
    svc.auth.forget(request)
    return json_response(done)


@accepts()
async def webauthn_challenge(request: web.Request) -> web.Response:
    """Options for navigator.credentials.get() with the caller's enrolled keys."""
    svc = services_of(request)
    return json_response(
        await svc.auth.factors.assertion_options(principal_of(request), relying_party(request))
    )


@accepts()
async def activity(request: web.Request) -> web.Response:
    """The pharmacist is at the console (keys, pointer): the idle lock starts counting again."""
    _person(request)
    return json_response({"idle_lock_seconds": services_of(request).config.idle_lock_seconds})


@accepts()
async def list_factors(request: web.Request) -> web.Response:
    return json_response(await services_of(request).auth.factors.listing(principal_of(request).user_id))


@accepts()
async def begin_totp(request: web.Request) -> web.Response:
    """A new secret for an authenticator app, as a QR code (SVG) and as text; confirm with a code."""
    return json_response(await services_of(request).auth.factors.begin_totp(principal_of(request)))


def _enrolled(factor: Any, codes: list[str]) -> web.Response:
    # The recovery codes are shown this once: only their hashes are kept.
    return json_response(
        {"factor": {"id": factor.id, "kind": factor.kind, "label": factor.label}, "recovery_codes": codes},
        status=201,
    )


@accepts(body=TOTP_CONFIRM, status=201)
async def confirm_totp(request: web.Request) -> web.Response:
    svc = services_of(request)
    body = await body_of(request, TOTP_CONFIRM)
    factor, codes = await svc.auth.factors.finish_totp(
        principal_of(request), body["code"], body.get("label", "")
    )
    svc.auth.forget(request)
    return _enrolled(factor, codes)


@accepts()
async def begin_webauthn(request: web.Request) -> web.Response:
    """Options for navigator.credentials.create(); confirm with what the browser made."""
    svc = services_of(request)
    return json_response(await svc.auth.factors.begin_webauthn(principal_of(request), relying_party(request)))


@accepts(body=WEBAUTHN_CONFIRM, status=201)
async def confirm_webauthn(request: web.Request) -> web.Response:
    svc = services_of(request)
    body = await body_of(request, WEBAUTHN_CONFIRM, max_bytes=64 * 1024)
    factor, codes = await svc.auth.factors.finish_webauthn(
        principal_of(request), body["credential"], body.get("label", ""), relying_party(request)
    )
    svc.auth.forget(request)
    return _enrolled(factor, codes)


def _step_up(request: web.Request) -> Confirm:
    """A change to how the caller signs in asks for a proof first, as a decision does."""
    svc, p = services_of(request), principal_of(request)

    async def confirm(s: AsyncSession) -> object:
        now = svc.auth.clock()
        return await step_up.confirm(
            s, p, ["account_change"], now=now, after_seconds=svc.config.step_up_after_seconds
        )

    return confirm


@accepts()
async def remove_factor(request: web.Request) -> web.Response:
    factors = services_of(request).auth.factors
    await factors.remove(principal_of(request), path_param(request, "factor_id"), _step_up(request))
    return json_response({"removed": True})


@accepts(status=201)
async def new_recovery_codes(request: web.Request) -> web.Response:
    codes = await services_of(request).auth.factors.new_recovery_codes(
        principal_of(request), _step_up(request)
    )
    return json_response({"recovery_codes": codes}, status=201)
