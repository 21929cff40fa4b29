"""Text files from other programs, read the way they are written: UTF-8 (with or without its byte
order mark) when the bytes are valid UTF-8, else Windows-1252, what Windows programs write when they
export "CSV" and what the FDA publishes its NDC Directory in. Shared by the server (the NDC Directory)
and the site (a pharmacy system's export)."""

from __future__ import annotations

UTF8 = "utf-8"
WINDOWS_1252 = "cp1252"


def decode_text(data: bytes) -> tuple[str, str]:
    """The text and the encoding it was read with. Windows-1252's five unassigned bytes become U+FFFD
    rather than an error: shown, not dropped, where a person checks the text."""
    try:
        return data.decode("utf-8-sig"), UTF8
    except UnicodeDecodeError:
        return data.decode(WINDOWS_1252, errors="replace"), WINDOWS_1252
