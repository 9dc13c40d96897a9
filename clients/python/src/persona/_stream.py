"""StreamContext bookkeeping shared by the async and sync stream wrappers.

A subscription survives a dropped connection: on UNAVAILABLE, or when the call ends although a
context stream never ends by itself (a proxy closed it), the wrapper reconnects with backoff
(`stream_retry`, `STREAM_RETRY` by default) and passes the resume token of the last event the
consumer received, so the server sends what changed since instead of a new snapshot and nothing
is missed or repeated. The retry budget is reset by every event received, so a long-lived stream
survives many separate outages but not one that lasts.

When the stream was away longer than the server keeps changes (OUT_OF_RANGE on a token the
stream got itself), it subscribes again without a token: the next event is a `snapshot`, to be
handled like a `resync` (replace what you hold). A token the caller passed in is the caller's:
OUT_OF_RANGE for it is raised.
"""

from __future__ import annotations

import grpc

from persona import _requests
from persona._errors import PersonaError, UnavailableError, from_rpc_error
from persona._retry import Attempts, Deadline, RetryPolicy
from persona.v1 import memory_service_pb2 as pb


class StreamState:
    def __init__(
        self, request: pb.StreamContextRequest, policy: RetryPolicy, timeout_s: float | None
    ) -> None:
        self._request = request
        # Streams have no deadline unless the caller gives one; then it bounds the whole
        # subscription, reconnections included.
        self._attempts = Attempts(policy, Deadline(timeout_s), retry_safe=True)
        self.resume_token = ""
        self.closed = False

    def next_request(self) -> pb.StreamContextRequest:
        return _requests.resumed(self._request, self.resume_token)

    def timeout(self) -> float | None:
        return self._attempts.timeout()

    def received(self, event: pb.StreamContextResponse) -> None:
        if event.resume_token:
            self.resume_token = event.resume_token
        self._attempts.succeeded()

    def failed(self, rpc_error: grpc.RpcError) -> float:
        """Seconds to wait before reconnecting; raises the PersonaError when giving up."""
        return self._failed(from_rpc_error(rpc_error), rpc_error)

    def ended(self) -> float:
        """The server closed the call with OK: a context stream does not end by itself, so the
        connection was cut on the way (a proxy's stream limit). Reconnect as after UNAVAILABLE."""
        return self._failed(UnavailableError("the stream ended unexpectedly"), None)

    def _failed(self, error: PersonaError, cause: BaseException | None) -> float:
        if error.code == grpc.StatusCode.OUT_OF_RANGE and self.resume_token:
            # Away longer than the server keeps changes: start over with a fresh snapshot.
            self.resume_token = ""
            self._request = _requests.resumed(self._request, "")
            self._request.resume_token = ""
            return 0.0
        try:
            return self._attempts.failed_with(error, cause)
        except BaseException:
            self.closed = True
            raise
