"""Media: tus uploads glued to fills and consultations, and serving stored variants."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from server.api.byte_ranges import send_stored
from server.api.params import PATH_PARAMS, Query, accepts, path_param, query_param
from server.api.table import principal_of
from server.data_entry.service import RX_IMAGE
from server.errors import DomainError, InvalidInput
from server.evidence.media import too_large
from server.fills.rules import MEDIA_KINDS, VIDEO_KINDS
from server.inputs import ID, Text, parse_field
from server.media.errors import MediaRejected
from server.media.tus.endpoint import TusEndpoint
from server.media.tus.uploads import TusUpload
from server.services import Services, services_of

SHA256 = re.compile(r"^[0-9a-f]{64}$")
FILENAME = Text(1024, 1)
VARIANT = Query(
    "variant",
    Text(16, 1),
    "full, 2048 or thumb of an image; full or poster of a video (default: 2048 of an image, full of a video)",
)
UPLOADS_PATH = "/api/v1/uploads"
# A refused medium maps to HTTP by what the file is: not a supported type, or too big.
REJECTION_STATUS = {
    "unsupported_format": 415,
    "not_an_image": 415,
    "not_a_video": 415,
    "too_many_pixels": 413,
    "decompression_bomb": 413,
    "too_long": 413,
    "too_large": 413,
    "not_mp4": 415,
    "too_many_pages": 413,
}
HTTP_ERRORS: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    409: web.HTTPConflict,
    415: web.HTTPUnsupportedMediaType,
    422: web.HTTPUnprocessableEntity,
}


def http_error(status: int, code: str, message: str, **detail: Any) -> web.HTTPException:
    """A JSON error as an exception, for the tus endpoint's callbacks."""
    text = json.dumps({"error": code, "message": message, **({"detail": detail} if detail else {})})
    if status == 413:
        return web.HTTPRequestEntityTooLarge(
            max_size=0, actual_size=0, text=text, content_type="application/json"
        )
    return HTTP_ERRORS.get(status, web.HTTPUnprocessableEntity)(text=text, content_type="application/json")


def _domain(exc: DomainError) -> web.HTTPException:
    return http_error(exc.status, exc.code, exc.message, **exc.detail)


def _consultation_id(metadata: dict[str, str]) -> int:
    try:
        return ID.parse_text(metadata["consultation_id"], "consultation_id")
    except InvalidInput as exc:
        raise InvalidInput("Upload-Metadata 'consultation_id' must be the consultation's number.") from exc


def _prescription_id(metadata: dict[str, str]) -> int:
    try:
        return ID.parse_text(metadata["prescription_id"], "prescription_id")
    except InvalidInput as exc:
        raise InvalidInput("Upload-Metadata 'prescription_id' must be the prescription's number.") from exc


def _owner(metadata: dict[str, str]) -> str:
    """What an upload belongs to: exactly one of a fill, a consultation and a prescription."""
    owners = [k for k in ("fill_id", "consultation_id", "prescription_id") if k in metadata]
    if len(owners) > 1:
        raise InvalidInput("An upload belongs to one of a fill, a consultation or a prescription.")
    return owners[0] if owners else "fill_id"


def _rejected(exc: MediaRejected) -> web.HTTPException:
    return http_error(REJECTION_STATUS.get(exc.code, 422), exc.code, exc.message)


