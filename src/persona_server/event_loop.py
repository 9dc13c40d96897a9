"""Which event loop the server runs on: uvloop when it is installed and not turned off.

uvloop's loop is libuv's, written in Cython: the callbacks with which grpc.aio completes each
sent message run cheaper on it than on asyncio's pure-Python loop, which is what StreamContext
spends its time on when one change goes to many subscribers (BENCHMARKS.md, "StreamContext
freshness"). grpc.aio runs on any asyncio loop, so asyncio's own stays the fallback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def loop_factory(use_uvloop: bool) -> LoopFactory | None:
    """uvloop's loop factory, or None for asyncio's default (turned off, or not installed)."""
    if not use_uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], use_uvloop: bool) -> T:
    """`asyncio.run(main)`, on uvloop's loop when `loop_factory` gives one."""
    with asyncio.Runner(loop_factory=loop_factory(use_uvloop)) as runner:
        return runner.run(main)
