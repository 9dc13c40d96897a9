"""Resume tokens of the context stream: an opaque, user-bound pointer into the change log."""

from __future__ import annotations

import base64
import hashlib
import json

from persona_server.domain.models import UserRef


class InvalidResumeTokenError(ValueError):
    pass


def _user_tag(user: UserRef) -> str:
    # Binds a token to its (tenant, user) so another user's token is refused, not misread.
    return hashlib.sha256(f"{user.tenant}\x00{user.user_id}".encode()).hexdigest()[:16]


def encode(user: UserRef, seq: int) -> str:
    raw = json.dumps({"v": 1, "u": _user_tag(user), "s": seq}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(user: UserRef, token: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        seq = data["s"]
        ok = data.get("v") == 1 and isinstance(seq, int) and seq >= 0
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidResumeTokenError("resume_token is not a token this server issued") from exc
    if not ok:
        raise InvalidResumeTokenError("resume_token is not a token this server issued")
    if data.get("u") != _user_tag(user):
        raise InvalidResumeTokenError("resume_token belongs to another user")
    return int(seq)
