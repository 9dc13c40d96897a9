"""`convert.timestamp` is `Timestamp.FromDatetime`, faster: any aware time, naive read as UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import timestamp_pb2
from hypothesis import given
from hypothesis import strategies as st

from persona_server.transport.convert import timestamp

OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)


def reference(value: datetime) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), OFFSETS)
def test_aware_times_match_from_datetime(naive: datetime, tz: timezone) -> None:
    value = naive.replace(tzinfo=tz)
    assert timestamp(value) == reference(value)


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)))
def test_naive_times_are_read_as_utc(value: datetime) -> None:
    assert timestamp(value) == reference(value)
    assert timestamp(value) == timestamp(value.replace(tzinfo=UTC))


def test_before_the_epoch_keeps_nanos_positive() -> None:
    ts = timestamp(datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC))
    assert (ts.seconds, ts.nanos) == (-1, 500_000_000)
