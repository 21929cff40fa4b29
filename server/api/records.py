"""Prescriptions and the administrator's directory: sites, users, licenses, device tokens."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from server.api.paging import paging
from server.api.params import Query, accepts, body_of, path_param, query_param
from server.api.responses import json_response
from server.api.shapes import prescription_view, site_view, user_view
from server.api.table import json_body, principal_of
from server.directory import SITES_ORDER, USERS_ORDER
from server.errors import InvalidInput
from server.fills.rules import MEDIA_KINDS
from server.inputs import ID, Body, Date, Field, Flag, ListOf, Nullable, OneOf, Text
from server.keyset import MAX_LIMIT
from server.prescriptions import PRESCRIPTION, PRESCRIPTIONS_ORDER, TEXT_FIELDS
from server.security.principal import PEOPLE, Role
from server.services import services_of

STATE = Text(2, 2, pattern="[A-Za-z]{2}", message="'state' is a two-letter state code such as ND.")
USERNAME = Text(64, 1)
# An admin names the prescription's site; a technician's is their own.
PRESCRIPTION_BODY = Body(
    {**PRESCRIPTION.fields, "site_id": Field(Nullable(ID), description="The site (admins only)")},
    check=PRESCRIPTION.check,
)
NEW_SITE = Body(
    {
        "code": Field(Text(32, 1, strip=True), required=True),
        "name": Field(Text(200, 1, strip=True), required=True),
        "state": Field(STATE, required=True),
        "required_media_kinds": Field(Nullable(ListOf(OneOf(MEDIA_KINDS), 2 * len(MEDIA_KINDS)))),
        "requires_pv1": Field(
            Flag(),
            description="Prescriptions wait for a pharmacist's data-entry verification before any fill "
            "(default true)",
        ),
    }
)


def _site_for_technicians(body: dict[str, Any]) -> None:
    """A site is a technician's only: for another role it would be ignored, and the account made would
    not be the one asked for."""
    if body.get("site_code") is not None and body["role"] != Role.TECHNICIAN:
        # No `field`: the value is one the field takes, refused with this role.
        raise InvalidInput("'site_code' is for technicians: pharmacists and admins belong to no site.")


NEW_USER = Body(
    {
        "username": Field(USERNAME, required=True),
        "display_name": Field(Text(200, 1, strip=True), required=True),
        "role": Field(OneOf(tuple(r.value for r in PEOPLE)), required=True),
        "password": Field(Text(1024, 1), required=True),
        "site_code": Field(Nullable(Text(32)), description="A technician's site (technicians only)"),
    },
    check=_site_for_technicians,
)
NEW_LICENSE = Body(
    {
        "state": Field(STATE, required=True),
        "number": Field(Text(64, 1, strip=True), required=True),
        "expires_on": Field(Date(), required=True),
    }
)
PRESCRIPTIONS_PAGE = paging(PRESCRIPTIONS_ORDER, 200)
# As a prescription's Rx number is entered (server.prescriptions.TEXT_FIELDS): blanks around it dropped.
RX_NUMBER_FILTER = Query(
    "rx_number",
    Text(TEXT_FIELDS["rx_number"], 1, strip=True),
    "Only the prescription with this Rx number (at a technician's site: one at most)",
)
# The directory's lists were whole lists: a page holds as many as a page may by default.
SITES_PAGE = paging(SITES_ORDER, MAX_LIMIT)
USERS_PAGE = paging(USERS_ORDER, MAX_LIMIT)
NEW_DEVICE_TOKEN = Body(
    {"username": Field(USERNAME, required=True), "label": Field(Text(200), description="Which device")}
)


@accepts(body=PRESCRIPTION_BODY, status=201, idempotent=True)
async def create_prescription(request: web.Request) -> web.Response:
    body = await json_body(request)
    site_id = PRESCRIPTION_BODY.parse(body).get("site_id")
    stored = await services_of(request).prescriptions.enter(principal_of(request), body, site_id=site_id)
    used = (
        (await services_of(request).prescriptions.fills_used([stored.prescription.id]))
        if not stored.created
        else {}
    )
    views = await services_of(request).fills.views_required([stored.prescription])
    return json_response(
        prescription_view(
            stored.prescription,
            fills_used=used.get(stored.prescription.id, 0),
            views=views[stored.prescription.id],
        ),
        status=201 if stored.created else 200,
    )


@accepts(query=(RX_NUMBER_FILTER, *PRESCRIPTIONS_PAGE.queries))
async def list_prescriptions(request: web.Request) -> web.Response:
    svc, actor = services_of(request), principal_of(request)
    after, limit = PRESCRIPTIONS_PAGE.read(request)
    rx_number = query_param(request, RX_NUMBER_FILTER, None)
    page = await svc.prescriptions.list_for(actor, rx_number=rx_number, after=after, limit=limit)
    prescriptions = page.rows
    svc.access_log.read(actor, "prescription", [rx.id for rx in prescriptions])
    used = await svc.prescriptions.fills_used([rx.id for rx in prescriptions])
    views = await svc.fills.views_required(prescriptions)
    return json_response(
        {
            "prescriptions": [
                prescription_view(rx, fills_used=used.get(rx.id, 0), views=views[rx.id])
                for rx in prescriptions
            ],
            "next": page.next,
        }
    )


@accepts(query=SITES_PAGE.queries)
async def list_sites(request: web.Request) -> web.Response:
    after, limit = SITES_PAGE.read(request)
    page = await services_of(request).directory.site_page(principal_of(request), after=after, limit=limit)
    return json_response({"sites": [site_view(s) for s in page.rows], "next": page.next})


@accepts(body=NEW_SITE, status=201)
async def create_site(request: web.Request) -> web.Response:
    body = await body_of(request, NEW_SITE)
    site = await services_of(request).directory.create_site(
        principal_of(request),
        body["code"],
        body["name"],
        body["state"],
        body.get("required_media_kinds"),
        requires_pv1=body.get("requires_pv1", True),
    )
    return json_response(site_view(site), status=201)


@accepts(query=USERS_PAGE.queries)
async def list_users(request: web.Request) -> web.Response:
    after, limit = USERS_PAGE.read(request)
    page = await services_of(request).directory.user_page(after=after, limit=limit)
    return json_response({"users": [user_view(u) for u in page.rows], "next": page.next})


@accepts(body=NEW_USER, status=201)
async def create_user(request: web.Request) -> web.Response:
    body = await body_of(request, NEW_USER)
    user = await services_of(request).directory.create_user(
        principal_of(request),
        body["username"],
        body["display_name"],
        body["role"],
        body["password"],
        site_code=body.get("site_code"),
    )
    return json_response(user_view(user), status=201)


@accepts(body=NEW_LICENSE, status=201)
async def add_license(request: web.Request) -> web.Response:
    body = await body_of(request, NEW_LICENSE)
    lic = await services_of(request).directory.add_license(
        principal_of(request),
        path_param(request, "username"),
        body["state"],
        body["number"],
        body["expires_on"],
    )
    return json_response(
        {"state": lic.state, "number": lic.number, "expires_on": lic.expires_on.isoformat()}, status=201
    )


@accepts(body=NEW_DEVICE_TOKEN, status=201)
async def issue_device_token(request: web.Request) -> web.Response:
    body = await body_of(request, NEW_DEVICE_TOKEN)
    token = await services_of(request).auth.issue_device_token(
        principal_of(request), body["username"], body.get("label", "site device")
    )
    # Shown once: only its hash is stored.
    return json_response({"token": token}, status=201)


@accepts()
async def revoke_device_token(request: web.Request) -> web.Response:
    await services_of(request).auth.revoke_device_token(
        principal_of(request), path_param(request, "token_id")
    )
    return json_response({"revoked": True})
