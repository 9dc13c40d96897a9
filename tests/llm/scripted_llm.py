"""A local OpenAI-compatible HTTP server with scripted answers, for driving the real `openai`
client over real HTTP.

Each POST is recorded (path, headers, JSON body) and answered by the next scripted response,
or by `responder(request)` when the script is empty, or with a 500 when neither is set.
Responses can be chat completions (with usage), error statuses with headers, raw bodies
(malformed JSON) and delays (for timeouts). Delays wait on an event, so `stop()` never hangs on
a sleeping handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DATA_OPEN = "<data>"
DATA_CLOSE = "</data>"


@dataclass
class Reply:
    """A chat completion whose message content is `content` (a dict/list is sent as JSON)."""

    content: Any
    prompt_tokens: int = 120
    completion_tokens: int = 30
    finish_reason: str = "stop"
    delay_s: float = 0.0
    usage: bool = True


@dataclass
class Fail:
    status: int
    message: str = "scripted failure"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Raw:
    body: bytes
    status: int = 200
    content_type: str = "application/json"
    delay_s: float = 0.0


Response = Reply | Fail | Raw


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))

    def content(self, role: str) -> str:
        return "\n".join(m["content"] for m in self.messages if m["role"] == role)

    @property
    def system(self) -> str:
        return self.content("system")

    @property
    def user(self) -> str:
        """The first user message (the one with the data section)."""
        return next((m["content"] for m in self.messages if m["role"] == "user"), "")

    def data(self) -> Any:
        """The JSON of the first user message's data section."""
        text = self.user
        start = text.index(DATA_OPEN) + len(DATA_OPEN)
        end = text.index(DATA_CLOSE, start)
        return json.loads(text[start:end])

    @property
    def schema_name(self) -> str:
        fmt = self.body.get("response_format", {})
        return str(fmt.get("json_schema", {}).get("name", ""))


class ScriptedLLM:
    def __init__(self) -> None:
        self.script: deque[Response] = deque()
        self.requests: list[Recorded] = []
        self.responder: Callable[[Recorded], Response] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def push(self, *responses: Response) -> None:
        with self._lock:
            self.script.extend(responses)

    def completions(self, schema_name: str | None = None) -> list[Recorded]:
        with self._lock:
            recorded = list(self.requests)
        return [
            r
            for r in recorded
            if r.path.endswith("/chat/completions")
            and (schema_name is None or r.schema_name == schema_name)
        ]

    async def wait_requests(self, n: int, within_s: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + within_s
        while len(self.completions()) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} requests, got {len(self.completions())}")
            await asyncio.sleep(0.02)
        return self.completions()

    def _next(self, request: Recorded) -> Response:
        with self._lock:
            self.requests.append(request)
            if self.script:
                return self.script.popleft()
            responder = self.responder
        if responder is not None:
            return responder(request)
        return Fail(500, "no scripted response left")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"{}")
                except json.JSONDecodeError:
                    body = {"_raw": raw.decode("utf-8", "replace")}
                request = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                response = owner._next(request)
                if response.delay_s and owner._stopping.wait(response.delay_s):
                    return
                # The client may have given up (timeout): then there is nobody to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._send(response, body)

            def _send(self, response: Response, body: dict[str, Any]) -> None:
                if isinstance(response, Raw):
                    self._write(response.status, response.body, response.content_type, {})
                    return
                if isinstance(response, Fail):
                    payload = {
                        "error": {
                            "message": response.message,
                            "type": "server_error",
                            "code": str(response.status),
                        }
                    }
                    self._write(
                        response.status,
                        json.dumps(payload).encode(),
                        "application/json",
                        response.headers,
                    )
                    return
                content = response.content
                if not isinstance(content, str):
                    content = json.dumps(content)
                completion: dict[str, Any] = {
                    "id": f"chatcmpl-{len(owner.requests)}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "scripted"),
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": response.finish_reason,
                        }
                    ],
                }
                if response.usage:
                    completion["usage"] = {
                        "prompt_tokens": response.prompt_tokens,
                        "completion_tokens": response.completion_tokens,
                        "total_tokens": response.prompt_tokens + response.completion_tokens,
                    }
                self._write(200, json.dumps(completion).encode(), "application/json", {})

            def _write(
                self, status: int, payload: bytes, content_type: str, headers: Mapping[str, str]
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler


# --- builders of the model's JSON answers ---


def extraction(
    *,
    summary: str = "",
    entities: list[dict[str, Any]] | None = None,
    relations: list[dict[str, Any]] | None = None,
    psyche: list[dict[str, Any]] | None = None,
    goals: list[dict[str, Any]] | None = None,
    contradicts: list[str] | None = None,
) -> dict[str, Any]:
    return {
        "summary": summary,
        "entities": entities or [],
        "relations": relations or [],
        "psyche": psyche or [],
        "goals": goals or [],
        "contradicts": contradicts or [],
    }


def entity(name: str, type: str = "person", aliases: list[str] | None = None) -> dict[str, Any]:
    return {"name": name, "type": type, "aliases": aliases or []}


def relation(
    subject: str,
    predicate: str,
    obj: str,
    statement: str,
    *,
    object_is_entity: bool = True,
    date_text: str | None = None,
) -> dict[str, Any]:
    return {
        "subject": subject,
        "predicate": predicate,
        "object": obj,
        "object_is_entity": object_is_entity,
        "statement": statement,
        "date_text": date_text,
    }


def ref_of(request: Recorded, text_contains: str) -> str:
    """The ref ("M3") the request's data section gives the memory whose text contains this."""
    for memory in request.data()["memories"]:
        if text_contains in memory["text"]:
            return str(memory["ref"])
    raise AssertionError(f"no memory containing {text_contains!r} was sent to the model")
