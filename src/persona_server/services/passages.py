"""Passages: Recall's grouping of ranked episodes that sit next to each other in a conversation.

An answer is often spread over a few consecutive turns (a question and its reply, a story told
in three messages). Returned one by one, those turns take a result slot each and crowd out
evidence from elsewhere; returned as one passage, they take one slot and still pay for their
text (LoCoMo's context-size rule, DESIGN §4, charges a result for every turn it is credited
with). A passage is led by its best-ranked member; the episodes joined to it matched the query
on their own (they are ranked candidates, not padding) and lie within a few places of one of its
members in the event-time chain. Memories derived from a passage's episodes (a preference, a
goal) join it too instead of taking a slot of their own for the same words.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta

from persona_server.domain.ids import PREFIXES
from persona_server.domain.models import Episode, Memory, MemoryType


def passages(
    ranked: Sequence[str],
    near: Mapping[str, Sequence[str]],
    *,
    size: int,
    depth: int,
    joinable: Callable[[str, str, str], bool],
    sources: Mapping[str, Sequence[str]] | None = None,
    leaders: int | None = None,
    limit: int | None = None,
) -> list[list[str]]:
    """Group `ranked` (ids, best first) into results, each a list of ids led by its best.

    - An episode among the first `depth` joins the first earlier result that holds fewer than
      `size` episodes and an episode it is near to, when `joinable(leader, member, candidate)`.
      `near` maps an episode id to its chain neighbours within reach, as the store found them.
    - A derived memory joins the result that holds an episode it was drawn from (`sources`:
      derived memory id -> episode ids); if it comes first, those episodes join its result
      when their turn comes. What was said and what was drawn from it travel together.
    - Any other candidate leads a result of its own. Results keep rank order, so a result's
      place is its leader's. With `leaders`, only the first `leaders` candidates may lead;
      later ones join a result or are left out. With `limit`, grouping stops once that many
      results exist and no later candidate could join one.
    """
    sources = sources or {}
    adjacent: dict[str, set[str]] = {}
    for seed, neighbours in near.items():
        if not _is_episode(seed):
            continue  # only episodes sit in the chain
        for neighbour in neighbours:
            adjacent.setdefault(seed, set()).add(neighbour)
            adjacent.setdefault(neighbour, set()).add(seed)
    groups: list[list[str]] = []
    episodes_in: list[int] = []
    group_of: dict[str, int] = {}
    claimed: dict[str, int] = {}  # episode id -> the result of a memory drawn from it
    for position, candidate in enumerate(ranked):
        if limit is not None and len(groups) >= limit and position >= depth:
            break
        if candidate in group_of:
            continue
        episode = candidate.startswith(_EPISODE_PREFIX)
        index: int | None
        if episode:
            index = claimed.get(candidate)
            if index is None and size > 1 and position < depth:
                index = _group_to_join(
                    candidate, adjacent, groups, group_of, episodes_in, size, joinable
                )
        else:
            index = next((group_of[e] for e in sources.get(candidate, ()) if e in group_of), None)
        if index is None:
            if leaders is not None and position >= leaders:
                continue
            index = len(groups)
            groups.append([])
            episodes_in.append(0)
            for e in sources.get(candidate, ()):
                claimed.setdefault(e, index)
        groups[index].append(candidate)
        group_of[candidate] = index
        episodes_in[index] += episode
    return groups


def _group_to_join(
    candidate: str,
    adjacent: dict[str, set[str]],
    groups: list[list[str]],
    group_of: dict[str, int],
    episodes_in: list[int],
    size: int,
    joinable: Callable[[str, str, str], bool],
) -> int | None:
    """The earliest result with room for an episode that holds one next to `candidate`."""
    options = sorted((group_of[m], m) for m in adjacent.get(candidate, ()) if m in group_of)
    for index, member in options:
        if episodes_in[index] < size and joinable(groups[index][0], member, candidate):
            return index
    return None


_EPISODE_PREFIX = PREFIXES[MemoryType.EPISODE] + "_"


def _is_episode(memory_id: str) -> bool:
    # The id says the type (domain.ids); a prefix test, as this runs for every candidate.
    return memory_id.startswith(_EPISODE_PREFIX)


def same_sitting(a: Memory, b: Memory, gap: timedelta) -> bool:
    """Whether two memories are episodes of one conversation sitting: the same kind of source,
    at most `gap` apart in event time."""
    if not isinstance(a, Episode) or not isinstance(b, Episode):
        return False
    if a.source_type is not b.source_type or a.occurred_at is None or b.occurred_at is None:
        return False
    return abs(a.occurred_at - b.occurred_at) <= gap


def in_chain_order(episodes: Sequence[Memory]) -> list[Memory]:
    """Event-time order, ties in ingest order (the chain's own order)."""
    return sorted(
        episodes,
        key=lambda m: (m.occurred_at or m.recorded_at, m.seq if isinstance(m, Episode) else 0),
    )
