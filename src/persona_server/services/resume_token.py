"""Resume tokens of the context stream: an opaque, user-bound pointer into the change log, with
the memories the client holds at that point.

A resumed stream sends the difference between that context and the current one (context_view
`diff`), so the token must say what the client holds: the change log alone cannot tell which
memories a relevance-ranked context had pushed out. Layout (version 2), base64url without
padding:

    version (1 byte) | user tag (8) | seq (8, big-endian) | count (2) | count ids

An id shaped as `domain.ids.new_id` mints it takes 17 bytes (type code, 16 bytes of hex
digits); any other id a 0 byte, a 2-byte length and its UTF-8. A context of more than
`MAX_CONTEXT_IDS` memories is not written out (count 0xFFFF): resuming from such a token
resyncs. Version 1 tokens (JSON with the seq only, from earlier servers) still decode, as
"context unknown".
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from persona_server.domain.ids import PREFIXES
from persona_server.domain.models import UserRef

VERSION = 2
# Covers any query context (max_results <= 100) and a profile of up to 32 per group, in about
# 2.9 KB of token at most.
MAX_CONTEXT_IDS = 128
_UNKNOWN = 0xFFFF
_TAG_BYTES = 8
_HEADER = 1 + _TAG_BYTES + 8 + 2
_CODES = {prefix: i for i, prefix in enumerate(sorted(PREFIXES.values()), start=1)}
_PREFIX_OF = {code: prefix for prefix, code in _CODES.items()}
_MINTED = re.compile(r"([a-z]{2})_([0-9a-f]{32})")
_NOT_OURS = "resume_token is not a token this server issued"


class InvalidResumeTokenError(ValueError):
    pass


@dataclass(frozen=True)
class ResumePoint:
    seq: int
    # The ids of the memories the client held; None when the token does not say (resync).
    context: tuple[str, ...] | None


def _user_tag(user: UserRef) -> bytes:
    # Binds a token to its (tenant, user) so another user's token is refused, not misread.
    return hashlib.sha256(f"{user.tenant}\x00{user.user_id}".encode()).digest()[:_TAG_BYTES]


def encode(user: UserRef, seq: int, context: Sequence[str]) -> str:
    out = bytearray([VERSION])
    out += _user_tag(user)
    out += seq.to_bytes(8, "big")
    if len(context) > MAX_CONTEXT_IDS:
        out += _UNKNOWN.to_bytes(2, "big")
    else:
        out += len(context).to_bytes(2, "big")
        for memory_id in context:
            minted = _MINTED.fullmatch(memory_id)
            if minted is not None and minted[1] in _CODES:
                out.append(_CODES[minted[1]])
                out += bytes.fromhex(minted[2])
            else:
                raw = memory_id.encode()
                out.append(0)
                out += len(raw).to_bytes(2, "big")
                out += raw
    return base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")


def decode(user: UserRef, token: str) -> ResumePoint:
    try:
        raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidResumeTokenError(_NOT_OURS) from exc
    if raw[:1] == b"{":
        return _decode_v1(user, raw)
    if len(raw) < _HEADER or raw[0] != VERSION:
        raise InvalidResumeTokenError(_NOT_OURS)
    if raw[1 : 1 + _TAG_BYTES] != _user_tag(user):
        raise InvalidResumeTokenError("resume_token belongs to another user")
    seq = int.from_bytes(raw[1 + _TAG_BYTES : _HEADER - 2], "big")
    count = int.from_bytes(raw[_HEADER - 2 : _HEADER], "big")
    if count == _UNKNOWN:
        if len(raw) != _HEADER:
            raise InvalidResumeTokenError(_NOT_OURS)
        return ResumePoint(seq, None)
    ids: list[str] = []
    pos = _HEADER
    try:
        for _ in range(count):
            code = raw[pos]
            if code:
                body = raw[pos + 1 : pos + 17]
                if len(body) != 16:
                    raise InvalidResumeTokenError(_NOT_OURS)
                ids.append(f"{_PREFIX_OF[code]}_{body.hex()}")
                pos += 17
            else:
                size = int.from_bytes(raw[pos + 1 : pos + 3], "big")
                body = raw[pos + 3 : pos + 3 + size]
                if len(body) != size:
                    raise InvalidResumeTokenError(_NOT_OURS)
                ids.append(body.decode())
                pos += 3 + size
    except (IndexError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidResumeTokenError(_NOT_OURS) from exc
    if pos != len(raw):
        raise InvalidResumeTokenError(_NOT_OURS)
    return ResumePoint(seq, tuple(ids))


def _decode_v1(user: UserRef, raw: bytes) -> ResumePoint:
    try:
        data = json.loads(raw)
        seq = data["s"]
        ok = data.get("v") == 1 and isinstance(seq, int) and seq >= 0
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidResumeTokenError(_NOT_OURS) from exc
    if not ok:
        raise InvalidResumeTokenError(_NOT_OURS)
    v1_tag = hashlib.sha256(f"{user.tenant}\x00{user.user_id}".encode()).hexdigest()[:16]
    if data.get("u") != v1_tag:
        raise InvalidResumeTokenError("resume_token belongs to another user")
    return ResumePoint(int(seq), None)
