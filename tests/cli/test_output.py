"""The exact JSON shapes scripts rely on."""

from __future__ import annotations

import json

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from persona import FieldViolation, InvalidArgumentError, UnavailableError
from persona.v1 import memory_pb2
from persona.v1 import memory_service_pb2 as pb
from persona_server.cli import output


def _memory(
    memory_id: str = "ep_1",
    memory_type: int = memory_pb2.MEMORY_TYPE_EPISODE,
    *,
    occurred: bool = True,
) -> memory_pb2.Memory:
    m = memory_pb2.Memory(
        id=memory_id,
        type=memory_type,  # type: ignore[arg-type]
        user_id="u1",
        text="I moved to Lisbon",
        provenance=memory_pb2.Provenance(source_ids=["D1:3", "D1:4"], episode_ids=["ep_1"]),
    )
    if occurred:
        m.occurred_at.FromSeconds(1683554160)  # 2023-05-08T13:56:00Z
    return m


def test_recall_json_exact_shape() -> None:
    response = pb.RecallResponse(
        results=[
            pb.RecallResult(memory=_memory(), score=0.5),
            pb.RecallResult(
                memory=_memory("fa_9", memory_pb2.MEMORY_TYPE_FACT, occurred=False), score=0.25
            ),
        ],
        context_block="not in the JSON",
    )
    assert output.recall_json(response) == {
        "results": [
            {
                "id": "ep_1",
                "type": "episode",
                "text": "I moved to Lisbon",
                "score": 0.5,
                "strength": 0.0,
                "source_ids": ["D1:3", "D1:4"],
                "occurred_at": "2023-05-08T13:56:00Z",
            },
            {
                "id": "fa_9",
                "type": "fact",
                "text": "I moved to Lisbon",
                "score": 0.25,
                "strength": 0.0,
                "source_ids": ["D1:3", "D1:4"],
                "occurred_at": None,
            },
        ]
    }
    assert list(output.recall_json(response)["results"][0]) == [
        "id",
        "type",
        "text",
        "score",
        "strength",
        "source_ids",
        "occurred_at",
    ]


def test_every_memory_type_has_a_lower_case_name() -> None:
    names = [output.memory_type(v) for v in memory_pb2.MemoryType.values() if v]
    assert names == ["episode", "psyche", "goal", "entity", "fact"]
    assert output.memory_type(42) == "unknown_42"


def test_recall_json_with_explain_adds_channels() -> None:
    result = pb.RecallResult(
        memory=_memory(),
        score=0.5,
        channels=[pb.ChannelScore(channel="vector", rank=1, score=0.83)],
    )
    out = output.recall_json(pb.RecallResponse(results=[result]), explain=True)
    assert out["results"][0]["channels"] == [{"channel": "vector", "rank": 1, "score": 0.83}]


def test_a_passage_lists_its_joined_memories_in_json_and_text() -> None:
    joined = _memory("ep_2")
    joined.text = "Moving was hard but worth it"
    result = pb.RecallResult(memory=_memory(), score=0.5, joined=[joined])
    response = pb.RecallResponse(results=[result])
    out = output.recall_json(response)["results"][0]
    assert list(out)[-1] == "joined"
    assert out["joined"] == [
        {
            "id": "ep_2",
            "type": "episode",
            "text": "Moving was hard but worth it",
            "source_ids": ["D1:3", "D1:4"],
            "occurred_at": "2023-05-08T13:56:00Z",
        }
    ]
    text = output.recall_text(response)
    assert "    + episode  Moving was hard but worth it" in text.splitlines()


def test_ask_json() -> None:
    response = pb.AskStructuredResponse(
        answer_json='{"city": "Lisbon", "since": null}',
        citations=[pb.Citation(memory_id="ep_1"), pb.Citation(memory_id="fa_2")],
        answered=True,
    )
    assert output.ask_json(response) == {
        "answer": {"city": "Lisbon", "since": None},
        "citations": ["ep_1", "fa_2"],
    }


