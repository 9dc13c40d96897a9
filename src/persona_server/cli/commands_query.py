"""`persona recall`, `persona ask` and `persona stream`: reading a user's memory."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import persona
from persona_server.cli import output
from persona_server.cli.connect import MEMORY_TYPES, key_value, open_client, timestamp_arg
from persona_server.cli.errors import UsageError


def register(commands: Any, client_parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "recall", parents=[client_parent], help="the memories that matter for a query"
    )
    p.add_argument("--query", required=True, metavar="Q")
    p.add_argument("--k", type=int, default=10, metavar="N", help="max results (default 10)")
    _add_types(p)
    p.add_argument("--since", metavar="ISO8601", help="only memories that happened from then")
    p.add_argument("--until", metavar="ISO8601", help="only memories that happened before then")
    p.add_argument(
        "--metadata",
        type=key_value,
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="only memories with this metadata",
    )
    p.add_argument("--explain", action="store_true", help="show each channel's rank and score")
    p.add_argument("--history", action="store_true", help="include invalidated facts")
    p.add_argument("--as-of", metavar="ISO8601", help="recall as memory stood at that time")
    _add_dormant(p)
    p.set_defaults(handler=run_recall)

    p = commands.add_parser(
        "ask", parents=[client_parent], help="a JSON answer that fits your JSON Schema"
    )
    p.add_argument("--question", required=True, metavar="Q")
    p.add_argument("--schema", required=True, metavar="FILE.json", help="JSON Schema of the answer")
    p.add_argument(
        "--max-memories", type=int, default=0, metavar="N", help="memories given to the model"
    )
    p.set_defaults(handler=run_ask)

    p = commands.add_parser(
        "stream",
        parents=[client_parent],
        help="follow a user's context until Ctrl-C",
        description="Print a snapshot of the context, then updates as memories change, until "
        "Ctrl-C (or --timeout seconds).",
    )
    p.add_argument("--query", default="", metavar="Q", help="topic to follow (default: recent)")
    p.add_argument("--k", type=int, default=0, metavar="N", help="snapshot size (server: 10)")
    _add_types(p)
    p.add_argument("--resume-token", default="", metavar="T", help="resume after this event")
    p.add_argument("--heartbeat", type=int, default=0, metavar="SECONDS", help="(server: 15)")
    _add_dormant(p)
    p.set_defaults(handler=run_stream)


def _add_dormant(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--include-dormant",
        action="store_true",
        help="also return dormant (forgotten) memories: strength below the forget threshold",
    )


def _add_types(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--type",
        dest="types",
        action="extend",
        nargs="+",
        default=[],
        choices=MEMORY_TYPES,
        metavar="TYPE",
        help=f"only these types: {', '.join(MEMORY_TYPES)}",
    )


def run_recall(args: argparse.Namespace) -> int:
    since = timestamp_arg("filter.time_range.start", args.since)
    until = timestamp_arg("filter.time_range.end", args.until)
    as_of = timestamp_arg("as_of", args.as_of)
    with open_client(args) as client:
        response = client.recall(
            args.user,
            args.query,
            max_results=args.k,
            types=args.types,
            time_range=(since, until) if since or until else None,
            metadata=dict(args.metadata),
            explain=args.explain,
            include_history=args.history,
            as_of=as_of,
            include_dormant=args.include_dormant,
        )
    if args.json:
        print(output.dumps(output.recall_json(response, explain=args.explain)))
    else:
        print(output.recall_text(response, explain=args.explain))
    return 0


def run_ask(args: argparse.Namespace) -> int:
    try:
        # Sent as written: the server validates the schema and says what is wrong with it.
        schema = Path(args.schema).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise UsageError(f"INVALID_ARGUMENT: --schema: {reason}: {args.schema}") from None
    with open_client(args) as client:
        response = client.ask_structured(
            args.user, args.question, schema, max_memories=args.max_memories
        )
    if args.json:
        print(output.dumps(output.ask_json(response)))
    else:
        print(output.ask_text(response))
    return 0


def run_stream(args: argparse.Namespace) -> int:
    with open_client(args) as client:
        # --timeout bounds the whole subscription here: "watch for N seconds".
        stream = client.stream_context(
            args.user,
            query=args.query,
            max_results=args.k,
            types=args.types,
            resume_token=args.resume_token,
            heartbeat_seconds=args.heartbeat,
            include_dormant=args.include_dormant,
            timeout=args.timeout,
        )

        # Ctrl-C is how a stream is meant to end. The handler cancels the call from another
        # thread and the loop below ends like any closed stream: a KeyboardInterrupt raised
        # inside the gRPC library, between taking and releasing one of its locks, could
        # leave the cancel waiting forever (seen as a hung exit under load).
        def on_interrupt(_signum: int, _frame: object) -> None:
            threading.Thread(target=stream.close, daemon=True).start()

        previous = signal.signal(signal.SIGINT, on_interrupt)
        try:
            for event in stream:
                if args.json:
                    line = output.dumps(output.stream_event_json(event))
                else:
                    line = output.stream_event_text(event)
                print(line, flush=True)
        except KeyboardInterrupt:
            pass  # a Ctrl-C before the handler was in place
        except persona.DeadlineExceededError:
            if args.timeout is None:
                raise
        finally:
            signal.signal(signal.SIGINT, previous)
            stream.close()  # cancels the call: the server stops working for us at once
        if not args.json and stream.resume_token:
            print(f"to resume: --resume-token {stream.resume_token}", file=sys.stderr)
    return 0
