"""Passages: the grouping of ranked neighbouring episodes into one result (pure function) and
what Recall returns with it, on small hand-made conversations whose evidence is known."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import Episode, MemoryType, SourceType, UserRef
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.ingest import IngestService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.passages import passages, same_sitting
from persona_server.services.recall import RecallService, RecallTuning, context_block

# --- the grouping ---------------------------------------------------------------------------

# A chain e1 .. e9 (ids shaped like episode ids), each episode near the two on either side.
CHAIN = [f"ep_{i}" for i in range(1, 10)]
NEAR = {
    e: [n for n in CHAIN if n != e and abs(CHAIN.index(n) - i) <= 2] for i, e in enumerate(CHAIN)
}


def always(_leader: str, _member: str, _candidate: str) -> bool:
    return True


def group(ranked: Sequence[str], **kw: object) -> list[list[str]]:
    options: dict[str, object] = {"size": 3, "depth": 60, "joinable": always}
    options.update(kw)
    return passages(ranked, NEAR, **options)  # type: ignore[arg-type]


def test_neighbours_join_the_best_ranked_and_far_ones_lead_their_own() -> None:
    assert group(["ep_5", "ep_1", "ep_6", "ep_9", "ep_4"]) == [
        ["ep_5", "ep_6", "ep_4"],
        ["ep_1"],
        ["ep_9"],
    ]


def test_a_full_passage_takes_no_more_and_a_join_needs_a_near_member() -> None:
    # ep_7 is near ep_5 (two places) but the passage is full; ep_8 is near ep_7 only.
    assert group(["ep_5", "ep_4", "ep_6", "ep_7", "ep_8"]) == [
        ["ep_5", "ep_4", "ep_6"],
        ["ep_7", "ep_8"],
    ]


def test_a_chain_of_joins_grows_from_any_member() -> None:
    # ep_7 is not near ep_5's first neighbour ep_3, but it is near ep_5.
    assert group(["ep_3", "ep_5", "ep_7"], size=4) == [["ep_3", "ep_5", "ep_7"]]


def test_only_the_first_depth_candidates_join_and_size_one_is_no_grouping() -> None:
    assert group(["ep_5", "ep_1", "ep_6"], depth=2) == [["ep_5"], ["ep_1"], ["ep_6"]]
    assert group(["ep_5", "ep_6"], size=1) == [["ep_5"], ["ep_6"]]


def test_joinable_is_asked_with_the_leader_and_can_refuse() -> None:
    asked: list[tuple[str, str, str]] = []

    def not_ep6(leader: str, member: str, candidate: str) -> bool:
        asked.append((leader, member, candidate))
        return candidate != "ep_6"

    assert group(["ep_5", "ep_4", "ep_6"], joinable=not_ep6) == [["ep_5", "ep_4"], ["ep_6"]]
    assert ("ep_5", "ep_5", "ep_4") in asked


def test_derived_memories_travel_with_their_episode_either_way_round() -> None:
    sources = {"ps_a": ["ep_5"], "go_b": ["ep_9"], "go_c": ["ep_2"]}
    ranked = ["ep_5", "ps_a", "go_b", "ep_1", "ep_9", "go_c"]
    assert group(ranked, sources=sources) == [
        ["ep_5", "ps_a"],  # drawn from ep_5: joins it
        ["go_b", "ep_9"],  # ep_9 comes later: it joins the memory drawn from it
        ["ep_1"],
        ["go_c"],  # its episode was never ranked
    ]


def test_non_episodes_never_take_neighbours() -> None:
    near = {"ep_1": ["ep_2"], "ps_x": ["ep_2"]}
    out = passages(["ps_x", "ep_2", "ep_1"], near, size=3, depth=60, joinable=always)
    assert out == [["ps_x"], ["ep_2", "ep_1"]]


def test_leaders_and_limit() -> None:
    # Past `leaders`, a candidate may still join but not lead.
    assert group(["ep_1", "ep_9", "ep_2", "ep_5"], leaders=2) == [["ep_1", "ep_2"], ["ep_9"]]
    # With a limit, grouping stops once enough results exist past the joining depth.
    assert group(["ep_1", "ep_9", "ep_5", "ep_2"], depth=2, limit=2) == [["ep_1"], ["ep_9"]]


def test_same_sitting_needs_two_episodes_of_one_source_kind_close_in_time() -> None:
    t0 = datetime(2024, 5, 1, 12, tzinfo=UTC)

    def ep(minutes: int, kind: SourceType = SourceType.CHAT_MESSAGE) -> Episode:
        return Episode(
            id="ep_x",
            text="x",
            source_id=f"s{minutes}",
            occurred_at=t0 + timedelta(minutes=minutes),
            recorded_at=t0,
            source_type=kind,
        )

    hour = timedelta(hours=1)
    assert same_sitting(ep(0), ep(59), hour)
    assert not same_sitting(ep(0), ep(61), hour)
    assert not same_sitting(ep(0), ep(1, SourceType.EMAIL), hour)


# --- through Recall, on a hand-made conversation --------------------------------------------

USER = UserRef(tenant="t", user_id="u")
DAY1 = datetime(2024, 3, 1, 18, tzinfo=UTC)
DAY2 = datetime(2024, 3, 9, 18, tzinfo=UTC)

# Two sittings a week apart. The answer to "what instrument is Ana learning, and who teaches
# her?" is in turns a2 (the instrument) and a4 (the teacher), which sit two places apart in the
# first sitting; b1 mentions the instrument again a week later.
CONVERSATION = [
    ("a1", DAY1, "Bo", "How was your week? Anything new?"),
    ("a2", DAY1, "Ana", "I finally started learning the cello this week."),
    ("a3", DAY1, "Bo", "No way! Is it hard?"),
    ("a4", DAY1, "Ana", "My teacher, Mr. Olsen, says my cello bowing is getting steady."),
    ("a5", DAY1, "Bo", "I spent the weekend fixing my bike."),
    ("a6", DAY1, "Ana", "Did you get the chain working again?"),
    ("a7", DAY1, "Bo", "Yes, new chain and brakes. It rides like new."),
    ("b1", DAY2, "Ana", "Cello practice went well, I played a whole piece."),
    ("b2", DAY2, "Bo", "We are planning a hike up the coast next month."),
    ("b3", DAY2, "Ana", "Send me the route, I would love to join the hike."),
]


@pytest.fixture
async def store(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[SqliteGraphStore]:
    s = SqliteGraphStore(tmp_path / "persona.db")
    await s.open(embedding_model=embedder.model_id, dimension=embedder.dimension)
    await IngestService(s, embedder, ChangeNotifier()).ingest(
        IngestCommand(
            USER,
            [
                NewItem(
                    text=text,
                    source_id=sid,
                    occurred_at=when,
                    source_type=SourceType.CHAT_MESSAGE,
                    speaker=speaker,
                )
                for sid, when, speaker, text in CONVERSATION
            ],
        )
    )
    try:
        yield s
    finally:
        await s.close()


def credited(out_results: Sequence[object], k: int) -> set[str]:
    return {
        s
        for r in out_results[:k]
        for m in (r.memory, *r.joined)  # type: ignore[attr-defined]
        for s in m.source_ids
    }


async def test_recall_returns_the_two_answer_turns_as_one_passage(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    query = "What instrument is Ana learning and what does her cello teacher say?"
    recall = RecallService(store, embedder, RecallTuning(passage_floor=0.0))
    out = await recall.recall(RecallQuery(USER, query, max_results=3))
    first = out.results[0]
    members = [first.memory, *first.joined]
    assert {"a2", "a4"} <= {s for m in members for s in m.source_ids}
    # Event-time order inside the passage, and only episodes of the first sitting.
    joined_times = [m.occurred_at for m in first.joined]
    assert all(t == DAY1 for t in joined_times)
    assert len(members) <= RecallTuning().passage_size
    # The passage is one result in the context block, its episodes on lines of their own.
    block = context_block(out.results)
    assert block.startswith("[1] ")
    assert "cello" in block.split("[2]")[0]

    alone = RecallService(store, embedder, RecallTuning(passage_size=1))
    single = await alone.recall(RecallQuery(USER, query, max_results=3))
    assert all(not r.joined for r in single.results)
    # Grouped, the first result holds at least as much of the evidence as the first two alone.
    assert credited(out.results, 1) >= credited(single.results, 1)


async def test_a_passage_never_spans_two_sittings(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    # a7 and b1 are next to each other in the chain but a week apart.
    query = "new bike chain and brakes, and cello practice"

    def days_per_result(results: Sequence[object]) -> list[int]:
        return [
            len({m.occurred_at for m in (r.memory, *r.joined) if m.type is MemoryType.EPISODE})  # type: ignore[attr-defined]
            for r in results
        ]

    recall = RecallService(store, embedder, RecallTuning(passage_floor=0.0))
    out = await recall.recall(RecallQuery(USER, query, max_results=5))
    assert max(days_per_result(out.results)) == 1
    # Without the sitting rule the same query does join across the week: the rule is what
    # keeps them apart.
    any_gap = RecallService(store, embedder, RecallTuning(passage_floor=0.0, passage_gap_s=1e9))
    loose = await any_gap.recall(RecallQuery(USER, query, max_results=5))
    assert max(days_per_result(loose.results)) == 2


async def test_only_episodes_that_matched_themselves_join(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    # Search depth 3 (one result asked for): a few turns are hits of the vector and full-text
    # channels (the only ones here); their chain neighbours are reached by the temporal
    # expansion and inherit score without matching.
    query = "What does Ana's teacher say about her cello bowing?"
    shallow = {"candidates": 1, "passage_floor": 0.0}
    vector = await embedder.embed([query])
    hits = {h.memory_id for h in await store.search.vector(USER, vector, 3, MemoryFilter())}
    hits |= {h.memory_id for h in await store.search.text(USER, query, 3, MemoryFilter())}

    async def joined(own_match: bool) -> list[str]:
        tuning = RecallTuning(passage_own_match=own_match, **shallow)
        out = await RecallService(store, embedder, tuning).recall(
            RecallQuery(USER, query, max_results=1)
        )
        return [m.id for m in out.results[0].joined]

    with_rule = await joined(True)
    without = await joined(False)
    assert with_rule and set(with_rule) <= hits
    # Without the rule, a neighbour that only inherited score joins the passage.
    assert set(without) - hits
