"""The drug reference as the API shows it: what an NDC is."""

from __future__ import annotations

from aiohttp import web

from server.api.params import accepts, path_param
from server.api.responses import json_response
from server.errors import InvalidInput, NotFound
from server.evidence.barcodes import normalize_ndc
from server.reference.store import describe_ndc
from server.services import services_of


@accepts()
async def lookup_ndc(request: web.Request) -> web.Response:
    """The package and product the loaded reference knows by this NDC (10 digits hyphenated, or 11);
    `drug_reference` null, and no package, when no reference is loaded."""
    text: str = path_param(request, "ndc")
    try:
        ndc11 = normalize_ndc(text)
    except ValueError as exc:
        raise InvalidInput(f"'ndc': {exc}") from exc
    loaded, package = await describe_ndc(services_of(request).db, ndc11)
    if loaded is not None and package is None:
        raise NotFound("The drug reference does not know this NDC.", code="unknown_ndc")
    return json_response({"drug_reference": loaded, "package": package})
