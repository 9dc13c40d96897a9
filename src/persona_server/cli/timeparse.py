"""ISO 8601 for the command line: what a user types -> an aware UTC datetime.

Only conversion is checked here. A date the server would refuse (far in the future, before
the epoch) is still a date: it goes to the server, which answers INVALID_ARGUMENT itself.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

# datetime.fromisoformat takes at most 6 fractional digits; RFC 3339 timestamps (e.g. from Go
# or protobuf JSON) may carry 9. Nanoseconds cannot be represented anyway: truncate them.
_EXTRA_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(text: str) -> datetime:
    """`2023-05-08`, `2023-05-08T13:56:00` (UTC), `...Z`, `...+02:00` -> UTC datetime.

    Raises ValueError saying why the text is not a date.
    """
    value = text.strip()
    if not value:
        raise ValueError(
            "empty; expected an ISO 8601 date or date-time such as 2023-05-08T13:56:00Z"
        )
    try:
        parsed = datetime.fromisoformat(_EXTRA_FRACTION.sub(r"\1", value, count=1))
    except ValueError:
        raise ValueError(
            f"{text!r} is not an ISO 8601 date or date-time (e.g. 2023-05-08 or "
            "2023-05-08T13:56:00Z)"
        ) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        # A time without a zone is UTC, never the local zone of whoever runs the command:
        # the same command must store the same instant on every machine.
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+05:00 is before year 1 in UTC
        raise ValueError(f"{text!r} is outside the years 1 to 9999 once converted to UTC") from None
