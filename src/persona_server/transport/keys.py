"""API keys and per-tenant limits: where they come from, and how they change without a restart.

Keys are held only as sha256 digests, whether they come from `PERSONA_API_KEYS` (development) or
from a key file (production), so a memory dump or a leaked file does not leak keys. The key
file has two kinds of lines:

    sha256:<64 hex digits> <tenant>
    tenant <tenant> quota_memories_per_user=100000 rate_limit_rps=50 retention_days=30 ...

The second kind overrides the server-wide `PERSONA_RATE_LIMIT_*` / `PERSONA_QUOTA_*` /
`PERSONA_RETENTION_DAYS` defaults for one tenant. `KeySource` watches the file and swaps in a
new key ring when it changes (rotation without a restart); a file that no longer parses is
refused and the previous ring kept, so a bad edit never locks everyone out.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from persona_server.domain.tenancy import LIMIT_NAMES, TenantLimits

audit = logging.getLogger("persona.audit")
log = logging.getLogger(__name__)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeyConfigError(ValueError):
    pass


@dataclass(frozen=True)
class KeyRing:
    """Digest -> tenant, and per-tenant limit overrides. No digests: the server runs open as
    one default tenant."""

    digests: Mapping[str, str] = field(default_factory=dict)
    overrides: Mapping[str, Mapping[str, float | int]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.digests

    def tenant_for(self, key: str) -> str | None:
        digest = hash_key(key)
        found = None
        for known, tenant in self.digests.items():
            # Every entry is compared, in constant time: neither the comparison nor the loop
            # stops early, so timing does not tell how close a guess was or where it matched.
            if hmac.compare_digest(known, digest):
                found = tenant
        return found

    def limits_for(self, tenant: str, defaults: TenantLimits) -> TenantLimits:
        overrides = self.overrides.get(tenant)
        return defaults.overridden(dict(overrides)) if overrides else defaults

    @classmethod
    def from_settings(cls, pairs: str, file: Path | None) -> KeyRing:
        digests: dict[str, str] = {}
        for n, raw in enumerate(p.strip() for p in pairs.split(",")):
            if not raw:
                continue
            key, sep, tenant = raw.rpartition(":")
            if not sep or not key or not tenant:
                raise ApiKeyConfigError(
                    f"PERSONA_API_KEYS entry {n + 1} must be key:tenant (got a malformed pair)"
                )
            digests[hash_key(key)] = tenant
        overrides: dict[str, dict[str, float | int]] = {}
        if file is not None:
            file_digests, overrides = read_key_file(file)
            digests.update(file_digests)
        return cls(digests, overrides)


def _limit_value(name: str, text: str) -> float | int:
    number = float(text) if name == "rate_limit_rps" else int(text)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def read_key_file(path: Path) -> tuple[dict[str, str], dict[str, dict[str, float | int]]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ApiKeyConfigError(f"cannot read PERSONA_API_KEYS_FILE {path}: {exc}") from exc
    digests: dict[str, str] = {}
    overrides: dict[str, dict[str, float | int]] = {}
    for number, line in enumerate(lines, start=1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        if parts[0] == "tenant":
            if len(parts) < 2:
                raise ApiKeyConfigError(f"{where}: expected 'tenant <tenant> name=value ...'")
            limits = overrides.setdefault(parts[1], {})
            for pair in parts[2:]:
                name, sep, value = pair.partition("=")
                if not sep or name not in LIMIT_NAMES:
                    raise ApiKeyConfigError(
                        f"{where}: unknown setting {name!r}; known: {', '.join(LIMIT_NAMES)}"
                    )
                try:
                    limits[name] = _limit_value(name, value)
                except ValueError:
                    raise ApiKeyConfigError(
                        f"{where}: {name} must be a non-negative number, got {value!r}"
                    ) from None
            continue
        digest = parts[0].removeprefix("sha256:").lower()
        valid = parts[0].startswith("sha256:") and len(digest) == 64
        if len(parts) != 2 or not valid or any(c not in "0123456789abcdef" for c in digest):
            raise ApiKeyConfigError(f"{where}: expected 'sha256:<64 hex digits> <tenant>'")
        digests[digest] = parts[1]
    return digests, overrides


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeySource:
    """The current key ring: `PERSONA_API_KEYS` plus the key file, re-read when the file
    changes (checked every `poll_s` by `watch`)."""

    def __init__(self, pairs: str, file: Path | None, poll_s: float = 2.0) -> None:
        self._pairs = pairs
        self._file = file
        self._poll_s = poll_s
        self._stamp = _stamp(file) if file is not None else None
        self.ring = KeyRing.from_settings(pairs, file)

    def reload_if_changed(self) -> bool:
        """Re-read the file if it changed since the last read; True if the ring was replaced."""
        if self._file is None:
            return False
        stamp = _stamp(self._file)
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            ring = KeyRing.from_settings(self._pairs, self._file)
        except ApiKeyConfigError as exc:
            audit.error(
                "api key file rejected; the previous keys stay in use",
                extra={"audit": "api_keys_reload_failed", "problem": str(exc)},
            )
            return False
        if ring.empty and not self.ring.empty:
            # An emptied file would turn the server open: refuse that as a bad edit.
            audit.error(
                "api key file has no keys; the previous keys stay in use",
                extra={"audit": "api_keys_reload_failed", "problem": "no keys"},
            )
            return False
        self.ring = ring
        audit.info(
            "api keys reloaded",
            extra={
                "audit": "api_keys_reloaded",
                "keys": len(ring.digests),
                "tenants": len(set(ring.digests.values())),
            },
        )
        return True

    async def watch(self) -> None:
        """Poll the file until cancelled."""
        if self._file is None:
            return
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                self.reload_if_changed()
            except Exception:
                log.exception("checking the api key file failed")