def test_stream_json_per_kind() -> None:
    snapshot = pb.StreamContextResponse(
        resume_token="t1",
        snapshot=pb.ContextSnapshot(results=[pb.RecallResult(memory=_memory(), score=1.0)]),
    )
    update = pb.StreamContextResponse(
        resume_token="t2",
        update=pb.ContextUpdate(
            changes=[
                pb.ContextChange(
                    kind=pb.CHANGE_KIND_ADDED,
                    result=pb.RecallResult(memory=_memory("ep_2"), score=0.5),
                    rank=1,
                ),
                pb.ContextChange(
                    kind=pb.CHANGE_KIND_DELETED,
                    result=pb.RecallResult(
                        memory=memory_pb2.Memory(id="ep_1", type=memory_pb2.MEMORY_TYPE_EPISODE)
                    ),
                ),
            ],
            members=[
                pb.ContextMember(
                    memory_id="ep_2", type=memory_pb2.MEMORY_TYPE_EPISODE, rank=1, score=0.5
                )
            ],
        ),
    )
    resync = pb.StreamContextResponse(
        resume_token="t4",
        resync=pb.ContextSnapshot(results=[pb.RecallResult(memory=_memory("ep_2"), score=1.0)]),
    )
    heartbeat = pb.StreamContextResponse(
        resume_token="t3", heartbeat=pb.Heartbeat(server_time=Timestamp(seconds=1))
    )
    assert output.stream_event_json(snapshot) == {
        "kind": "snapshot",
        "resume_token": "t1",
        "memories": [
            {
                "id": "ep_1",
                "type": "episode",
                "text": "I moved to Lisbon",
                "score": 1.0,
                "source_ids": ["D1:3", "D1:4"],
                "occurred_at": "2023-05-08T13:56:00Z",
            }
        ],
    }
    upd = output.stream_event_json(update)
    assert upd["kind"] == "update" and upd["resume_token"] == "t2"
    assert [(m["id"], m["change"], m["rank"]) for m in upd["memories"]] == [
        ("ep_2", "added", 1),
        ("ep_1", "deleted", 0),
    ]
    assert upd["members"] == [{"id": "ep_2", "type": "episode", "rank": 1, "score": 0.5}]
    assert set(upd["memories"][1]) == {
        "id",
        "type",
        "text",
        "score",
        "source_ids",
        "occurred_at",
        "change",
        "rank",
    }
    assert output.stream_event_json(heartbeat) == {
        "kind": "heartbeat",
        "resume_token": "t3",
        "server_time": "1970-01-01T00:00:01Z",
        "memories": [],
    }
    again = output.stream_event_json(resync)
    assert again["kind"] == "resync" and [m["id"] for m in again["memories"]] == ["ep_2"]
    assert "#1" in output.stream_event_text(update)


def test_ingest_json_lists_episode_ids_across_batches() -> None:
    batches = [
        pb.IngestResponse(
            results=[pb.IngestResult(episode_id="ep_1"), pb.IngestResult(episode_id="ep_2")]
        ),
        pb.IngestResponse(results=[pb.IngestResult(episode_id="ep_3")]),
    ]
    assert output.ingest_json(batches) == {"ids": ["ep_1", "ep_2", "ep_3"]}


def test_dumps_is_one_line_and_keeps_unicode() -> None:
    text = output.dumps({"text": "São Paulo\nnext"})
    assert "\n" not in text and "São" in text
    assert json.loads(text) == {"text": "São Paulo\nnext"}


def test_memory_json_for_get_and_list() -> None:
    m = _memory()
    m.episode.CopyFrom(memory_pb2.Episode(source_id="D1:3", speaker="Ana"))
    m.metadata["channel"] = "sms"
    out = output.memory_json(m)
    assert out["id"] == "ep_1" and out["type"] == "episode"
    assert out["metadata"] == {"channel": "sms"}
    assert out["detail"] == {"source_id": "D1:3", "speaker": "Ana"}
    assert out["recorded_at"] is None and out["invalid_at"] is None


def test_error_text_lists_violations_indented() -> None:
    error = InvalidArgumentError(
        "max_results must be between 1 and 100",
        field_violations=[FieldViolation("max_results", "must be between 1 and 100")],
    )
    assert output.error_text(error) == (
        "INVALID_ARGUMENT: max_results must be between 1 and 100\n"
        "  max_results: must be between 1 and 100"
    )
    assert output.error_text(UnavailableError("down")) == "UNAVAILABLE: down"
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
