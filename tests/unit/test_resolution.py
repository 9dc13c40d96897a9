"""Entity resolution: normalised names, aliases, honorifics, first-name/full-name, ambiguity."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from persona_server.domain.models import Entity, EntityKind
from persona_server.extraction.resolution import normalise_name, resolve
from persona_server.ports.extractor import ExtractedEntity

NOW = datetime(2024, 1, 1, tzinfo=UTC)
P = EntityKind.PERSON


def ent(
    id_: str,
    name: str,
    kind: EntityKind = P,
    aliases: tuple[str, ...] = (),
    *,
    invalid: bool = False,
) -> Entity:
    return Entity(
        id=id_,
        text=name,
        recorded_at=NOW,
        name=name,
        kind=kind,
        aliases=list(aliases),
        invalid_at=NOW if invalid else None,
    )


def x(name: str, kind: EntityKind = P, *aliases: str) -> ExtractedEntity:
    return ExtractedEntity(name=name, kind=kind, aliases=aliases)


@pytest.mark.parametrize(
    ("raw", "norm"),
    [
        ("Melanie", "melanie"),
        ("  Melanie   Smith ", "melanie smith"),
        ("Dr. Lee", "lee"),
        ("dr lee", "lee"),
        ("Caroline's", "caroline"),
        ("Caroline\u2019s", "caroline"),
        ("The Beatles", "beatles"),
        ("José", "jose"),
        ("Uncle Bob", "uncle bob"),  # family titles stay: Uncle Bob is not any Bob
        ("Dr.", "dr"),  # an honorific alone is still a name string
    ],
)
def test_normalise_name(raw: str, norm: str) -> None:
    assert normalise_name(raw) == norm
    assert normalise_name(norm) == norm


def only(
    extracted: list[ExtractedEntity], existing: list[Entity]
) -> tuple[str | None, tuple[str, ...]]:
    (match,) = resolve(extracted, existing).matches
    return match.existing_id, match.candidates


def test_exact_and_alias_matches() -> None:
    existing = [ent("e1", "Melanie Smith", aliases=("Mel",)), ent("e2", "Lisbon", EntityKind.PLACE)]
    assert only([x("melanie smith")], existing) == ("e1", ())
    assert only([x("Mel")], existing) == ("e1", ())
    assert only([x("Lisbon", EntityKind.PLACE)], existing) == ("e2", ())


def test_honorifics_do_not_split_a_person() -> None:
    assert only([x("Dr. Lee")], [ent("e1", "Lee")]) == ("e1", ())
    assert only([x("Lee")], [ent("e1", "Dr. Lee")]) == ("e1", ())
    # With a title, a single word is a surname: "Dr. Lee" is Jane Lee...
    assert only([x("Dr. Lee")], [ent("e1", "Jane Lee")]) == ("e1", ())
    # ...without one it is a given name, and Jane Lee is not called "Lee".
    assert only([x("Lee")], [ent("e1", "Jane Lee")]) == (None, ())


def test_first_name_matches_a_unique_full_name_both_ways() -> None:
    assert only([x("Melanie")], [ent("e1", "Melanie Smith")]) == ("e1", ())
    assert only([x("Melanie Smith")], [ent("e1", "Melanie")]) == ("e1", ())


def test_no_prefix_or_nickname_guessing() -> None:
    assert only([x("Mel")], [ent("e1", "Melanie")]) == (None, ())
    assert only([x("Mel")], [ent("e1", "Melanie Smith")]) == (None, ())


def test_several_candidates_are_ambiguous_not_guessed() -> None:
    existing = [ent("e2", "Melanie Smith"), ent("e1", "Melanie Jones")]
    resolution = resolve([x("Melanie")], existing)
    (match,) = resolution.matches
    assert match.existing_id is None
    assert match.is_ambiguous
    assert match.candidates == ("e1", "e2")
    assert resolution.ambiguous == (match,)
    assert resolution.new == resolution.matched == ()


def test_first_name_rule_is_for_people_only() -> None:
    assert only([x("New", EntityKind.PLACE)], [ent("e1", "New York", EntityKind.PLACE)]) == (
        None,
        (),
    )


def test_kinds_must_agree_unless_one_is_unknown() -> None:
    existing = [ent("e1", "Jordan", EntityKind.PLACE)]
    assert only([x("Jordan", P)], existing) == (None, ())
    assert only([x("Jordan", EntityKind.OTHER)], existing) == ("e1", ())
    assert only([x("Jordan", EntityKind.PLACE)], [ent("e1", "Jordan", EntityKind.OTHER)]) == (
        "e1",
        (),
    )


def test_same_kind_wins_over_an_untyped_namesake() -> None:
    existing = [ent("e1", "Jordan", EntityKind.OTHER), ent("e2", "Jordan", P)]
    assert only([x("Jordan", P)], existing) == ("e2", ())


def test_invalidated_entities_are_ignored() -> None:
    assert only([x("Melanie")], [ent("e1", "Melanie", invalid=True)]) == (None, ())


def test_repeated_mentions_land_on_one_entity() -> None:
    batch = [x("Melanie"), x("Dr. Lee"), x("Melanie Smith"), x("melanie"), x("Lee")]
    resolution = resolve(batch, [ent("e9", "Melanie Smith")])
    assert len(resolution.matches) == 2
    mel = resolution.lookup("Melanie")
    lee = resolution.lookup("lee")
    assert mel is not None and lee is not None
    assert mel is resolution.lookup("Melanie Smith") is resolution.lookup("melanie")
    assert (mel.existing_id, mel.entity.name) == ("e9", "Melanie Smith")
    assert set(mel.entity.aliases) == {"Melanie", "melanie"}
    assert (lee.existing_id, lee.entity.name, lee.entity.aliases) == (None, "Dr. Lee", ("Lee",))
    assert resolution.new == (lee,)


def test_first_name_groups_only_with_a_unique_full_name_in_the_batch() -> None:
    batch = [x("Melanie"), x("Melanie Smith"), x("Melanie Jones")]
    assert len(resolve(batch, []).matches) == 3


def test_resolution_is_deterministic_whatever_the_order_of_existing() -> None:
    existing = [ent("b", "Anna Berg"), ent("a", "Anna Alm"), ent("c", "Lisbon", EntityKind.PLACE)]
    batch = [x("Anna"), x("Lisbon", EntityKind.PLACE)]
    assert resolve(batch, existing) == resolve(batch, list(reversed(existing)))
    assert [m.candidates for m in resolve(batch, existing).matches] == [("a", "b"), ()]


def test_lookup_of_an_unknown_name_is_none() -> None:
    assert resolve([x("Melanie")], []).lookup("Caroline") is None
