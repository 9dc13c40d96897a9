"""What one StreamContext message costs a bare grpc.aio server to send, with 1,000 streams.

    python bench/stream_send.py --out FILE.json [--rounds N] [--messages N]

No Persona code in the server: one unary-stream method whose streams each send whatever is
put on their queue, and a unary method that puts one prebuilt message on every queue, waits
until every stream has sent it, `--messages` times, and answers with its process's CPU time
per message and stream. The message is a StreamContextResponse update shaped like
`bench/stream.py`'s (3 changes, 21 members, about 3.4 KB). Variants, alternated in each round:

- `message`: the stream yields the message and grpc serializes it (the generated handler's
  SerializeToString), once per stream;
- `bytes`: the stream yields bytes serialized once, through `registration.pass_through`
  (what StreamContext does);

each on asyncio's loop and on uvloop's (server and clients alike). Subscribers are held in two
client processes (100 streams per channel) that parse every message, as the SDK does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Sequence
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

import grpc

from persona.v1 import memory_pb2 as mpb
from persona.v1 import memory_service_pb2 as pb
from persona_server import event_loop
from persona_server.transport.registration import pass_through

STREAMS = 1000
STREAMS_PER_CHANNEL = 100
CLIENT_PROCESSES = 2
WARMUP = 10
VARIANTS = (("message", False), ("bytes", False), ("message", True), ("bytes", True))


def update_message() -> pb.StreamContextResponse:
    text = "Dinner with Chiara at the new ramen place, then a walk along the river. " * 9
    changes = [
        pb.ContextChange(
            rank=i + 1,
            result=pb.RecallResult(
                memory=mpb.Memory(id=f"mem-{i:032d}", type=mpb.MEMORY_TYPE_EPISODE, text=text),
                score=0.5,
            ),
        )
        for i in range(3)
    ]
    members = [
        pb.ContextMember(
            memory_id=f"mem-{i:032d}", type=mpb.MEMORY_TYPE_EPISODE, rank=i + 1, score=0.5
        )
        for i in range(21)
    ]
    return pb.StreamContextResponse(
        resume_token="r" * 60, update=pb.ContextUpdate(changes=changes, members=members)
    )


def _identity(data: bytes) -> bytes:
    return data


async def _serve(prebuilt: bool, ports: Queue[int]) -> None:
    message = update_message()
    wire = message.SerializeToString()
    queues: list[asyncio.Queue[Any]] = []
    sent, target = [0], [0]
    all_sent = asyncio.Event()

    async def subscribe(_request: bytes, _context: Any) -> Any:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        queues.append(queue)
        while True:
            yield await queue.get()
            sent[0] += 1
            if sent[0] >= target[0]:
                all_sent.set()

    async def publish(request: bytes, _context: Any) -> bytes:
        count = int(request)
        cpu = time.process_time()
        for _ in range(count):
            all_sent.clear()
            target[0] = sent[0] + len(queues)
            for queue in queues:
                queue.put_nowait(wire if prebuilt else message)
            await all_sent.wait()
        return str((time.process_time() - cpu) / count / len(queues) * 1e6).encode()

    async def streams(_request: bytes, _context: Any) -> bytes:
        return str(len(queues)).encode()

    def serialize(response: pb.StreamContextResponse) -> bytes:
        return response.SerializeToString()

    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            subscribe,
            request_deserializer=_identity,
            response_serializer=pass_through if prebuilt else serialize,
        ),
        "Publish": grpc.unary_unary_rpc_method_handler(
            publish, request_deserializer=_identity, response_serializer=_identity
        ),
        "Streams": grpc.unary_unary_rpc_method_handler(
            streams, request_deserializer=_identity, response_serializer=_identity
        ),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("bench.Fan", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    ports.put(port)
    await server.wait_for_termination()


def server_process(prebuilt: bool, use_uvloop: bool, ports: Queue[int]) -> None:
    event_loop.run(_serve(prebuilt, ports), use_uvloop)


async def _hold(port: int, count: int) -> None:
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        for _ in range(-(-count // STREAMS_PER_CHANNEL))
    ]

    async def read(i: int) -> None:
        call = channels[i % len(channels)].unary_stream(
            "/bench.Fan/Subscribe",
            request_serializer=_identity,
            response_deserializer=pb.StreamContextResponse.FromString,
        )(b"")
        async for _ in call:
            pass

    await asyncio.gather(*(read(i) for i in range(count)))


def client_process(port: int, count: int, use_uvloop: bool) -> None:
    event_loop.run(_hold(port, count), use_uvloop)


async def _measure(port: int, messages: int) -> float:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        streams = channel.unary_unary(
            "/bench.Fan/Streams", request_serializer=_identity, response_deserializer=_identity
        )
        deadline = time.monotonic() + 120
        while int(await streams(b"")) < STREAMS:
            if time.monotonic() > deadline:
                raise TimeoutError("the streams did not open")
            await asyncio.sleep(0.2)
        publish = channel.unary_unary(
            "/bench.Fan/Publish", request_serializer=_identity, response_deserializer=_identity
        )
        await publish(str(WARMUP).encode())
        return float(await publish(str(messages).encode()))


def run_variant(prebuilt: bool, use_uvloop: bool, messages: int) -> float:
    context = multiprocessing.get_context("spawn")
    ports: Queue[int] = context.Queue()
    server = context.Process(target=server_process, args=(prebuilt, use_uvloop, ports))
    server.start()
    procs = [server]
    try:
        port = ports.get(timeout=60)
        for _ in range(CLIENT_PROCESSES):
            client = context.Process(
                target=client_process, args=(port, STREAMS // CLIENT_PROCESSES, use_uvloop)
            )
            client.start()
            procs.append(client)
        return asyncio.run(_measure(port, messages))
    finally:
        for proc in reversed(procs):  # clients first: a client outliving the server complains
            proc.kill()
            proc.join(10)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--rounds", type=int, default=3, help="runs of every variant")
    parser.add_argument("--messages", type=int, default=150, help="messages per run")
    args = parser.parse_args(argv)
    if event_loop.loop_factory(True) is None:
        sys.exit("uvloop is not installed")
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; {STREAMS} streams, "
        f"{args.messages} messages of {update_message().ByteSize()} bytes per run",
        flush=True,
    )
    runs: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        for mode, use_uvloop in VARIANTS:
            name = f"{mode} {'uvloop' if use_uvloop else 'asyncio'}"
            us = run_variant(mode == "bytes", use_uvloop, args.messages)
            runs.setdefault(name, []).append(round(us, 2))
            print(f"round {round_ + 1}: {name}: {us:.1f} µs of server CPU per message and stream")
    report = {
        "server_cpu_us_per_message": {
            name: {"median": round(statistics.median(v), 2), "runs": v} for name, v in runs.items()
        },
        "load_average_after": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(report))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
