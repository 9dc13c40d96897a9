"""Related words: what a user's own episodes say for the words of a query.

Questions that gather over many conversations ("What activities has Melanie done with her
family?") are answered by turns that share meaning but few words with them: the kids at the
museum, camping with the fam, pottery. Full-text finds the turns that repeat "family"; the
query's embedding ranks the rest below them. This module finds, for each content word of a
query, the words of the user's own episodes closest to it in the embedder's space ("family" ->
"kids", "fam", "parents"), which Recall then searches in full-text as a channel of its own.

Only the user's own words are candidates: the closest words of a whole language are mostly ones
this user never wrote, which match nothing and crowd out those that would (measured on LoCoMo
dev: a 21,000-word general vocabulary instead of the user's lowered both halves' recall@10;
BENCHMARKS.md, "Recall round four"). A word's vector is the embedder's vector of the word alone.

The vocabulary of a user is read from the store once (their episodes' texts, page by page) and
kept current from the change log: each use reads the user's latest change number, and the
episodes added or changed since are read and their words added. A deleted episode (DeleteMemory,
retention) or a log that no longer continues the vocabulary's (pruned, or the user deleted and
written again) makes it read whole again, so no deleted text lingers in it. A vocabulary holds
at most `max_words` words (the first met). The first use for a user embeds every word not
already shared, which costs seconds for a large user (BENCHMARKS.md, "Recall round four"):
that read (and every refresh) runs as a task of its own, and a query waits for it at most
`wait_s`; past that the query goes on with the vocabulary held before, or without related words
(the channel is an enrichment), and a later one finds it built. Vocabularies are kept per
process, least recently used first out past a byte budget; the word vectors are shared between
users (a word's vector depends on the word alone), so the second user who writes "kids" does
not embed it again.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import Stemmer

from persona_server.domain.models import ChangeKind, Episode, MemoryType, UserRef
from persona_server.domain.words import content_word_counts, content_words
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.text_vectors import TextVectorCache

_EMBED_BATCH = 256
_YIELD_EVERY = 200


@dataclass
class _Vocabulary:
    """One user's words and their unit vectors; rows [0, n) are live."""

    dimension: int
    seq: int = 0  # the change log position the words reflect
    words: list[str] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)
    # In how many of the user's episodes each word is (an episode changed is counted again:
    # an over-count, which only makes the channel leave a word out sooner).
    episodes: list[int] = field(default_factory=list)
    speakers: set[str] = field(default_factory=set)  # casefolded parts of speakers' names
    matrix: npt.NDArray[np.float32] = field(init=False)

    def __post_init__(self) -> None:
        self.matrix = np.zeros((0, self.dimension), dtype=np.float32)

    @property
    def n(self) -> int:
        return len(self.words)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes) + 64 * len(self.words)

    def add(self, words: Sequence[str], vectors: npt.NDArray[np.float32]) -> None:
        if not words:
            return
        need = self.n + len(words)
        if need > self.matrix.shape[0]:
            grown = np.zeros((max(need, 2 * self.matrix.shape[0], 256), self.dimension), np.float32)
            grown[: self.n] = self.matrix[: self.n]
            self.matrix = grown
        self.matrix[self.n : need] = vectors
        for w in words:
            self.index[w] = len(self.words)
            self.words.append(w)
            self.episodes.append(0)

    def count(self, counts: dict[str, int]) -> None:
        for word, n in counts.items():
            i = self.index.get(word)
            if i is not None:
                self.episodes[i] += n


# OpenBLAS runs a product on all its threads above m*n*k = 262,144 (its SMP_THRESHOLD_MIN 65,536
# times GEMM_MULTITHREAD_THRESHOLD 4). For these small products (a few query words by a user's
# vocabulary) waking its threads while onnxruntime embeds the query on the same cores cost more
# than the product: on LoCoMo it was 60% of this module's time, and Recall p50 13.4 ms against
# 11.4 ms with OpenBLAS on one thread (BENCHMARKS.md, "Recall round four"). Blocks of the
# vocabulary under the threshold keep each product on the calling thread; the result is the same.
_SINGLE_THREAD_MNK = 262_144


