"""The pure parts both clients share: backoff arithmetic and value conversion."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

import persona
from persona import _convert
from persona.v1 import memory_pb2


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = persona.RetryPolicy(initial_backoff_s=0.1, max_backoff_s=0.5, backoff_multiplier=2)
    assert [policy.backoff(n, lambda: 1.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.5]
    assert policy.backoff(3, lambda: 0.5) == pytest.approx(0.2)  # full jitter: [0, ceiling]
    assert policy.backoff(1, lambda: 0.0) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"initial_backoff_s": -1}, {"backoff_multiplier": 0.5}],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        persona.RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(AttributeError):
        persona.RetryPolicy().max_attempts = 5  # type: ignore[misc]
    assert persona.NO_RETRY.max_attempts == 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2023, 5, 8, 13, 56), datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),  # naive = UTC
        (
            datetime(2023, 5, 8, 15, 56, tzinfo=timezone(timedelta(hours=2))),
            datetime(2023, 5, 8, 13, 56, tzinfo=UTC),
        ),
        (date(2023, 5, 8), datetime(2023, 5, 8, tzinfo=UTC)),
        ("2023-05-08T13:56:00Z", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        ("2023-05-08T13:56:00", datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
        (Timestamp(seconds=1683554160), datetime(2023, 5, 8, 13, 56, tzinfo=UTC)),
    ],
)
def test_timestamps(value: persona.TimestampLike, expected: datetime) -> None:
    assert _convert.to_timestamp(value, "f").ToDatetime(tzinfo=UTC) == expected


def test_timestamp_errors() -> None:
    with pytest.raises(persona.InvalidArgumentError) as caught:
        _convert.to_timestamp("tomorrow", "items[2].occurred_at")
    assert caught.value.field_violations[0].field == "items[2].occurred_at"
    with pytest.raises(TypeError):
        _convert.to_timestamp(1683554160, "f")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    ["episode", "EPISODE", "Memory_Type_Episode", " episode ", memory_pb2.MEMORY_TYPE_EPISODE, 1],
)
def test_memory_type_spellings(value: persona.MemoryTypeLike) -> None:
    assert _convert.memory_type(value, "types[0]") == memory_pb2.MEMORY_TYPE_EPISODE


def test_enum_errors() -> None:
    with pytest.raises(persona.InvalidArgumentError, match="expected one of episode, psyche"):
        _convert.memory_type("episodes", "types[0]")
    with pytest.raises(TypeError):
        _convert.memory_type(True, "types[0]")
    # an unknown number passes: a newer server may know it
    assert _convert.memory_type(9, "types[0]") == 9
    assert _convert.source_type("chat-message", "f") == memory_pb2.SOURCE_TYPE_CHAT_MESSAGE
    assert _convert.chat_role("assistant", "f") == memory_pb2.CHAT_ROLE_ASSISTANT


def test_ingest_item_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(TypeError, match="unknown item field"):
        _convert.ingest_item({"text": "x", "txt": "y"}, "items[0]")
    item = _convert.ingest_item({"text": "x", "source_id": "s"}, "items[0]")
    assert (item.text, item.source_id, item.HasField("occurred_at")) == ("x", "s", False)
