"""tus 1.0 on the wire: versions, extensions, the headers' syntax, and the statuses tus adds to HTTP."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping

from aiohttp import web

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum"
TUS_CHECKSUM_ALGORITHMS = "sha256"
PATCH_CONTENT_TYPE = "application/offset+octet-stream"

_METADATA_KEY_RE = re.compile(r"[!-+\--~]+")  # printable ASCII without space or comma
_INT_RE = re.compile(r"[0-9]{1,19}")


class HTTPChecksumMismatch(web.HTTPClientError):
    """460: the chunk's bytes do not match its Upload-Checksum; the chunk was discarded."""

    status_code = 460


class HTTPLocked(web.HTTPClientError):
    """423: another request is writing to this upload."""

    status_code = 423


class MetadataError(ValueError):
    """A malformed Upload-Metadata header."""


def parse_metadata(header: str) -> dict[str, str]:
    """Parse an Upload-Metadata header (`key base64,key2 base64,flag`) into text values."""
    result: dict[str, str] = {}
    if not header.strip():
        return result
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise MetadataError("malformed Upload-Metadata pair")
        key = parts[0]
        if not _METADATA_KEY_RE.fullmatch(key):
            raise MetadataError("invalid Upload-Metadata key")
        if key in result:
            raise MetadataError("duplicate Upload-Metadata key")
        value = ""
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise MetadataError("Upload-Metadata value is not base64 UTF-8") from None
        result[key] = value
    return result


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """Encode text values as an Upload-Metadata header."""
    pairs = []
    for key, value in metadata.items():
        if not _METADATA_KEY_RE.fullmatch(key):
            raise MetadataError("invalid Upload-Metadata key")
        pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key)
    return ",".join(pairs)


def parse_length(value: str | None, name: str) -> int:
    if value is None or not _INT_RE.fullmatch(value.strip()):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value.strip())


def parse_checksum(value: str | None) -> bytes | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise ValueError("unsupported checksum algorithm; use sha256")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Upload-Checksum is not base64") from None
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError("Upload-Checksum has the wrong length for sha256")
    return digest