async def authorize_upload(request: web.Request, metadata: dict[str, str], length: int) -> None:
    """A new upload names the file's SHA-256, a filename, a media kind and what it belongs to: a draft
    fill of the caller's site (fill_id), a consultation the caller's site recorded (consultation_id),
    or a prescription of the caller's site whose paper original it is (prescription_id)."""
    svc = services_of(request)
    kind = metadata.get("kind", "")
    try:
        if not SHA256.match(metadata.get("sha256", "")):
            raise InvalidInput("Upload-Metadata 'sha256' must be the file's SHA-256 in lowercase hex.")
        if not metadata.get("filename"):
            raise InvalidInput("Upload-Metadata needs a 'filename'.")
        parse_field(FILENAME, metadata["filename"], "filename")
        if length == 0:
            raise InvalidInput("The file is empty.", code="empty")
        owner = _owner(metadata)
        if owner == "prescription_id":
            if kind != RX_IMAGE:
                raise InvalidInput(f"A prescription's upload is its original: kind {RX_IMAGE}.")
            if length > svc.config.max_image_bytes:
                raise http_error(
                    413,
                    "too_large",
                    f"An original may be at most {svc.config.max_image_bytes // (1024 * 1024)} MB.",
                )
            await svc.data_entry.authorize_original(principal_of(request), _prescription_id(metadata))
            return
        if owner == "consultation_id":
            await svc.recordings.authorize(
                principal_of(request),
                _consultation_id(metadata),
                kind=kind,
                sha256=metadata["sha256"],
                filename=metadata["filename"],
                length=length,
            )
            return
        if kind not in MEDIA_KINDS:
            raise InvalidInput(f"Upload-Metadata 'kind' must be one of {', '.join(MEDIA_KINDS)}.")
        limit = svc.config.max_video_bytes if kind in VIDEO_KINDS else svc.config.max_image_bytes
        if length > limit:
            raise http_error(413, "too_large", too_large(kind, limit))
        fill_id = parse_field(PATH_PARAMS["fill_id"], metadata.get("fill_id", ""), "fill_id")
        await svc.fills.authorize_upload(principal_of(request), fill_id, kind)
    except MediaRejected as exc:
        raise _rejected(exc) from exc
    except DomainError as exc:
        raise _domain(exc) from exc


def upload_owner(request: web.Request) -> str:
    return f"user:{principal_of(request).user_id}"


async def complete_upload(request: web.Request, upload: TusUpload) -> dict[str, str]:
    """Verifies, decodes and stores the medium, then records it on its fill or consultation."""
    svc, actor, meta = services_of(request), principal_of(request), upload.metadata
    try:
        if "prescription_id" in meta:
            pages = await svc.originals.take(
                actor,
                _prescription_id(meta),
                upload.data_path,
                sha256=meta["sha256"],
                filename=meta["filename"],
            )
            return {"Tp-Media-Id": str(pages[0].id), "Tp-Pages": str(len(pages))}
        if "consultation_id" in meta:
            media = await svc.recordings.take(
                actor,
                _consultation_id(meta),
                upload.data_path,
                sha256=meta["sha256"],
                filename=meta["filename"],
            )
        else:
            media = await svc.intake.take(
                actor,
                meta["fill_id"],
                upload.data_path,
                sha256=meta["sha256"],
                kind=meta["kind"],
                filename=meta["filename"],
            )
    except MediaRejected as exc:
        raise _rejected(exc) from exc
    except DomainError as exc:
        raise _domain(exc) from exc
    return {"Tp-Media-Id": str(media.id)}


def make_tus_endpoint(services: Services) -> TusEndpoint:
    return TusEndpoint(
        services.config.upload_dir,
        max(
            services.config.max_image_bytes,
            services.config.max_video_bytes,
            services.config.max_recording_bytes,
        ),
        base_path=UPLOADS_PATH,
        authorize=authorize_upload,
        owner_of=upload_owner,
        on_complete=complete_upload,
        same_file=same_file,
        # A photo sent whole with its creation (the site client sends up to 2 MiB so) is written once.
        write_buffer=2 * 1024 * 1024,
    )


def same_file(metadata: Mapping[str, str]) -> str | None:
    """Which file an upload carries (what it belongs to, its kind and SHA-256): creating the same file
    again resumes its unfinished upload."""
    if not metadata.get("sha256"):
        return None
    key = "|".join(metadata.get(k, "") for k in ("fill_id", "consultation_id", "kind", "sha256"))
    # A prescription's original: its own key, leaving the keys of uploads under way as they were.
    return f"prescription:{metadata['prescription_id']}|{key}" if metadata.get("prescription_id") else key


async def serve_media(request: web.Request, media_id: int, variant: str | None) -> web.StreamResponse:
    """One variant of one stored medium, if the caller may see it; Range requests are answered."""
    svc = services_of(request)
    sha, content_type = await svc.media.find_variant(principal_of(request), media_id, variant)
    svc.access_log.read(principal_of(request), "media", [media_id])
    # A photo shows the patient's name (the vial label): a shared workstation keeps none after sign-out.
    # The console decodes each photo once per page and reuses it, so nothing is fetched twice in a view.
    headers = {"Cache-Control": "no-store", "Content-Type": content_type}
    return await send_stored(request, svc.store, sha, headers)


@accepts(query=(VARIANT,), json=False)
async def get_media(request: web.Request) -> web.StreamResponse:
    return await serve_media(request, path_param(request, "media_id"), query_param(request, VARIANT, None))
