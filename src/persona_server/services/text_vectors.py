"""A bounded cache of texts' embeddings, least recently used out first.

Text -> vector does not depend on the user, so one cache serves them all: Recall keeps the
vectors of unnamed queries in one (a context stream recalls the same query on every change),
the related-words channel the vectors of query words that are in no user's vocabulary.
"""

from __future__ import annotations

from collections import OrderedDict

from persona_server.ports.graph_store import Vector


class TextVectorCache:
    """Embeddings of texts, least recently used out past `size` entries."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._vectors: OrderedDict[str, Vector] = OrderedDict()

    def get(self, text: str) -> Vector | None:
        vector = self._vectors.get(text)
        if vector is not None:
            self._vectors.move_to_end(text)
        return vector

    def put(self, text: str, vector: Vector) -> None:
        self._vectors[text] = vector
        self._vectors.move_to_end(text)
        while len(self._vectors) > self._size:
            self._vectors.popitem(last=False)

    def __len__(self) -> int:
        return len(self._vectors)
