from __future__ import annotations

from datetime import UTC, datetime

import pytest

from persona_server.cli.timeparse import parse_datetime


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),  # no zone: UTC
        ("2023-05-08", datetime(2023, 5, 8, tzinfo=UTC)),
        ("2023-05-08T13:56:00Z", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("2023-05-08T13:56:00+02:00", datetime(2023, 5, 8, 11, 56, tzinfo=UTC)),
        ("2023-05-08T13:56:00-05:30", datetime(2023, 5, 8, 19, 26, tzinfo=UTC)),
        ("2023-05-08 13:56", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("  2023-05-08T13:56:00Z \n", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        (
            "2023-05-08T13:56:00.123456789Z",  # RFC 3339 nanoseconds: truncated to micro
            datetime(2023, 5, 8, 13, 56, 0, 123456, tzinfo=UTC),
        ),
    ],
)
def test_parses_iso_8601(text: str, expected: datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_far_future_is_not_the_clis_business() -> None:
    # The server rejects it (more than a day ahead); the CLI must let it through.
    assert parse_datetime("9999-12-31T00:00:00Z").year == 9999
    assert parse_datetime("1900-01-01").year == 1900


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2023-13-01", "2023-05-08T25:00", "08/05/2023", "12345"]
)
def test_non_dates_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match=r"ISO 8601"):
        parse_datetime(text)


def test_offset_that_leaves_the_calendar() -> None:
    with pytest.raises(ValueError, match="outside the years"):
        parse_datetime("0001-01-01T00:00:00+05:00")
