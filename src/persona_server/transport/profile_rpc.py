"""GetProfile on the wire: request validation and the response (the service is
services.user_profile)."""

from __future__ import annotations

from persona.v1 import profile_pb2 as ppb
from persona_server.domain.models import Memory, MemoryType
from persona_server.services.user_profile import (
    DEFAULT_ITEMS,
    MAX_ITEMS,
    ProfileItem,
    ProfileQuery,
    UserProfile,
)
from persona_server.transport import convert
from persona_server.transport.validation import Violations, check_range, to_datetime, user_ref


def request(tenant: str, req: ppb.GetProfileRequest) -> ProfileQuery:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_range(v, "max_items", req.max_items, 0, MAX_ITEMS)
    as_of = to_datetime(v, "as_of", req.as_of) if req.HasField("as_of") else None
    v.raise_if_any()
    return ProfileQuery(
        user=user,
        max_items=req.max_items or DEFAULT_ITEMS,
        as_of=as_of,
        include_dormant=req.include_dormant,
    )


def response(profile: UserProfile, user_id: str) -> ppb.GetProfileResponse:
    def item(found: ProfileItem) -> ppb.ProfileItem:
        def strength(_memory: Memory) -> float:
            return found.strength  # computed once, by the service, at the profile's as_of

        memory = convert.memory(found.memory, user_id, strength)
        return ppb.ProfileItem(memory=memory, relation=found.relation)

    def items(found: list[ProfileItem]) -> list[ppb.ProfileItem]:
        return [item(i) for i in found]

    by_type = profile.counts.by_type
    out = ppb.GetProfileResponse(
        psyche=items(profile.psyche),
        goals=items(profile.goals),
        entities=items(profile.entities),
        episodes=items(profile.episodes),
        counts=ppb.ProfileCounts(
            episodes=by_type[MemoryType.EPISODE],
            psyche=by_type[MemoryType.PSYCHE],
            goals=by_type[MemoryType.GOAL],
            active_goals=profile.counts.active_goals,
            entities=by_type[MemoryType.ENTITY],
            facts=by_type[MemoryType.FACT],
        ),
        context_block=profile.context_block,
    )
    out.as_of.CopyFrom(convert.timestamp(profile.as_of))
    return out