def _similarities(
    vectors: npt.NDArray[np.float32], matrix: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """vectors @ matrix.T, in row blocks of `matrix` small enough for one BLAS thread."""
    rows = max(1, _SINGLE_THREAD_MNK // max(1, vectors.shape[0] * vectors.shape[1]) - 1)
    out = np.empty((vectors.shape[0], matrix.shape[0]), dtype=np.float32)
    for start in range(0, matrix.shape[0], rows):
        block = matrix[start : start + rows]
        out[:, start : start + len(block)] = vectors @ block.T
    return out


class RelatedWords:
    """For a query, the user's words closest in meaning to its content words.

    `per_word` words at most for each query word, each with a cosine of at least
    `min_similarity` to it; words sharing a stem with a query word are left out (full-text
    already matches them), as are the speakers' names (a name is not a topic: every turn of
    theirs would match). The words of one query are together in at most `max_episodes` of the
    user's episodes (counted when the vocabulary is read): full-text costs about a microsecond
    for each row a word matches, and for a large user the nearest words are often common ones
    ("dinner", "sister" at 100,000 memories: 5 ms of each Recall's full-text, for words whose
    low weight changes little). A word that does not fit is skipped and the next nearest tried.
    On LoCoMo dev the budget changes nothing down to 250 (BENCHMARKS.md, "Related words at scale").
    """

    def __init__(
        self,
        store: GraphStore,
        embedder: Embedder,
        *,
        per_word: int = 3,
        min_similarity: float = 0.6,
        max_episodes: int = 1000,
        max_bytes: int = 256 << 20,
        max_words: int = 20_000,
        max_shared_words: int = 50_000,
        page: int = 1000,
        max_changes: int = 2000,
        wait_s: float = 1.0,
        notifier: ChangeNotifier | None = None,
        recheck_s: float = 2.0,
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._per_word = per_word
        self._min_similarity = min_similarity
        self._max_episodes = max_episodes
        self._max_bytes = max_bytes
        self._max_words = max_words
        self._page = page
        self._max_changes = max_changes
        self._wait_s = wait_s
        # A user's vocabulary being read or refreshed: one task per user, shared by queries.
        self._pending: dict[tuple[str, str], asyncio.Task[_Vocabulary]] = {}
        # With a notifier, a held vocabulary is trusted without a store read until a local
        # write of its user, or for `recheck_s` (writes through other replicas): the change-log
        # read cost a query 4 ms p50 on LoCoMo, queued behind the other channels' reads.
        self._recheck_s = recheck_s if notifier is not None else 0.0
        self._checked: dict[tuple[str, str], float] = {}
        self._writes: dict[tuple[str, str], int] = {}  # local writes announced, per user
        if notifier is not None:
            notifier.watch(self._written)
        self.embedded_for_queries = 0  # words embedded at query time (for benchmarks)
        self._users: OrderedDict[tuple[str, str], _Vocabulary] = OrderedDict()
        self._shared = TextVectorCache(max_shared_words)
        self._stemmer = Stemmer.Stemmer("porter")

    async def for_query(self, user: UserRef, query: str) -> list[str]:
        terms = content_words(query)
        if not terms or self._per_word <= 0:
            return []
        vocab = await self._vocabulary(user)
        if vocab is None:
            return []
        terms = [t for t in terms if t not in vocab.speakers]
        if not terms or vocab.n == 0:
            return []
        stems_of = self._stemmer.stemWords(terms)
        vectors = await self._vectors(terms, vocab, count=True)
        sims = _similarities(vectors, vocab.matrix[: vocab.n])
        stems = set(stems_of)
        picked: list[str] = []
        spent = 0  # episodes the picked words are in, summed
        for row in sims:
            # A few more than needed: some share a stem with the query or were picked already.
            reach = min(vocab.n, 4 * self._per_word)
            best = np.argpartition(-row, reach - 1)[:reach]
            taken = 0
            for i in best[np.argsort(-row[best], kind="stable")]:
                if row[i] < self._min_similarity or taken >= self._per_word:
                    break
                word = vocab.words[i]
                if word in picked or self._stemmer.stemWord(word) in stems:
                    continue
                if spent + vocab.episodes[i] > self._max_episodes:
                    continue  # too common to pay for: the next one may not be
                picked.append(word)
                spent += vocab.episodes[i]
                taken += 1
        return picked

    async def speakers(self, user: UserRef) -> frozenset[str]:
        """The casefolded parts of the user's speakers' names (as `for_query` leaves them
        out). From the vocabulary held, as it is: Recall embeds its query only once it knows
        them, and a new speaker is rare, so this does not wait for the vocabulary's refresh
        (`for_query`, beside it, brings it up to date). A user not held yet is waited for as
        `for_query` waits (then none, if the read takes longer)."""
        held = self._users.get((user.tenant, user.user_id))
        vocab = held if held is not None else await self._vocabulary(user)
        return frozenset(vocab.speakers) if vocab is not None else frozenset()

    async def _vocabulary(self, user: UserRef) -> _Vocabulary | None:
        """The user's current vocabulary; when bringing it up to date takes longer than
        `wait_s` (it goes on in the background), the one held before, or None."""
        key = (user.tenant, user.user_id)
        held = self._users.get(key)
        checked = self._checked.get(key)
        if (
            held is not None
            and checked is not None
            and time.monotonic() - checked < self._recheck_s
        ):
            self._users.move_to_end(key)
            return held
        task = self._pending.get(key)
        if task is None:
            task = self._pending[key] = asyncio.create_task(self._current(user, key))
            task.add_done_callback(lambda done: self._forget(key, done))
        try:
            # Shielded: a query that stops waiting (or is cancelled) leaves the read running
            # for the queries after it.
            return await asyncio.wait_for(asyncio.shield(task), self._wait_s)
        except TimeoutError:
            return self._users.get(key)

    def _forget(self, key: tuple[str, str], done: asyncio.Task[_Vocabulary]) -> None:
        if self._pending.get(key) is done:
            del self._pending[key]
        if not done.cancelled():
            done.exception()  # retrieved: a failed read is retried by the next query

    def _written(self, user: UserRef) -> None:
        key = (user.tenant, user.user_id)
        self._checked.pop(key, None)
        if key in self._users:  # only users held here are counted (bounded like them)
            self._writes[key] = self._writes.get(key, 0) + 1

    async def _current(self, user: UserRef, key: tuple[str, str]) -> _Vocabulary:
        started = time.monotonic()
        writes = self._writes.get(key, 0)
        latest = await self._store.changes.latest_seq(user)
        vocab = self._users.get(key)
        if vocab is not None and vocab.seq != latest:
            vocab = await self._refreshed(user, vocab)
        if vocab is None:
            vocab = await self._read(user, latest)
        self._users[key] = vocab
        self._users.move_to_end(key)
        if self._writes.get(key, 0) == writes:  # no local write announced while reading
            self._checked[key] = started
        self._evict(keep=key)
        return vocab

    async def _read(self, user: UserRef, seq: int) -> _Vocabulary:
        """The whole vocabulary from the user's episodes, as of change `seq` (read first: a
        write during the scan is applied again by the next refresh, which is harmless)."""
        vocab = _Vocabulary(self._embedder.dimension, seq=seq)
        after = 0
        while True:
            page = await self._store.episodes.texts(user, after_seq=after, limit=self._page)
            await self._add(vocab, ((e.speaker, e.text) for e in page))
            if len(page) < self._page:
                return vocab
            after = page[-1].seq

    async def _refreshed(self, user: UserRef, vocab: _Vocabulary) -> _Vocabulary | None:
        """`vocab` with the episodes added or changed since its position, or None when the log
        no longer reaches back to it (pruned) or too much has changed: read it all again."""
        changes = await self._store.changes.since(user, vocab.seq, self._max_changes)
        if not changes or changes[0].seq != vocab.seq + 1 or len(changes) >= self._max_changes:
            return None
        if any(
            c.memory_type is MemoryType.EPISODE and c.kind is ChangeKind.DELETED for c in changes
        ):
            return None  # its words may be nowhere else: read what is left
        ids = [
            c.memory_id
            for c in changes
            if c.memory_type is MemoryType.EPISODE
            and c.kind in (ChangeKind.ADDED, ChangeKind.UPDATED)
        ]
        memories = await self._store.memories.get_many(user, list(dict.fromkeys(ids)))
        await self._add(
            vocab, ((m.speaker, m.text) for m in memories.values() if isinstance(m, Episode))
        )
        vocab.seq = changes[-1].seq
        return vocab

    async def _add(self, vocab: _Vocabulary, said: Iterable[tuple[str, str]]) -> None:
        """Add the words of episodes given as (speaker, text)."""
        counts: Counter[str] = Counter()
        speakers: set[str] = set()
        pairs = list(said)
        for start in range(0, len(pairs), _YIELD_EVERY):
            if start:
                # A large user's first read is a second of this: let queries run in between.
                await asyncio.sleep(0)
            chunk = pairs[start : start + _YIELD_EVERY]
            speakers.update(speaker for speaker, _ in chunk if speaker)
            counts.update(content_word_counts(text for _, text in chunk))
        for speaker in speakers:
            vocab.speakers.update(content_words(speaker, min_length=1))
        # A bound on memory and on the embedding a first read costs (words are embedded at
        # about 1,500 a second on two cores): past it, later words are not added.
        new = [w for w in counts if w not in vocab.index][: max(0, self._max_words - vocab.n)]
        vocab.add(new, await self._vectors(new, None))
        vocab.count(counts)

    async def _vectors(
        self, words: Sequence[str], vocab: _Vocabulary | None, *, count: bool = False
    ) -> npt.NDArray[np.float32]:
        """Unit vectors of `words`: from the user's vocabulary, the shared cache, or the
        embedder (in batches), in that order. `count`: a query's words, counted when embedded
        (most are the user's own words already: 216 of LoCoMo dev's 760 questions' words)."""
        out = np.zeros((len(words), self._embedder.dimension), dtype=np.float32)
        missing: list[int] = []
        for i, word in enumerate(words):
            if vocab is not None and word in vocab.index:
                out[i] = vocab.matrix[vocab.index[word]]
            elif (shared := self._shared.get(word)) is not None:
                out[i] = shared
            else:
                missing.append(i)
        if count:
            self.embedded_for_queries += len(missing)
        for start in range(0, len(missing), _EMBED_BATCH):
            batch = missing[start : start + _EMBED_BATCH]
            vectors = np.asarray(await self._embedder.embed([words[i] for i in batch]))
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            vectors = (vectors / np.where(norms == 0, 1.0, norms)).astype(np.float32)
            for i, vector in zip(batch, vectors, strict=True):
                out[i] = vector
                self._shared.put(words[i], vector)
        return out

    def _evict(self, keep: tuple[str, str]) -> None:
        total = sum(v.nbytes for v in self._users.values())
        while total > self._max_bytes and len(self._users) > 1:
            key, vocab = next(iter(self._users.items()))
            if key == keep:
                break
            del self._users[key]
            self._checked.pop(key, None)
            self._writes.pop(key, None)
            total -= vocab.nbytes
