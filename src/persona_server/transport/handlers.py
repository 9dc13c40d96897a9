"""Rebuilding a grpc.aio method handler with checks in front of the servicer.

Interceptors of grpc.aio cannot run code inside the call by themselves: they return a handler,
and refusing a call means returning one that aborts. Every interceptor of Persona's (auth,
limits, request decoding) goes through `rebuild`, so each kind of handler (unary or streaming,
either way) is wrapped in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias

import grpc

# The handler types of grpc's stubs describe sync behaviours; under grpc.aio they are coroutines
# and async generators, so the wrappers below are typed loosely on purpose.
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
# (context) -> None, before the servicer runs; it refuses the call by aborting the context.
Enter = Callable[[Any], Awaitable[None]]
# (request message, context) -> None, for every request message; it refuses by aborting.
Check = Callable[[Any, Any], Awaitable[None]]
Deserializer = Callable[[bytes], Any]
# (context, the exception the call ended with or None), when the call is over, whatever the
# outcome: the servicer returned, raised, aborted, or the client went away.
Done = Callable[[Any, BaseException | None], None]


async def _nothing(*_: Any) -> None:
    return None


def rebuild(
    handler: Handler,
    *,
    enter: Enter | None = None,
    check: Check | None = None,
    request_deserializer: Deserializer | None = None,
    done: Done | None = None,
) -> Handler:
    """The same handler, with `enter` awaited once before the servicer, `check` awaited on
    every request message (for request streams: as the servicer reads them), and `done` called
    when the call is over."""
    if done is not None:
        return _observed(
            rebuild(handler, enter=enter, check=check, request_deserializer=request_deserializer),
            done,
        )
    enter_ = enter or _nothing
    check_ = check or _nothing
    deserializer = request_deserializer or handler.request_deserializer
    serializer = handler.response_serializer

    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            await check_(request, context)
            yield request

    if handler.unary_unary is not None:
        unary_unary: Any = handler.unary_unary

        async def uu(request: Any, context: Any) -> Any:
            await enter_(context)
            await check_(request, context)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(
            uu, request_deserializer=deserializer, response_serializer=serializer
        )
    if handler.unary_stream is not None:
        unary_stream: Any = handler.unary_stream

        async def us(request: Any, context: Any) -> AsyncIterator[Any]:
            await enter_(context)
            await check_(request, context)
            async for response in unary_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(
            us, request_deserializer=deserializer, response_serializer=serializer
        )
    if handler.stream_unary is not None:
        stream_unary: Any = handler.stream_unary

        async def su(requests: AsyncIterator[Any], context: Any) -> Any:
            await enter_(context)
            return await stream_unary(checked(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(
            su, request_deserializer=deserializer, response_serializer=serializer
        )
    if handler.stream_stream is not None:
        stream_stream: Any = handler.stream_stream

        async def ss(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            await enter_(context)
            async for response in stream_stream(checked(requests, context), context):
                yield response

        return grpc.stream_stream_rpc_method_handler(
            ss, request_deserializer=deserializer, response_serializer=serializer
        )
    raise RuntimeError(f"a method handler of no known kind: {handler}")


def _observed(handler: Handler, done: Done) -> Handler:
    serializer = handler.response_serializer
    deserializer = handler.request_deserializer

    if handler.unary_unary is not None or handler.stream_unary is not None:
        inner: Any = handler.unary_unary or handler.stream_unary

        async def unary_response(request: Any, context: Any) -> Any:
            try:
                response = await inner(request, context)
            except BaseException as exc:
                done(context, exc)
                raise
            done(context, None)
            return response

        make = (
            grpc.unary_unary_rpc_method_handler
            if handler.unary_unary is not None
            else grpc.stream_unary_rpc_method_handler
        )
        return make(
            unary_response, request_deserializer=deserializer, response_serializer=serializer
        )

    streaming: Any = handler.unary_stream or handler.stream_stream

    async def stream_response(request: Any, context: Any) -> AsyncIterator[Any]:
        try:
            async for response in streaming(request, context):
                yield response
        except BaseException as exc:
            done(context, exc)
            raise
        done(context, None)

    make_stream = (
        grpc.unary_stream_rpc_method_handler
        if handler.unary_stream is not None
        else grpc.stream_stream_rpc_method_handler
    )
    return make_stream(
        stream_response, request_deserializer=deserializer, response_serializer=serializer
    )
