"""Strength and dormancy (domain.strength) against a fixed clock, and their settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from persona_server.config import Settings
from persona_server.domain.models import Episode, Goal, GoalStatus, MemoryType, Psyche
from persona_server.domain.strength import Decay

T0 = datetime(2024, 3, 1, tzinfo=UTC)
DECAY = Decay(
    half_lives={
        MemoryType.EPISODE: 100.0,
        MemoryType.PSYCHE: 10.0,
        MemoryType.GOAL: 10.0,
        MemoryType.ENTITY: 10.0,
        MemoryType.FACT: 10.0,
    },
    done_goal_half_life=1.0,
    forget_threshold=0.05,
)


def days(n: float) -> datetime:
    return T0 + timedelta(days=n)


def likes(mentions: int = 1, cited: int = 0, last: datetime | None = T0) -> Psyche:
    return Psyche(
        id="ps_1",
        text="likes tea",
        occurred_at=T0,
        recorded_at=T0,
        mention_count=mentions,
        cited_count=cited,
        last_reinforced_at=last,
    )


def test_one_mention_starts_at_half_and_halves_per_half_life() -> None:
    memory = likes()
    assert DECAY.strength(memory, T0) == pytest.approx(0.5)
    assert DECAY.strength(memory, days(10)) == pytest.approx(0.25)
    assert DECAY.strength(memory, days(20)) == pytest.approx(0.125)


def test_reinforcement_raises_strength_and_slows_decay() -> None:
    once, thrice = likes(1), likes(3)
    assert DECAY.strength(thrice, T0) == pytest.approx(0.75)
    # Three reinforcements: the half-life is three times as long.
    assert DECAY.strength(thrice, days(30)) == pytest.approx(0.375)
    assert DECAY.strength(thrice, days(30)) > DECAY.strength(once, days(30))
    # A citation counts like a mention.
    assert DECAY.strength(likes(1, cited=2), days(30)) == DECAY.strength(thrice, days(30))


def test_a_new_reinforcement_resets_the_age() -> None:
    stale = likes(1, last=T0)
    fresh = likes(2, last=days(40))
    assert DECAY.strength(fresh, days(40)) == pytest.approx(2 / 3)
    assert DECAY.strength(fresh, days(40)) > DECAY.strength(stale, days(40))


def test_reading_the_past_never_uses_a_later_reinforcement() -> None:
    memory = likes(2, last=days(40))
    # As of day 10 the reinforcement of day 40 had not happened: age counts from the event.
    assert DECAY.strength(memory, days(10)) == pytest.approx(2 / 3 * 0.5 ** (10 / 20))
    # Before the memory existed, nothing has decayed.
    assert DECAY.strength(memory, days(-5)) == pytest.approx(2 / 3)


def test_done_goals_fade_fast_and_episodes_slowly() -> None:
    active = Goal(id="go_1", text="run", occurred_at=T0, recorded_at=T0, last_reinforced_at=T0)
    done = active.model_copy(update={"status": GoalStatus.ACHIEVED})
    assert DECAY.strength(active, days(5)) == pytest.approx(0.5 * 0.5**0.5)
    assert DECAY.strength(done, days(5)) == pytest.approx(0.5 * 0.5**5)
    episode = Episode(id="ep_1", source_id="s", text="x", occurred_at=T0, recorded_at=T0)
    assert DECAY.strength(episode, days(100)) == pytest.approx(0.25)


def test_dormant_below_threshold_but_never_an_episode() -> None:
    memory = likes()
    # 0.5 * 0.5 ** (t / 10) < 0.05  <=>  t > 10 * log2(10) = 33.2 days
    assert not DECAY.dormant(memory, days(33))
    assert DECAY.dormant(memory, days(34))
    old = Episode(id="ep_1", source_id="s", text="x", occurred_at=T0, recorded_at=T0)
    assert DECAY.strength(old, days(10_000)) < 0.05
    assert not DECAY.dormant(old, days(10_000))


def test_strength_is_computed_not_written() -> None:
    memory = likes()
    before = memory.model_dump()
    DECAY.strength(memory, days(50))
    DECAY.dormant(memory, days(50))
    assert memory.model_dump() == before


def test_settings_read_half_lives_and_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_DECAY_HALF_LIFE_DAYS_PSYCHE", "5")
    monkeypatch.setenv("PERSONA_DECAY_HALF_LIFE_DAYS_GOAL_DONE", "2")
    monkeypatch.setenv("PERSONA_FORGET_THRESHOLD", "0.2")
    decay = Settings(_env_file=None).decay  # type: ignore[call-arg]
    assert decay.half_lives[MemoryType.PSYCHE] == 5
    assert decay.half_lives[MemoryType.EPISODE] == 365
    assert decay.done_goal_half_life == 2
    assert decay.forget_threshold == 0.2
    defaults = Settings(_env_file=None).decay  # type: ignore[call-arg]
    assert defaults.half_lives[MemoryType.EPISODE] > defaults.half_lives[MemoryType.PSYCHE]
    monkeypatch.setenv("PERSONA_DECAY_HALF_LIFE_DAYS_FACT", "0")
    with pytest.raises(ValueError, match="decay_half_life_days_fact"):
        Settings(_env_file=None)  # type: ignore[call-arg]
