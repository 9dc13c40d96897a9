"""The relationships of a user's memory graph, as export and import see them.

Every relationship joins two memories of one user and has no properties of its own: validity,
reinforcement and times live on the memories.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class EdgeKind(StrEnum):
    NEXT = "next"  # episode -> the next episode in event-time order
    MENTIONS = "mentions"  # episode -> entity it names
    DERIVED_FROM = "derived_from"  # derived memory -> episode it came from
    SUBJECT = "subject"  # fact -> its subject entity
    OBJECT = "object"  # fact -> its object entity


@dataclass(frozen=True)
class Edge:
    kind: EdgeKind
    from_id: str
    to_id: str
