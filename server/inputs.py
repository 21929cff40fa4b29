"""What a request may carry, declared once: each spec checks a value and describes it as JSON Schema.

A body is a table of named fields. The same table parses the request (types, bounds, vocabularies, with
an InvalidInput that names the field) and gives the OpenAPI document its schema, so the two cannot
disagree. Bounds keep every value inside what the database can hold: an id above its column's range
names nothing, a date past year 9998 has no next day, and NaN or infinity is no quantity.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Protocol, TypeVar

from server.errors import InvalidInput

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

# INTEGER columns on PostgreSQL (most ids, versions, counts); BIGINT for the event journal and audit ids.
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# A whole number as text (a path or query parameter): more digits than any bound needs is refused before
# it is converted.
WHOLE_NUMBER = re.compile(r"0*[0-9]{1,19}")
DATE_PATTERN = "^(?!9999)[0-9]{4}-[0-9]{2}-[0-9]{2}$"
# Text PostgreSQL cannot store (NUL), or that is no text at all (a lone surrogate, which JSON can carry).
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
STORABLE_PATTERN = "^[^\\u0000\\ud800-\\udfff]*$"


class Spec(Protocol[T_co]):
    """One value of a request: parse() checks and converts it, schema() describes what it accepts."""

    def parse(self, value: object, name: str) -> T_co: ...

    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class Int:
    """A whole number within bounds (JSON: an integer, or a float with nothing after the point)."""

    minimum: int = 1
    maximum: int = INT32_MAX

    def parse(self, value: object, name: str) -> int:
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"'{name}' must be a whole number.")
        if not self.minimum <= value <= self.maximum:
            raise InvalidInput(f"'{name}' must be a whole number from {self.minimum} to {self.maximum}.")
        return value

    def parse_text(self, text: str, name: str) -> int:
        """The same rule for a path or query parameter."""
        if not WHOLE_NUMBER.fullmatch(text):
            raise InvalidInput(f"'{name}' must be a whole number from {self.minimum} to {self.maximum}.")
        return self.parse(int(text), name)

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


# An id of a row in an INTEGER-keyed table.
ID = Int(1, INT32_MAX)


@dataclass(frozen=True)
class Quantity:
    """A finite JSON number within bounds, as a Decimal."""

    minimum: Decimal
    maximum: Decimal
    exclusive_minimum: bool = False

    def parse(self, value: object, name: str) -> Decimal:
        message = (
            f"'{name}' must be a number more than {self.minimum}, at most {self.maximum}."
            if self.exclusive_minimum
            else f"'{name}' must be a number from {self.minimum} to {self.maximum}."
        )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInput(message)
        number = Decimal(str(value))
        if not number.is_finite():
            raise InvalidInput(message)
        low_ok = number > self.minimum if self.exclusive_minimum else number >= self.minimum
        if not low_ok or number > self.maximum:
            raise InvalidInput(message)
        return number

    def schema(self) -> dict[str, Any]:
        low = "exclusiveMinimum" if self.exclusive_minimum else "minimum"
        return {"type": "number", low: float(self.minimum), "maximum": float(self.maximum)}


@dataclass(frozen=True)
class Text:
    """A string of bounded length; `strip` gives it back without surrounding blanks (and then a blank
    string counts as empty)."""

    max_length: int
    min_length: int = 0
    pattern: str | None = None
    strip: bool = False
    message: str | None = None

    def parse(self, value: object, name: str) -> str:
        message = self.message or (
            f"'{name}' must be text of {self.min_length} to {self.max_length} characters."
            if self.min_length
            else f"'{name}' must be text of at most {self.max_length} characters."
        )
        if not isinstance(value, str) or len(value) > self.max_length:
            raise InvalidInput(message)
        if UNSTORABLE.search(value):
            raise InvalidInput(f"'{name}' holds a NUL or an unpaired surrogate character; send plain text.")
        text = value.strip() if self.strip else value
        if len(text) < self.min_length or (self.pattern and not re.fullmatch(self.pattern, value)):
            raise InvalidInput(message)
        return text

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
        patterns = [STORABLE_PATTERN]
        if self.min_length:
            out["minLength"] = self.min_length
            if self.strip:
                # Blanks around the text do not count.
                patterns.append(r"\S")
        if self.pattern:
            patterns.append(f"^(?:{self.pattern})$")
        if len(patterns) == 1:
            return {**out, "pattern": patterns[0]}
        return {**out, "allOf": [{"pattern": p} for p in patterns]}


@dataclass(frozen=True)
class AnyText:
    """Any text: for a parameter whose reader takes it as it comes."""

    def parse(self, value: object, name: str) -> str:
        if not isinstance(value, str):
            raise InvalidInput(f"'{name}' must be text.")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string"}


@dataclass(frozen=True)
class OneOf:
    """One of a fixed vocabulary of strings."""

    values: Sequence[str]
    message: str | None = None

    def parse(self, value: object, name: str) -> str:
        if not isinstance(value, str) or value not in self.values:
            raise InvalidInput(self.message or f"'{name}' must be one of {', '.join(self.values)}.")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.values)}


@dataclass(frozen=True)
class Flag:
    def parse(self, value: object, name: str) -> bool:
        if not isinstance(value, bool):
            raise InvalidInput(f"'{name}' is true or false.")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Uuid:
    message: str | None = None

    def parse(self, value: object, name: str) -> str:
        try:
            if not isinstance(value, str) or len(value) > 64:
                raise ValueError(value)
            return str(uuid.UUID(value))
        except ValueError as exc:
            raise InvalidInput(self.message or f"'{name}' must be a UUID.") from exc

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "uuid", "maxLength": 64}


@dataclass(frozen=True)
class Date:
    """A calendar date, YYYY-MM-DD, before the calendar's last year (so that its next day exists)."""

    example: str = "2027-06-30"

    def parse(self, value: object, name: str) -> dt.date:
        message = f"'{name}' must be a date like {self.example}, before the year 9999."
        if not isinstance(value, str) or not re.fullmatch(DATE_PATTERN, value):
            raise InvalidInput(message)
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise InvalidInput(message) from exc

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date", "pattern": DATE_PATTERN, "example": self.example}


