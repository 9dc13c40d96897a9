"""Plain retrieval baselines over raw documents, computed locally (no server).

- BM25 Okapi (k1=1.5, b=0.75) on lower-cased word tokens, written here so the benchmark needs
  no extra package.
- Dense: cosine similarity of all-MiniLM-L6-v2 embeddings, with the server's own local embedder.
- Reciprocal-rank fusion of the two (k=60).

Every function ranks documents by index and returns, per query, the indices of the best `k`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased runs of letters, digits and underscores; punctuation separates words."""
    return _WORD.findall(text.lower())


class BM25:
    """BM25 Okapi over a fixed corpus.

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5)), the non-negative form used by Lucene, so a
    term present in more than half of the documents still counts a little instead of
    subtracting from the score. Query terms count once per occurrence in the query.
    """

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        tokenised = [tokenize(doc) for doc in documents]
        self._tf = [Counter(tokens) for tokens in tokenised]
        lengths = np.array([len(tokens) for tokens in tokenised], dtype=np.float64)
        avg = float(lengths.mean()) if len(lengths) else 0.0
        # The length part of the denominator, per document.
        self._norm = k1 * (1.0 - b + b * lengths / avg) if avg > 0 else np.full(len(lengths), k1)
        df: Counter[str] = Counter()
        for tf in self._tf:
            df.update(tf.keys())
        n = len(documents)
        self._idf = {t: math.log(1.0 + (n - c + 0.5) / (c + 0.5)) for t, c in df.items()}
        # Postings: term -> (document indices, term frequencies), for scoring only matching docs.
        postings: dict[str, tuple[list[int], list[float]]] = {}
        for i, tf in enumerate(self._tf):
            for term, count in tf.items():
                docs, freqs = postings.setdefault(term, ([], []))
                docs.append(i)
                freqs.append(float(count))
        self._postings = {
            t: (np.array(d, dtype=np.int64), np.array(f, dtype=np.float64))
            for t, (d, f) in postings.items()
        }
        self._n = n

    def scores(self, query: str) -> npt.NDArray[np.float64]:
        out = np.zeros(self._n, dtype=np.float64)
        for term in tokenize(query):
            posting = self._postings.get(term)
            if posting is None:
                continue
            docs, freqs = posting
            out[docs] += self._idf[term] * freqs * (self.k1 + 1.0) / (freqs + self._norm[docs])
        return out


def top_k(scores: npt.NDArray[np.floating], k: int) -> list[int]:
    """Indices of the k highest scores, best first; ties keep document order (stable)."""
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k]]


def bm25_rankings(documents: Sequence[str], queries: Sequence[str], k: int) -> list[list[int]]:
    index = BM25(documents)
    return [top_k(index.scores(q), k) for q in queries]


def dense_rankings(
    embedder: LocalOnnxEmbedder, documents: Sequence[str], queries: Sequence[str], k: int
) -> list[list[int]]:
    doc_vecs = embedder.embed_sync(list(documents))
    query_vecs = embedder.embed_sync(list(queries))
    # The embedder L2-normalises, so the dot product is the cosine.
    sims = query_vecs @ doc_vecs.T
    return [top_k(row, k) for row in sims]


def rrf(rankings: Sequence[Sequence[int]], k: int, *, rrf_k: float = 60.0) -> list[int]:
    """Reciprocal-rank fusion of several rankings of the same documents."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, doc in enumerate(ranking, start=1):
            fused[doc] = fused.get(doc, 0.0) + 1.0 / (rrf_k + rank)
    # Ties: the document first seen wins (sorted is stable over dict insertion order).
    return sorted(fused, key=lambda d: -fused[d])[:k]
