"""Crash durability: kill -9 the server during sustained concurrent ingest, restart, check.

    python bench/chaos.py --out FILE.json [--rounds 20] [--clients 4] [--users 2] [--seed N]

One embedded-store data directory outlives every server process of the run. Each round starts
the server on it (with an LLM configured: a local scripted OpenAI-compatible model that answers
every extraction after a short delay, so the background extraction worker always has a
backlog), runs `--clients` concurrent ingest clients over `--users` users (several clients per
user, so one user's NEXT chain is written concurrently, with event times spread over a month so
that most items are back-filled into the chain), and SIGKILLs the server at a random moment.
With the server dead, the store is opened directly and checked:

- every `source_id` whose Ingest call was acknowledged is present exactly once and whole (text,
  event time, speaker and metadata as sent): `lost` counts those that are not;
- the event-time chain is consistent: every episode is in it once, in (event time, ingest
  sequence) order, sequence numbers unique: `chain_errors` counts violations;
- the change log is gap-free and strictly increasing per user.

After the last round the server is started once more and the run waits until every stored
episode's extraction is done: a crash must only delay extraction (`pending_after_recovery` is
what was still not done when `--recovery-timeout` ran out; target 0).

Targets: lost = 0, chain_errors = 0. Figures are printed and written to `--out`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from _server import ServerProcess, exit_on_sigterm
from google.protobuf.timestamp_pb2 import Timestamp

from persona.v1 import memory_pb2 as mpb
from persona.v1 import memory_service_pb2 as pb
from persona.v1 import memory_service_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripted model is the test suite's (tests/llm)

from persona_server.adapters.embedders.local_onnx import MODEL_ID  # noqa: E402
from persona_server.adapters.stores.sqlite.store import SqliteGraphStore  # noqa: E402
from persona_server.domain.models import Episode, ExtractionState, MemoryType, UserRef  # noqa: E402
from persona_server.ports.graph_store import MemoryFilter  # noqa: E402
from tests.llm.scripted_llm import Recorded, Reply, ScriptedLLM, entity, extraction  # noqa: E402

TENANT = "default"  # the open server's tenant
DIMENSION = 384
BATCH = 10
RPC_TIMEOUT_S = 30.0
FIRST_DAY = datetime(2026, 1, 1, tzinfo=UTC)
# Non-ASCII on purpose: text must come back byte for byte.
WORDS = ["coffee", "train", "Lisbon", "sister", "piano", "deadline", "garden", "résumé"]
WORDS += ["東京", "marathon", "doctor", "invoice", "birthday", "🎉", "novel", "café"]


@dataclass(frozen=True)
class Sent:
    user: str
    text: str
    occurred_at: datetime
    speaker: str
    metadata: dict[str, str]


@dataclass
class Ledger:
    """Every item whose Ingest call was acknowledged, by (user, source_id)."""

    acked: dict[tuple[str, str], Sent] = field(default_factory=dict)
    calls_ok: int = 0
    calls_failed: int = 0
    crashes: list[str] = field(default_factory=list)  # a client's own bug, not the server's
    lock: threading.Lock = field(default_factory=threading.Lock)


def _item(rng: random.Random, user: str, source_id: str) -> tuple[pb.IngestItem, Sent]:
    words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60)))
    text = f"{source_id}: {words}"
    # Whole seconds: the comparison below is then exact on every store.
    occurred = FIRST_DAY + timedelta(seconds=rng.randint(0, 30 * 86400))
    metadata = {"sid": source_id, "n": str(rng.randint(0, 10**6))}
    ts = Timestamp()
    ts.FromDatetime(occurred)
    speaker = rng.choice(("Ana", "Bo"))
    proto = pb.IngestItem(
        text=text,
        source_id=source_id,
        occurred_at=ts,
        source_type=mpb.SOURCE_TYPE_CHAT_MESSAGE,
        speaker=speaker,
        metadata=metadata,
    )
    return proto, Sent(user, text, occurred, speaker, metadata)


def _ingest_client(
    target: str, user: str, prefix: str, seed: int, ledger: Ledger, stop: threading.Event
) -> None:
    """Ingest batches until the server dies (or `stop`); record what was acknowledged."""
    try:
        _ingest_until_dead(target, user, prefix, random.Random(seed), ledger, stop)
    except Exception as exc:
        with ledger.lock:
            ledger.crashes.append(f"{type(exc).__name__}: {exc}")


def _ingest_until_dead(
    target: str,
    user: str,
    prefix: str,
    rng: random.Random,
    ledger: Ledger,
    stop: threading.Event,
) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.MemoryServiceStub(channel)
        n = 0
        while not stop.is_set():
            items, sent = [], []
            for _ in range(BATCH):
                proto, s = _item(rng, user, f"{prefix}-{n}")
                items.append(proto)
                sent.append((proto.source_id, s))
                n += 1
            try:
                stub.Ingest(pb.IngestRequest(user_id=user, items=items), timeout=RPC_TIMEOUT_S)
            except grpc.RpcError:
                with ledger.lock:
                    ledger.calls_failed += 1
                # The server is gone (killed): this client's round is over.
                return
            with ledger.lock:
                ledger.calls_ok += 1
                for source_id, s in sent:
                    ledger.acked[(user, source_id)] = s


def _model(llm: ScriptedLLM, delay_s: float) -> None:
    def answer(request: Recorded) -> Reply:
        # Only extraction calls reach the model here (every name resolves on its own).
        return Reply(
            extraction(summary="a note", entities=[entity("Ana")]),
            delay_s=delay_s,
        )

    llm.responder = answer


async def _check_store(db: Path, ledger: Ledger, users: list[str]) -> dict[str, Any]:
    """Open the store directly (the server is dead) and check what was acknowledged."""
    store = SqliteGraphStore(db)
    await store.open(embedding_model=MODEL_ID, dimension=DIMENSION)
    lost: list[str] = []
    chain_errors: list[str] = []
    stored = 0
    pending = 0
    try:
        for user_id in users:
            user = UserRef(tenant=TENANT, user_id=user_id)
            episodes = await _all_episodes(store, user)
            stored += len(episodes)
            pending += sum(e.extraction.state is not ExtractionState.DONE for e in episodes)
            by_source: dict[str, list[Episode]] = {}
            for episode in episodes:
                by_source.setdefault(episode.source_id, []).append(episode)
            for (u, source_id), sent in ledger.acked.items():
                if u != user_id:
                    continue
                found = by_source.get(source_id, [])
                if len(found) != 1 or not _whole(found[0], sent):
                    lost.append(f"{user_id}/{source_id}")
            chain_errors += _chain_problems(await store.episodes.chain(user), episodes, user_id)
            chain_errors += await _change_log_problems(store, user)
    finally:
        await store.close()
    return {"lost": lost, "chain_errors": chain_errors, "stored": stored, "pending": pending}


async def _all_episodes(store: SqliteGraphStore, user: UserRef) -> list[Episode]:
    out: list[Episode] = []
    cursor = ""
    flt = MemoryFilter(types=frozenset({MemoryType.EPISODE}))
    while True:
        page = await store.memories.list_page(user, filter=flt, limit=500, cursor=cursor)
        out += [m for m in page.memories if isinstance(m, Episode)]
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


def _whole(episode: Episode, sent: Sent) -> bool:
    return (
        episode.text == sent.text
        and episode.occurred_at == sent.occurred_at
        and episode.speaker == sent.speaker
        and episode.metadata == sent.metadata
    )


def _chain_problems(chain: list[str], episodes: list[Episode], user_id: str) -> list[str]:
    problems = []
    seqs = [e.seq for e in episodes]
    if len(set(seqs)) != len(seqs):
        problems.append(f"{user_id}: duplicate ingest sequence numbers")
    if len(chain) != len(set(chain)):
        problems.append(f"{user_id}: an episode appears twice in the chain")
    expected = [
        e.id for e in sorted(episodes, key=lambda e: (e.occurred_at or e.recorded_at, e.seq))
    ]
    if chain != expected:
        first = next(
            (i for i, (a, b) in enumerate(zip(chain, expected, strict=False)) if a != b),
            min(len(chain), len(expected)),
        )
        problems.append(
            f"{user_id}: chain differs from (event time, seq) order at position {first} "
            f"({len(chain)} in chain, {len(expected)} episodes)"
        )
    return problems


async def _change_log_problems(store: SqliteGraphStore, user: UserRef) -> list[str]:
    seqs: list[int] = []
    after = 0
    while True:
        changes = await store.changes.since(user, after, 1000)
        if not changes:
            break
        seqs += [c.seq for c in changes]
        after = changes[-1].seq
    if any(b <= a for a, b in itertools.pairwise(seqs)):
        return [f"{user.user_id}: change log not strictly increasing"]
    return []


def _pending_via_api(target: str, users: list[str]) -> int:
    """Episodes whose extraction is not done, read through the API (the server is running)."""
    pending = 0
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.MemoryServiceStub(channel)
        for user in users:
            token = ""
            while True:
                page = stub.ListMemories(
                    pb.ListMemoriesRequest(
                        user_id=user,
                        page_size=500,
                        page_token=token,
                        types=[mpb.MEMORY_TYPE_EPISODE],
                    ),
                    timeout=RPC_TIMEOUT_S,
                )
                pending += sum(
                    m.episode.extraction.state != mpb.EXTRACTION_STATE_DONE for m in page.memories
                )
                token = page.next_page_token
                if not token:
                    break
    return pending


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    users = [f"chaos-{i}" for i in range(args.users)]
    ledger = Ledger()
    llm = ScriptedLLM().start()
    _model(llm, args.llm_delay_s)
    env = {
        "PERSONA_LLM_MODEL": "scripted-chaos",
        "PERSONA_LLM_BASE_URL": llm.base_url,
        "PERSONA_LLM_API_KEY": "unused",
        "PERSONA_LLM_MAX_RETRIES": "0",
        "PERSONA_EXTRACTION_POLL_S": "0.5",
        "PERSONA_EXTRACTION_RETRY_BASE_S": "0.5",
        "PERSONA_EXTRACTION_RETRY_MAX_S": "2",
    }
    rounds: list[dict[str, Any]] = []
    total_lost: set[str] = set()
    total_chain_errors: list[str] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="persona-chaos-") as tmp:
        data_dir = Path(tmp) / "data"
        db = data_dir / "persona.db"
        try:
            for round_no in range(args.rounds):
                server = ServerProcess(extra_env=env, data_dir=data_dir)
                server.start()
                stop = threading.Event()
                acked_before = len(ledger.acked)
                threads = [
                    threading.Thread(
                        target=_ingest_client,
                        args=(
                            server.target,
                            users[c % len(users)],
                            f"r{round_no}-c{c}",
                            rng.randrange(2**32),
                            ledger,
                            stop,
                        ),
                        daemon=True,
                    )
                    for c in range(args.clients)
                ]
                for thread in threads:
                    thread.start()
                kill_after = rng.uniform(args.min_kill_s, args.max_kill_s)
                time.sleep(kill_after)
                server.kill()
                stop.set()
                for thread in threads:
                    thread.join(RPC_TIMEOUT_S + 5)
                if ledger.crashes:
                    raise RuntimeError(f"an ingest client crashed: {ledger.crashes[0]}")
                if len(ledger.acked) == acked_before:
                    raise RuntimeError(
                        f"round {round_no}: nothing was acknowledged before the kill "
                        "(is the kill window too short for this machine?)"
                    )
                check = asyncio.run(_check_store(db, ledger, users))
                total_lost.update(check["lost"])
                total_chain_errors += check["chain_errors"]
                rounds.append(
                    {
                        "round": round_no,
                        "killed_after_s": round(kill_after, 2),
                        "acknowledged_this_round": len(ledger.acked) - acked_before,
                        "stored_episodes": check["stored"],
                        "pending_extractions_at_kill": check["pending"],
                        "lost": len(check["lost"]),
                        "chain_errors": len(check["chain_errors"]),
                    }
                )
                print(
                    f"round {round_no + 1:>2}/{args.rounds}: killed after {kill_after:.1f} s, "
                    f"{rounds[-1]['acknowledged_this_round']} acknowledged, "
                    f"{check['stored']} stored, {check['pending']} pending extraction, "
                    f"lost {len(check['lost'])}, chain errors {len(check['chain_errors'])}",
                    flush=True,
                )
            recovery = _recover(env, data_dir, users, args.recovery_timeout_s)
        finally:
            llm.stop()
    return {
        "kill9": {
            "rounds": args.rounds,
            "acknowledged": len(ledger.acked),
            "lost": len(total_lost),
            "chain_errors": len(total_chain_errors),
            "pending_after_recovery": recovery["pending"],
            "recovery_s": recovery["seconds"],
            "ingest_calls_ok": ledger.calls_ok,
            "ingest_calls_failed": ledger.calls_failed,
        },
        "lost_examples": sorted(total_lost)[:20],
        "chain_error_examples": total_chain_errors[:20],
        "rounds": rounds,
        "settings": {
            "clients": args.clients,
            "users": args.users,
            "batch": BATCH,
            "kill_window_s": [args.min_kill_s, args.max_kill_s],
            "llm_delay_s": args.llm_delay_s,
            "seed": args.seed,
        },
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "elapsed_s": round(time.monotonic() - started, 1),
        "command": "python bench/chaos.py " + " ".join(sys.argv[1:]),
    }


def _recover(env: dict[str, str], data_dir: Path, users: list[str], timeout_s: float) -> Any:
    """Start once more on the same data and wait until every episode's extraction is done."""
    with ServerProcess(extra_env=env, data_dir=data_dir) as server:
        started = time.monotonic()
        pending = _pending_via_api(server.target, users)
        while pending and time.monotonic() - started < timeout_s:
            time.sleep(1.0)
            pending = _pending_via_api(server.target, users)
        seconds = round(time.monotonic() - started, 1)
    print(f"recovery: {pending} episodes still pending extraction after {seconds} s")
    return {"pending": pending, "seconds": seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4, help="concurrent ingest clients")
    parser.add_argument("--users", type=int, default=2, help="users the clients write to")
    parser.add_argument("--min-kill-s", type=float, default=1.0, help="earliest kill in a round")
    parser.add_argument("--max-kill-s", type=float, default=4.0, help="latest kill in a round")
    parser.add_argument("--llm-delay-s", type=float, default=0.02, help="scripted model delay")
    parser.add_argument("--recovery-timeout-s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=20261202)
    args = parser.parse_args()
    exit_on_sigterm()
    result = run(args)
    k = result["kill9"]
    print(
        f"kill -9 x {k['rounds']}: {k['acknowledged']} acknowledged, lost {k['lost']}, "
        f"chain errors {k['chain_errors']}, pending after recovery {k['pending_after_recovery']}"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    ok = k["lost"] == 0 and k["chain_errors"] == 0 and k["pending_after_recovery"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
