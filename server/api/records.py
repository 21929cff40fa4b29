"""Prescriptions and the administrator's directory: sites, users, licenses, device tokens."""

from __future__ import annotations

import datetime as dt

from aiohttp import web

from server.api.shapes import prescription_view, site_view, user_view
from server.api.table import json_body, principal_of
from server.errors import InvalidInput
from server.services import services_of


async def create_prescription(request: web.Request) -> web.Response:
    body = await json_body(request)
    site_id = body.get("site_id")
    rx = await services_of(request).prescriptions.create(
        principal_of(request), body, site_id=int(site_id) if isinstance(site_id, int) else None
    )
    return web.json_response(prescription_view(rx), status=201)


async def list_prescriptions(request: web.Request) -> web.Response:
    prescriptions = await services_of(request).prescriptions.list_for(principal_of(request))
    return web.json_response({"prescriptions": [prescription_view(rx) for rx in prescriptions]})


async def list_sites(request: web.Request) -> web.Response:
    p = principal_of(request)
    sites = [s for s in await services_of(request).directory.sites() if p.may_see_site(s.id, s.state)]
    return web.json_response({"sites": [site_view(s) for s in sites]})


async def create_site(request: web.Request) -> web.Response:
    body = await json_body(request)
    kinds = body.get("required_media_kinds")
    site = await services_of(request).directory.create_site(
        principal_of(request),
        str(body.get("code", "")),
        str(body.get("name", "")),
        str(body.get("state", "")),
        kinds if isinstance(kinds, list) else None,
    )
    return web.json_response(site_view(site), status=201)


async def list_users(request: web.Request) -> web.Response:
    return web.json_response({"users": [user_view(u) for u in await services_of(request).directory.users()]})


async def create_user(request: web.Request) -> web.Response:
    body = await json_body(request)
    user = await services_of(request).directory.create_user(
        principal_of(request),
        str(body.get("username", "")),
        str(body.get("display_name", "")),
        str(body.get("role", "")),
        str(body.get("password", "")),
        site_code=body.get("site_code"),
    )
    return web.json_response(user_view(user), status=201)


async def add_license(request: web.Request) -> web.Response:
    body = await json_body(request)
    try:
        expires = dt.date.fromisoformat(str(body.get("expires_on")))
    except ValueError as exc:
        raise InvalidInput("'expires_on' must be a date like 2027-06-30.") from exc
    lic = await services_of(request).directory.add_license(
        principal_of(request),
        request.match_info["username"],
        str(body.get("state", "")),
        str(body.get("number", "")),
        expires,
    )
    return web.json_response(
        {"state": lic.state, "number": lic.number, "expires_on": lic.expires_on.isoformat()}, status=201
    )


async def issue_device_token(request: web.Request) -> web.Response:
    body = await json_body(request)
    token = await services_of(request).auth.issue_device_token(
        principal_of(request), str(body.get("username", "")), str(body.get("label", "site device"))
    )
    # Shown once: only its hash is stored.
    return web.json_response({"token": token}, status=201)


async def revoke_device_token(request: web.Request) -> web.Response:
    await services_of(request).auth.revoke_device_token(
        principal_of(request), int(request.match_info["token_id"])
    )
    return web.json_response({"revoked": True})