@dataclass(frozen=True)
class ListOf(Generic[T]):
    """A list of at most `max_items` items, each checked by `item`; `unique` drops repeats."""

    item: Spec[T]
    max_items: int
    message: str | None = None

    def parse(self, value: object, name: str) -> list[T]:
        if not isinstance(value, list) or len(value) > self.max_items:
            raise InvalidInput(self.message or f"'{name}' must be a list of at most {self.max_items} items.")
        try:
            return [self.item.parse(v, name) for v in value]
        except InvalidInput as exc:
            raise InvalidInput(self.message or exc.message) from exc

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "maxItems": self.max_items}


@dataclass(frozen=True)
class Nullable(Generic[T]):
    """The spec's value, or null (given as None)."""

    inner: Spec[T]

    def parse(self, value: object, name: str) -> T | None:
        return None if value is None else self.inner.parse(value, name)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [self.inner.schema(), {"type": "null"}]}


@dataclass(frozen=True)
class Object:
    """A JSON object inside a body (an item of a list, say), checked by its own fields."""

    body: Body

    def parse(self, value: object, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInput(f"'{name}' must hold objects.")
        return self.body.parse(value)

    def schema(self) -> dict[str, Any]:
        return self.body.schema()


@dataclass(frozen=True)
class AnyObject:
    """A JSON object passed on whole to what understands it (a WebAuthn credential, say)."""

    def parse(self, value: object, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InvalidInput(f"'{name}' must be an object.")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "object"}


def parse_field(spec: Spec[T], value: object, name: str) -> T:
    """The spec's value; a refusal names the field (detail.field), so a client can point at it."""
    try:
        return spec.parse(value, name)
    except InvalidInput as exc:
        raise InvalidInput(exc.message, field=name) from exc


@dataclass(frozen=True)
class Field:
    spec: Spec[Any]
    required: bool = False
    description: str | None = None


@dataclass(frozen=True)
class Body:
    """A JSON object's fields: each present field is checked by its spec; unknown fields are ignored (a
    newer client may send more), a missing required one is refused."""

    fields: Mapping[str, Field]
    # A rule across fields that a per-field schema cannot say (checked after the fields).
    check: Callable[[dict[str, Any]], None] | None = field(default=None, compare=False)
    description: str | None = None

    def parse(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The fields that were sent, converted; absent optional fields are left out."""
        out: dict[str, Any] = {}
        for name, f in self.fields.items():
            if name not in body:
                if f.required:
                    raise InvalidInput(f"'{name}' is required.", field=name)
                continue
            out[name] = parse_field(f.spec, body[name], name)
        if self.check is not None:
            self.check(out)
        return out

    def schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {
                name: {**f.spec.schema(), **({"description": f.description} if f.description else {})}
                for name, f in self.fields.items()
            },
        }
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out


def day_range(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """A period of whole UTC days, both inclusive, as the instants it runs from and up to (the start of
    the day after `end`). One that ends before it starts is refused: its report would be empty, and
    read as a period with nothing in it."""
    if end < start:
        raise InvalidInput(f"The period ends ({end}) before it starts ({start}).")
    return (
        dt.datetime.combine(start, dt.time(), dt.UTC),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC),
    )
