"""`persona export`, `import` and `view`: a user's whole graph as a file, and as a page.

`export` writes the graph file (`graph_file.py`, one JSON object per line, a versioned header
first) to stdout or `--out`; `import` checks a whole file before it sends anything, and the
server checks the whole stream again before it writes anything; `view` writes one HTML page
that shows the graph with no network at view time.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from persona import PersonaError
from persona_server.cli import graph_file, output
from persona_server.cli.connect import open_client, positive_int
from persona_server.cli.errors import UsageError, report
from persona_server.viewer.render import render

_RECORD_PATH = re.compile(r"^(nodes|edges)\[(\d+)\](.*)$")


def register(commands: Any, client_parent: argparse.ArgumentParser) -> None:
    p = commands.add_parser(
        "export",
        parents=[client_parent],
        help="write a user's whole graph as JSONL",
        description="Write the user's whole graph (every memory, then every edge) as one JSON "
        "object per line, a versioned header first, to stdout or --out. The format is "
        "documented by src/persona_server/cli/graph_export.schema.json.",
    )
    p.add_argument("--out", metavar="FILE", help="write here (atomically) instead of stdout")
    p.add_argument(
        "--chunk-size", type=positive_int, default=0, metavar="N", help=argparse.SUPPRESS
    )
    p.set_defaults(handler=run_export)

    p = commands.add_parser(
        "import",
        parents=[client_parent],
        help="bring an export back into a user",
        description="Import a file written by `persona export` into --user (any store). The "
        "whole file is checked first; nothing is written unless every line is good. Ids, "
        "times, provenance, the chain, validity and extraction state are kept; importing the "
        "same file again changes nothing.",
    )
    p.add_argument("--file", required=True, metavar="F.jsonl", help="the export; '-' reads stdin")
    p.set_defaults(handler=run_import)

    p = commands.add_parser(
        "view",
        parents=[client_parent],
        help="write a user's graph as one self-contained HTML page",
        description="Write one HTML page showing the user's graph: entities, facts, psyche, "
        "goals and episodes, the event-time chain as a timeline, search, and details on "
        "click. The page needs no network when it is opened.",
    )
    p.add_argument("--out", metavar="FILE.html", help="the page (default: persona-USER.html)")
    p.add_argument(
        "--file",
        metavar="F.jsonl",
        help="draw this export file instead of asking the server (--user is then its label)",
    )
    p.set_defaults(handler=run_view)


# --- export ----------------------------------------------------------------------------------


def _export_lines(args: argparse.Namespace) -> Iterator[str]:
    yield graph_file.dumps(graph_file.header(args.user))
    with open_client(args) as client:
        chunks = client.export_graph(args.user, chunk_size=args.chunk_size, timeout=args.timeout)
        for record in graph_file.export_records(chunks):
            yield graph_file.dumps(record)


def _write_atomically(path: Path, write: Callable[[IO[str]], None]) -> None:
    """Write to a temporary file beside `path` and rename it into place: a failed export
    leaves no half file that looks like an export."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as out:
            write(out)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_export(args: argparse.Namespace) -> int:
    def write(out: IO[str]) -> None:
        for line in _export_lines(args):
            out.write(line + "\n")

    try:
        if args.out:
            _write_atomically(Path(args.out), write)
        else:
            write(sys.stdout)
            sys.stdout.flush()
    except PersonaError as exc:
        if not args.out:
            print("  (the export is incomplete: discard what was written)", file=sys.stderr)
        return report(exc, target=args.target)
    return 0


# --- import ----------------------------------------------------------------------------------


def _read(name: str) -> Iterable[bytes]:
    try:
        if name == "-":
            return sys.stdin.buffer.read().splitlines()
        return Path(name).read_bytes().splitlines()
    except OSError as exc:
        raise UsageError(f"INVALID_ARGUMENT: --file: {exc.strerror}: {name}") from None


def read_checked(name: str, *, keep_dicts: bool = False) -> graph_file.GraphFile:
    """The whole file, or a UsageError after printing every bad line (up to a limit)."""
    parsed = graph_file.read(_read(name), keep_dicts=keep_dicts)
    if parsed.bad:
        for bad in parsed.bad:
            print(bad, file=sys.stderr)
        more = parsed.bad_count - len(parsed.bad)
        if more:
            print(f"... and {more} more", file=sys.stderr)
        raise UsageError(
            f"INVALID_ARGUMENT: {parsed.bad_count} bad line(s) in {name}; nothing was imported"
        )
    return parsed


def _relabel_for(parsed: graph_file.GraphFile) -> Callable[[str], str]:
    """The server's `nodes[i]` / `edges[j]` (counted over the stream) as file line numbers."""

    def relabel(path: str) -> str:
        match = _RECORD_PATH.match(path)
        if match is None:
            return path
        lines = parsed.node_lines if match.group(1) == "nodes" else parsed.edge_lines
        index = int(match.group(2))
        return f"line {lines[index]} ({path})" if index < len(lines) else path

    return relabel


def run_import(args: argparse.Namespace) -> int:
    parsed = read_checked(args.file)
    with open_client(args) as client:
        try:
            response = client.import_graph(args.user, parsed.records, timeout=args.timeout)
        except PersonaError as exc:
            code = report(exc, target=args.target, relabel=_relabel_for(parsed))
            conflicts = [int(i) for i in exc.metadata.get("nodes", "").split(",") if i]
            if conflicts:
                lines = ", ".join(
                    str(parsed.node_lines[i]) for i in conflicts[:20] if i < len(parsed.node_lines)
                )
                print(f"  (conflicting lines: {lines})", file=sys.stderr)
            print("  (nothing was imported)", file=sys.stderr)
            return code
    if args.json:
        print(
            output.dumps(
                {
                    "nodes_created": response.nodes_created,
                    "nodes_unchanged": response.nodes_unchanged,
                    "edges": response.edges,
                }
            )
        )
    else:
        print(
            f"imported {response.nodes_created} memories into {args.user} "
            f"({response.nodes_unchanged} already there, unchanged), {response.edges} edges"
        )
    return 0


# --- view ------------------------------------------------------------------------------------


def _default_page(user_id: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", user_id).strip("._") or "user"
    return Path(f"persona-{safe}.html")


def run_view(args: argparse.Namespace) -> int:
    if args.file:
        parsed = read_checked(args.file, keep_dicts=True)
        header = {**parsed.header, "user_id": args.user}
        records: list[dict[str, Any]] = parsed.dicts
    else:
        header = graph_file.header(args.user)
        try:
            with open_client(args) as client:
                chunks = client.export_graph(args.user, timeout=args.timeout)
                records = list(graph_file.export_records(chunks))
        except PersonaError as exc:
            return report(exc, target=args.target)
    page = render(header, records)
    out = Path(args.out) if args.out else _default_page(args.user)

    def write(f: IO[str]) -> None:
        f.write(page)

    _write_atomically(out, write)
    nodes = sum(1 for r in records if r["record"] == "node")
    print(f"wrote {out} ({nodes} memories, {len(records) - nodes} edges)")
    return 0
