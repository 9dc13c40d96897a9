"""`persona ingest`: one text, or a JSONL file in batches."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from persona import Item, PersonaError
from persona.v1 import memory_service_pb2 as pb
from persona_server.cli import output
from persona_server.cli.connect import key_value, open_client, positive_int, timestamp_arg
from persona_server.cli.errors import UsageError, report
from persona_server.cli.jsonl import Defaults, Line, parse_lines

# Extraction with an LLM can take a while per batch; without --wait the default deadline holds.
WAIT_TIMEOUT_S = 120.0
_ITEM_PATH = re.compile(r"^items\[(\d+)\](.*)$")


def register(commands: Any, client_parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "ingest",
        parents=[client_parent],
        help="store text for a user",
        description="Store one text (--text) or a JSONL file of items (--file) for a user.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", metavar="T", help="the text to store")
    source.add_argument(
        "--file",
        metavar="F.jsonl",
        help="one JSON object per line: text (required), source_id, occurred_at, metadata, "
        "speaker, source_type, role; '-' reads stdin",
    )
    p.add_argument("--source-id", metavar="S", help="your id for --text (makes re-runs no-ops)")
    p.add_argument(
        "--occurred-at",
        metavar="ISO8601",
        help="event time (no zone = UTC); with --file, for lines without one",
    )
    p.add_argument("--speaker", metavar="NAME", help="who said it; with --file, the default")
    p.add_argument(
        "--metadata",
        type=key_value,
        action="extend",
        nargs="+",
        default=[],
        metavar="K=V",
        help="string metadata; with --file, merged under each line's own",
    )
    p.add_argument("--replace", action="store_true", help="update items whose source id exists")
    p.add_argument(
        "--wait",
        action="store_true",
        help=f"return after extraction (default timeout then {WAIT_TIMEOUT_S:g} s per batch)",
    )
    p.add_argument(
        "--batch-size", type=positive_int, default=100, metavar="N", help="items per request"
    )
    p.set_defaults(handler=run)


def _read_file(name: str, defaults: Defaults) -> list[Line]:
    try:
        if name == "-":
            raw = sys.stdin.buffer.read().splitlines()
        else:
            raw = Path(name).read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"INVALID_ARGUMENT: --file: {exc.strerror}: {name}") from None
    parsed = parse_lines(raw, defaults)
    if parsed.bad:
        for bad in parsed.bad:
            print(bad, file=sys.stderr)
        raise UsageError(
            f"INVALID_ARGUMENT: {len(parsed.bad)} bad line(s) in {name}; nothing was ingested"
        )
    return parsed.lines


def _relabel_for(lines: list[Line], start: int, size: int) -> Callable[[str], str]:
    """Turn the server's `items[i]...` paths (relative to one batch) into file line numbers."""

    def relabel(path: str) -> str:
        match = _ITEM_PATH.match(path)
        if match is None or int(match.group(1)) >= size:
            return path
        return f"line {lines[start + int(match.group(1))].number} ({path})"

    return relabel


def run(args: argparse.Namespace) -> int:
    occurred_at = timestamp_arg("occurred_at", args.occurred_at)
    metadata = dict(args.metadata)
    lines: list[Line] = []
    if args.text is not None:
        item = Item(
            text=args.text,
            source_id=args.source_id or "",
            occurred_at=occurred_at,
            speaker=args.speaker or "",
            metadata=metadata,
        )
        items = [item]
    else:
        if args.source_id is not None:
            raise UsageError("--source-id goes with --text; give each line of the file its own")
        defaults = Defaults(occurred_at=occurred_at, speaker=args.speaker or "", metadata=metadata)
        lines = _read_file(args.file, defaults)
        items = [line.item for line in lines]

    responses: list[pb.IngestResponse] = []
    timeout = WAIT_TIMEOUT_S if args.wait and args.timeout is None else None
    show_progress = not args.json and sys.stderr.isatty() and len(items) > args.batch_size
    with (
        open_client(args) as client,
        tqdm(total=len(items), unit="item", file=sys.stderr, disable=not show_progress) as bar,
    ):
        for start in range(0, len(items), args.batch_size):
            batch = items[start : start + args.batch_size]
            try:
                responses.append(
                    client.ingest(
                        args.user,
                        batch,
                        replace=args.replace,
                        wait_for_extraction=args.wait,
                        timeout=timeout,
                    )
                )
            except PersonaError as exc:
                bar.close()
                code = report(
                    exc,
                    target=args.target,
                    relabel=_relabel_for(lines, start, len(batch)) if lines else None,
                )
                if lines:
                    _report_partial(lines, start, len(batch))
                return code
            bar.update(len(batch))

    if args.json:
        print(output.dumps(output.ingest_json(responses)))
    else:
        print(output.ingest_text(responses, waited=args.wait))
    return 0


def _report_partial(lines: list[Line], start: int, size: int) -> None:
    end = min(start + size, len(lines))
    first, last = lines[start].number, lines[end - 1].number
    span = f"line {first}" if first == last else f"lines {first}-{last}"
    before = f"the {start} item(s) before it were ingested" if start else "nothing was ingested"
    after = "; nothing after it was sent" if end < len(lines) else ""
    print(
        f"  (the batch of {span} was rejected; {before}{after}; "
        "re-running is safe for lines that have a source_id)",
        file=sys.stderr,
    )
