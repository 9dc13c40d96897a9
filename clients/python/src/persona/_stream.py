"""StreamContext bookkeeping shared by the async and sync stream wrappers.

A subscription survives a dropped connection: on UNAVAILABLE the wrapper reconnects (with the
client's retry policy and backoff) and passes the resume token of the last event the consumer
received, so the server sends what changed since instead of a new snapshot and nothing is
missed or repeated. The retry budget is reset by every event received, so a long-lived stream
can survive many separate outages but not one that lasts.
"""

from __future__ import annotations

import grpc

from persona import _requests
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
        try:
            return self._attempts.failed(rpc_error)
        except BaseException:
            self.closed = True
            raise
