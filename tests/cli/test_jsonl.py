from __future__ import annotations

import json
from datetime import UTC, datetime

from persona_server.cli.jsonl import Defaults, parse_lines


def _lines(*objects: object) -> list[bytes]:
    return [o if isinstance(o, bytes) else json.dumps(o).encode() for o in objects]


def test_good_file_with_blank_lines() -> None:
    parsed = parse_lines(
        [
            b'{"text": "I moved to Lisbon", "source_id": "m1", "occurred_at": "2023-05-08"}',
            b"",
            b"   ",
            b'{"text": "bought a bike", "metadata": {"channel": "sms"}, "speaker": "Ana"}',
        ]
    )
    assert parsed.bad == []
    assert [line.number for line in parsed.lines] == [1, 4]
    first, second = (line.item for line in parsed.lines)
    assert first.source_id == "m1"
    assert first.occurred_at == datetime(2023, 5, 8, tzinfo=UTC)
    assert dict(second.metadata) == {"channel": "sms"} and second.speaker == "Ana"


def test_every_bad_line_is_named_with_its_reason() -> None:
    parsed = parse_lines(
        _lines(
            {"text": "fine"},
            {"source_id": "x"},
            b"{not json",
            {"text": 42},
            {"text": "t", "occurred_at": "last tuesday"},
            {"text": "t", "metadata": {"k": 1}},
            ["text"],
            {"text": "t", "txt": "typo"},
            {"text": "t", "source_type": "fax"},
            b"\xff\xfe",
        )
    )
    reasons = {bad.number: bad.reason for bad in parsed.bad}
    assert sorted(reasons) == [2, 3, 4, 5, 6, 7, 8, 9, 10]
    assert str(parsed.bad[0]) == "line 2: text is required"
    assert reasons[3].startswith("not valid JSON")
    assert reasons[4] == "text must be a string"
    assert reasons[5].startswith("occurred_at: 'last tuesday' is not an ISO 8601")
    assert reasons[6] == "metadata.k must be a string"
    assert reasons[7] == "expected a JSON object, got list"
    assert "unknown field(s) txt" in reasons[8]
    assert "source_type: unknown value 'fax'" in reasons[9]
    assert reasons[10].startswith("not valid UTF-8")
    assert [line.number for line in parsed.lines] == [1]


def test_several_problems_on_one_line_are_all_reported() -> None:
    parsed = parse_lines(_lines({"occurred_at": 5, "speaker": ["a"]}))
    assert parsed.bad[0].reason == (
        "text is required; speaker must be a string; occurred_at must be an ISO 8601 string"
    )


def test_values_the_server_judges_pass_through() -> None:
    # Empty text, a far-future date, a 1 MB text: the server's to reject, not the CLI's.
    parsed = parse_lines(
        _lines({"text": ""}, {"text": "x", "occurred_at": "9999-01-01"}, {"text": "y" * 1_000_000})
    )
    assert parsed.bad == [] and len(parsed.lines) == 3


def test_command_line_defaults_fill_in() -> None:
    defaults = Defaults(
        occurred_at=datetime(2020, 1, 1, tzinfo=UTC), speaker="Bob", metadata={"a": "1", "b": "2"}
    )
    parsed = parse_lines(
        _lines(
            {"text": "x"},
            {"text": "y", "occurred_at": "2021-01-01", "speaker": "Ann", "metadata": {"b": "3"}},
        ),
        defaults,
    )
    x, y = (line.item for line in parsed.lines)
    assert (x.occurred_at, x.speaker, dict(x.metadata)) == (
        datetime(2020, 1, 1, tzinfo=UTC),
        "Bob",
        {"a": "1", "b": "2"},
    )
    assert (y.occurred_at, y.speaker, dict(y.metadata)) == (
        datetime(2021, 1, 1, tzinfo=UTC),
        "Ann",
        {"a": "1", "b": "3"},
    )


def test_enum_names_and_bom() -> None:
    parsed = parse_lines(
        [b'\xef\xbb\xbf{"text": "hi", "source_type": "chat_message", "role": "USER"}']
    )
    item = parsed.lines[0].item
    assert (item.source_type, item.role) == ("SOURCE_TYPE_CHAT_MESSAGE", "CHAT_ROLE_USER")
