"""The vocabulary of counselling, in one place: record kinds, a fill's counselling status, who declines."""

from __future__ import annotations

import enum
from typing import Final


class RecordKind(enum.StrEnum):
    VIDEO = "video"
    PHONE = "phone"
    DECLINED = "declined"


class Status(enum.StrEnum):
    """Where a fill's counselling stands (fills.counselling): required or not, and once recorded, how."""

    NOT_REQUIRED = "not_required"
    DUE = "due"
    COUNSELLED_VIDEO = "counselled_video"
    COUNSELLED_PHONE = "counselled_phone"
    DECLINED = "declined"


STATUS_OF: Final = {
    RecordKind.VIDEO: Status.COUNSELLED_VIDEO,
    RecordKind.PHONE: Status.COUNSELLED_PHONE,
    RecordKind.DECLINED: Status.DECLINED,
}
# A fill with one of these has its record: nothing more is due.
RECORDED: Final = tuple(STATUS_OF.values())
# Who declined, as a role: never a name (a name would be patient data in a record others read).
DECLINED_BY: Final = ("patient", "agent")
MAX_NOTE: Final = 2000
# Where the pharmacist's record is taken: the consultation's kind that counsels.
COUNSELLING_CALL: Final = "counsel"


def initial_status(required: bool) -> Status:
    return Status.DUE if required else Status.NOT_REQUIRED
