"""The offline rule-based extractor on hand-written chat lines.

Relative dates always resolve against `occurred_at`; 2023-05-08 is a Monday, which makes the
week arithmetic below easy to check by hand.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from persona_server.domain.models import (
    Entity,
    EntityKind,
    Fact,
    Goal,
    GoalStatus,
    Memory,
    Psyche,
    PsycheKind,
)
from persona_server.extraction.offline import OfflineExtractor, summarise
from persona_server.ports.extractor import (
    USER_SUBJECT,
    ExtractionInput,
    ExtractionResult,
    Extractor,
)

MONDAY = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def run(
    text: str,
    speaker: str = "Caroline",
    occurred_at: datetime = MONDAY,
    context: tuple[Memory, ...] = (),
) -> ExtractionResult:
    return OfflineExtractor().extract_sync(
        ExtractionInput(text=text, occurred_at=occurred_at, speaker=speaker, context=context)
    )


def day(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def spans(result: ExtractionResult) -> list[tuple[str, date, date]]:
    return [(d.text, d.start.date(), d.end.date()) for d in result.dates]


def entities(result: ExtractionResult) -> dict[str, EntityKind]:
    return {e.name: e.kind for e in result.entities}


def triples(result: ExtractionResult) -> set[tuple[str, str, str]]:
    return {(r.subject, r.predicate, r.object) for r in result.relations}


# ---------------------------------------------------------------------------------------------
# Port conformance
# ---------------------------------------------------------------------------------------------


async def test_async_extract_matches_sync_and_satisfies_the_port() -> None:
    extractor: Extractor = OfflineExtractor()
    item = ExtractionInput(text="I moved to Lisbon yesterday.", occurred_at=MONDAY, speaker="Ana")
    assert extractor.name == "offline-rules-v1"
    assert await extractor.extract(item) == OfflineExtractor().extract_sync(item)


def test_output_is_deterministic() -> None:
    text = "My sister Anna lives in Porto. I love hiking and I want to run a marathon next year."
    assert run(text) == run(text)


@pytest.mark.parametrize("text", ["", "   ", "😀😀", "...", "!!!"])
def test_degenerate_input_gives_an_empty_result(text: str) -> None:
    result = run(text, speaker="")
    assert result.entities == ()
    assert result.relations == ()
    assert result.psyche == ()
    assert result.goals == ()
    assert result.dates == ()


# ---------------------------------------------------------------------------------------------
# Dates
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expr", "start", "end"),
    [
        ("I joined a book club yesterday.", "yesterday", date(2023, 5, 7), date(2023, 5, 8)),
        ("I repainted the fence last year!", "last year", date(2022, 1, 1), date(2023, 1, 1)),
        ("Busy day today.", "today", date(2023, 5, 8), date(2023, 5, 9)),
        ("Pizza tonight?", "tonight", date(2023, 5, 8), date(2023, 5, 9)),
        ("See you tomorrow.", "tomorrow", date(2023, 5, 9), date(2023, 5, 10)),
        ("It rained all last week.", "last week", date(2023, 5, 1), date(2023, 5, 8)),
        ("We camped last weekend.", "last weekend", date(2023, 5, 6), date(2023, 5, 8)),
        ("Free this weekend?", "this weekend", date(2023, 5, 13), date(2023, 5, 15)),
        ("I start next month.", "next month", date(2023, 6, 1), date(2023, 7, 1)),
        ("Maybe next year.", "next year", date(2024, 1, 1), date(2025, 1, 1)),
        ("It was two days ago.", "two days ago", date(2023, 5, 6), date(2023, 5, 7)),
        ("I joined 3 weeks ago.", "3 weeks ago", date(2023, 4, 17), date(2023, 4, 24)),
        ("It was a few days ago.", "a few days ago", date(2023, 5, 4), date(2023, 5, 7)),
        ("I ran a 5K last Friday.", "last Friday", date(2023, 5, 5), date(2023, 5, 6)),
        ("My car broke down last Fri.", "last Fri", date(2023, 5, 5), date(2023, 5, 6)),
        ("We met on 7 May 2023.", "7 May 2023", date(2023, 5, 7), date(2023, 5, 8)),
        ("We met on May 7, 2023.", "May 7, 2023", date(2023, 5, 7), date(2023, 5, 8)),
        ("Signed on 2023-05-07.", "2023-05-07", date(2023, 5, 7), date(2023, 5, 8)),
        ("Back in May 2021 it started.", "May 2021", date(2021, 5, 1), date(2021, 6, 1)),
        ("I graduated in 2022.", "in 2022", date(2022, 1, 1), date(2023, 1, 1)),
        ("I went to Japan in March.", "in March", date(2023, 3, 1), date(2023, 4, 1)),
        ("I'm going to Japan next March.", "next March", date(2024, 3, 1), date(2024, 4, 1)),
        ("I will fly to Japan in March.", "in March", date(2024, 3, 1), date(2024, 4, 1)),
        ("We went hiking last summer.", "last summer", date(2022, 6, 1), date(2022, 9, 1)),
        ("It was the other day.", "the other day", date(2023, 5, 1), date(2023, 5, 8)),
        ("I was a kid in the 90s.", "the 90s", date(1990, 1, 1), date(2000, 1, 1)),
        ("Last Christmas was cosy.", "Last Christmas", date(2022, 12, 25), date(2022, 12, 26)),
        ("I'll know in two weeks.", "in two weeks", date(2023, 5, 22), date(2023, 5, 29)),
    ],
)
def test_date_expressions_resolve_against_occurred_at(
    text: str, expr: str, start: date, end: date
) -> None:
    assert spans(run(text)) == [(expr, start, end)]


def test_dates_are_half_open_utc_midnights() -> None:
    (d,) = run("I went there yesterday.").dates
    assert d.start == day(2023, 5, 7)
    assert d.end == day(2023, 5, 8)
    assert d.start.tzinfo is UTC


def test_occurred_at_in_another_timezone_is_read_as_its_utc_day() -> None:
    # 01:00 in UTC+5 on the 8th is still the 7th in UTC, so "yesterday" is the 6th.
    when = datetime(2023, 5, 8, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    assert spans(run("It happened yesterday.", occurred_at=when)) == [
        ("yesterday", date(2023, 5, 6), date(2023, 5, 7))
    ]


def test_naive_occurred_at_is_treated_as_utc() -> None:
    naive = datetime(2023, 5, 8, 12, 0)
    assert spans(run("yesterday", occurred_at=naive))[0][1] == date(2023, 5, 7)


def test_relative_dates_never_use_the_wall_clock() -> None:
    old = datetime(2001, 9, 3, tzinfo=UTC)
    assert spans(run("We moved last year.", occurred_at=old)) == [
        ("last year", date(2000, 1, 1), date(2001, 1, 1))
    ]


def test_month_alone_is_the_most_recent_one_unless_the_sentence_looks_ahead() -> None:
    feb = datetime(2023, 2, 10, tzinfo=UTC)
    assert spans(run("I went to Rome in March.", occurred_at=feb))[0][1] == date(2022, 3, 1)
    assert spans(run("I'm flying to Rome in March.", occurred_at=feb))[0][1] == date(2023, 3, 1)


def test_overlapping_expressions_keep_the_longest() -> None:
    assert [t for t, _, _ in spans(run("It was on 7 May 2023 in Lisbon."))] == ["7 May 2023"]


@pytest.mark.parametrize(
    "text",
    [
        "It may rain later.",
        "I have 2 dogs and 3 cats.",
        "This may help you.",
        "I was born in a small town.",
        "She is in her 20s.",
        "I do this on Fridays.",
    ],
)
def test_no_dates_where_there_are_none(text: str) -> None:
    assert run(text).dates == ()


# ---------------------------------------------------------------------------------------------
# Entities
# ---------------------------------------------------------------------------------------------


def test_no_junk_entities_from_interjections_pronouns_or_sentence_starts() -> None:
    result = run("Thanks! That sounds great. Yesterday I went to the park.", speaker="")
    assert result.entities == ()
    result = run("Wow, OK. Hey! Honestly I think Monday in May is fine. LOL. AMAZING!", speaker="")
    assert result.entities == ()


def test_sentence_initial_common_words_are_not_names_but_known_names_are() -> None:
    assert run("Painting is fun. Gardening too.", speaker="").entities == ()
    assert entities(run("Melanie called me. Lisbon was lovely.", speaker="")) == {
        "Melanie": EntityKind.PERSON,
        "Lisbon": EntityKind.PLACE,
    }


def test_greeting_and_vocative_names_are_people() -> None:
    assert entities(run("Hey Mel! How was the trip?", speaker="")) == {"Mel": EntityKind.PERSON}
    assert entities(run("That's great news, Jolene!", speaker="")) == {"Jolene": EntityKind.PERSON}


@pytest.mark.parametrize(
    ("text", "name", "kind"),
    [
        ("I had lunch with Jolene today.", "Jolene", EntityKind.PERSON),
        ("I saw Dr. Lee this morning.", "Dr. Lee", EntityKind.PERSON),
        ("I went to see Mrs. Okafor.", "Mrs. Okafor", EntityKind.PERSON),
        ("Then Jolene said no.", "Jolene", EntityKind.PERSON),
        ("I moved to Lisbon.", "Lisbon", EntityKind.PLACE),
        ("We drove through Zermatt.", "Zermatt", EntityKind.PLACE),
        ("I walked around Central Park.", "Central Park", EntityKind.PLACE),
        ("I work at Google.", "Google", EntityKind.ORGANIZATION),
        ("I applied to Stanford University.", "Stanford University", EntityKind.ORGANIZATION),
        ("I interned at Acme Inc last year.", "Acme Inc", EntityKind.ORGANIZATION),
        ("We sing at Grace Church.", "Grace Church", EntityKind.ORGANIZATION),
        ("We loved Christmas this year.", "Christmas", EntityKind.EVENT),
        ("We ran the Boston Marathon.", "Boston Marathon", EntityKind.EVENT),
        ("I just read Dune again.", "Dune", EntityKind.OTHER),
    ],
)
def test_entity_kinds(text: str, name: str, kind: EntityKind) -> None:
    assert entities(run(text, speaker="")).get(name) == kind


def test_links_and_shouting_make_no_names() -> None:
    assert run("See https://Example.com/Page or mail Bob.Smith@Mail.com", speaker="").entities == ()
    # In an all-caps sentence only gazetteer names count.
    assert entities(run("OK SO I JUST GOT THE JOB AT AMAZON!!!", speaker="")) == {
        "Amazon": EntityKind.ORGANIZATION
    }


def test_possessive_is_stripped() -> None:
    assert entities(run("I walked Jolene's dog.", speaker="")) == {"Jolene": EntityKind.PERSON}


def test_lowercase_chat_still_finds_gazetteer_places() -> None:
    assert entities(run("i moved to lisbon last year", speaker="")) == {"Lisbon": EntityKind.PLACE}
    # Common words that are also places stay words in lower case.
    assert run("we had turkey in china bowls", speaker="").entities == ()


def test_repeated_mentions_in_one_text_are_one_entity() -> None:
    result = run("Melanie Smith is my cousin. Melanie said hi. Dr. Lee saw Lee.", speaker="")
    by_name = {e.name: e for e in result.entities}
    assert set(by_name) == {"Melanie Smith", "Dr. Lee"}
    assert by_name["Melanie Smith"].aliases == ("Melanie",)
    assert by_name["Dr. Lee"].aliases == ("Lee",)


def test_speaker_is_a_person_entity_but_a_role_is_not() -> None:
    assert run("Hello there.", speaker="Caroline").entities[0].name == "Caroline"
    assert run("Hello there.", speaker="Caroline").entities[0].kind == EntityKind.PERSON
    assert run("Hello there.", speaker="user").entities == ()
    assert run("Hello there.", speaker="assistant").entities == ()


def test_context_entities_type_names_and_rescue_sentence_starts() -> None:
    known = Entity(
        id="e1", text="Zorblax", recorded_at=NOW, name="Zorblax", kind=EntityKind.ORGANIZATION
    )
    assert entities(run("Zorblax hired me.", speaker="", context=(known,))) == {
        "Zorblax": EntityKind.ORGANIZATION
    }


# ---------------------------------------------------------------------------------------------
# Relations
# ---------------------------------------------------------------------------------------------


def test_first_person_relation_uses_the_speaker_as_subject() -> None:
    result = run("I moved to Sweden last year.")
    (rel,) = result.relations
    assert (rel.subject, rel.predicate, rel.object, rel.object_is_entity) == (
        "Caroline",
        "moved_to",
        "Sweden",
        True,
    )
    assert rel.text == "Caroline moved to Sweden"
    assert rel.valid_from == day(2022, 1, 1)


def test_without_a_speaker_the_subject_is_the_user() -> None:
    (rel,) = run("I moved to Lisbon.", speaker="").relations
    assert rel.subject == USER_SUBJECT
    assert rel.text == "The user moved to Lisbon"


@pytest.mark.parametrize(
    ("text", "triple"),
    [
        ("I live in Porto now.", ("Caroline", "lives_in", "Porto")),
        ("I've been living in Porto since 2019.", ("Caroline", "lives_in", "Porto")),
        ("I work at Google.", ("Caroline", "works_at", "Google")),
        ("I just got a job at Acme Corp!", ("Caroline", "works_at", "Acme Corp")),
        ("I'm from Brazil.", ("Caroline", "from", "Brazil")),
        ("I grew up in Ohio.", ("Caroline", "grew_up_in", "Ohio")),
        ("I met Jolene at the gym.", ("Caroline", "met", "Jolene")),
        ("We visited Kyoto in April.", ("Caroline", "visited", "Kyoto")),
        ("I'm going to Paris next week!", ("Caroline", "plans_to_visit", "Paris")),
        ("Anna is my sister.", ("Anna", "sister_of", "Caroline")),
        ("My best friend Jolene is visiting.", ("Jolene", "best_friend_of", "Caroline")),
        ("I have a brother named Tom.", ("Tom", "brother_of", "Caroline")),
        ("Melanie's husband Tom is kind.", ("Tom", "husband_of", "Melanie")),
        ("I'm married to Tom.", ("Caroline", "married_to", "Tom")),
        ("Melanie works at Google.", ("Melanie", "works_at", "Google")),
        ("I work at a bakery.", ("Caroline", "works_at", "a bakery")),
        ("I work as a nurse.", ("Caroline", "works_as", "nurse")),
        ("I'm divorced.", ("Caroline", "relationship_status", "divorced")),
        ("I'm 34 years old.", ("Caroline", "age", "34")),
        ("I have two kids.", ("Caroline", "num_children", "2")),
    ],
)
def test_relation_patterns(text: str, triple: tuple[str, str, str]) -> None:
    assert triple in triples(run(text))


def test_coordinated_verbs_share_the_subject() -> None:
    assert triples(run("My sister Anna lives in Porto and works at Google.")) == {
        ("Anna", "sister_of", "Caroline"),
        ("Anna", "lives_in", "Porto"),
        ("Anna", "works_at", "Google"),
    }


def test_pet_role_does_not_make_a_person() -> None:
    result = run("My dog Biscuit loves the beach.")
    assert ("Biscuit", "dog_of", "Caroline") in triples(result)
    assert entities(result)["Biscuit"] != EntityKind.PERSON


@pytest.mark.parametrize(
    "text",
    [
        "I don't live in Paris anymore.",
        "I never worked at Google.",
        "Do you live in Paris?",
        "Did Melanie move to Paris?",
        "She moved to Paris.",
        "I live in the moment.",
        "I went to Melanie's place.",
        'He said "I moved to Berlin" but I doubt it.',
        "If I moved to Canada, I would miss my family.",
    ],
)
def test_no_relation_from_negations_questions_pronouns_or_idioms(text: str) -> None:
    assert run(text).relations == ()


# ---------------------------------------------------------------------------------------------
# Psyche
# ---------------------------------------------------------------------------------------------


def psyche(text: str) -> dict[str, PsycheKind]:
    return {p.key: p.kind for p in run(text).psyche}


def test_preferences_merge_under_one_key() -> None:
    assert psyche("I love hiking in the mountains.") == {"likes:hik": PsycheKind.PREFERENCE}
    assert psyche("I really enjoy hikes.") == {"likes:hik": PsycheKind.PREFERENCE}
    assert psyche("I love to hike.") == {"likes:hik": PsycheKind.PREFERENCE}
    (p,) = run("I love hiking in the mountains.").psyche
    assert p.text == "Caroline loves hiking in the mountains"


@pytest.mark.parametrize(
    ("text", "key", "kind"),
    [
        ("I can't stand loud music.", "dislikes:loud music", PsycheKind.PREFERENCE),
        ("I hate running on treadmills.", "dislikes:run on treadmill", PsycheKind.PREFERENCE),
        ("I prefer tea over coffee.", "prefers:tea", PsycheKind.PREFERENCE),
        ("I'm a big fan of jazz.", "likes:jazz", PsycheKind.PREFERENCE),
        ("I'm not a fan of horror movies.", "dislikes:horror movy", PsycheKind.PREFERENCE),
        ("My favourite food is sushi.", "favourite_food:sushi", PsycheKind.PREFERENCE),
        ("My favorite movie is Inception!", "favourite_movy:inception", PsycheKind.PREFERENCE),
        ("Pizza is my favorite food.", "favourite_food:pizza", PsycheKind.PREFERENCE),
        ("I'm an introvert.", "trait:introvert", PsycheKind.TRAIT),
        ("I'm a creative person.", "trait:creativ", PsycheKind.TRAIT),
        ("I'm not a morning person.", "trait:not morn person", PsycheKind.TRAIT),
        ("I am very shy.", "trait:shy", PsycheKind.TRAIT),
        ("I value honesty.", "values:honesty", PsycheKind.VALUE),
        ("Family is really important to me.", "values:family", PsycheKind.VALUE),
        ("I'm allergic to peanuts.", "allergic:peanut", PsycheKind.TRAIT),
        ("I'm vegetarian.", "diet:vegetarian", PsycheKind.PREFERENCE),
        ("I'm a vegan now.", "diet:vegan", PsycheKind.PREFERENCE),
    ],
)
def test_psyche_patterns(text: str, key: str, kind: PsycheKind) -> None:
    assert psyche(text).get(key) == kind


@pytest.mark.parametrize(
    "text",
    [
        "I love it!",
        "I love you, Mel.",
        "I love that.",
        "I love your painting.",
        "I'm so tired today.",
        "I'm determined to finish it.",
        "Do you like jazz?",
        "That's what I like to hear.",
        "I'd like to learn Spanish.",
        "Melanie loves jazz.",
    ],
)
def test_no_psyche_from_vague_objects_moods_questions_or_others(text: str) -> None:
    assert run(text).psyche == ()


# ---------------------------------------------------------------------------------------------
# Goals
# ---------------------------------------------------------------------------------------------


def test_intention_is_an_active_goal_with_a_due_date() -> None:
    (goal,) = run("I want to run a marathon next year.").goals
    assert goal.status == GoalStatus.ACTIVE
    assert goal.key == "goal:run marathon"  # the date is not part of what the goal is
    assert goal.due_at == day(2024, 1, 1)
    assert goal.text == "Caroline wants to run a marathon next year"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("I'd like to learn Spanish.", "goal:learn spanish"),
        ("I'm planning to adopt a dog.", "goal:adopt dog"),
        ("I hope to visit Japan someday.", "goal:visit japan"),
        ("My goal is to save $5,000 for a trip.", "goal:sav 5"),
        ("I'm thinking about starting a podcast.", "goal:start podcast"),
        ("I will finish my novel by June.", "goal:finish novel"),
        ("Gonna finish my thesis and apply for internships.", "goal:finish thesis"),
    ],
)
def test_intention_patterns(text: str, key: str) -> None:
    goals = run(text).goals
    assert [(g.key, g.status) for g in goals][:1] == [(key, GoalStatus.ACTIVE)]


@pytest.mark.parametrize(
    "text",
    [
        "I'll let you know.",
        "I'll check it out!",
        "I'm gonna make it work.",
        "Gonna be awesome!",
        "Wanna see my moves?",
        "I'm gonna go to bed, night!",
        "Do you want to come?",
    ],
)
def test_small_talk_is_not_a_goal(text: str) -> None:
    assert run(text).goals == ()


def active_goal(key: str, text: str) -> Goal:
    return Goal(id=f"g-{key}", text=text, recorded_at=NOW, key=key, status=GoalStatus.ACTIVE)


def test_achievement_matching_an_intention_reuses_its_key() -> None:
    ctx: tuple[Memory, ...] = (
        active_goal("goal:run marathon", "Caroline wants to run a marathon"),
    )
    (goal,) = run("I finally ran a marathon!", context=ctx).goals
    assert (goal.status, goal.key) == (GoalStatus.ACHIEVED, "goal:run marathon")
    (goal,) = run("I completed the marathon last week.", context=ctx).goals
    assert (goal.status, goal.key) == (GoalStatus.ACHIEVED, "goal:run marathon")


def test_weak_achievement_verbs_need_a_matching_intention() -> None:
    assert run("I finally got some sleep.").goals == ()
    (goal,) = run("I completed my first triathlon!").goals
    assert goal.status == GoalStatus.ACHIEVED


def test_abandonment() -> None:
    (goal,) = run("I gave up on learning the piano.").goals
    assert goal.status == GoalStatus.ABANDONED
    ctx: tuple[Memory, ...] = (active_goal("goal:learn piano", "Caroline wants to learn piano"),)
    (goal,) = run("I quit piano lessons.", context=ctx).goals
    assert (goal.status, goal.key) == (GoalStatus.ABANDONED, "goal:learn piano")
    assert run("I quit my job.").goals == ()  # no intention to abandon


def test_quitting_a_habit_achieves_a_goal_to_quit_it() -> None:
    ctx: tuple[Memory, ...] = (active_goal("goal:quit smok", "Caroline wants to quit smoking"),)
    (goal,) = run("I quit smoking last month!", context=ctx).goals
    assert (goal.status, goal.key) == (GoalStatus.ACHIEVED, "goal:quit smok")


# ---------------------------------------------------------------------------------------------
# Contradictions
# ---------------------------------------------------------------------------------------------


def person(id_: str, name: str) -> Entity:
    return Entity(id=id_, text=name, recorded_at=NOW, name=name, kind=EntityKind.PERSON)


def fact(id_: str, subject_id: str, predicate: str, text: str, *, invalid: bool = False) -> Fact:
    return Fact(
        id=id_,
        text=text,
        recorded_at=NOW,
        subject_id=subject_id,
        predicate=predicate,
        invalid_at=NOW if invalid else None,
    )


def test_new_residence_contradicts_the_old_one() -> None:
    ctx: tuple[Memory, ...] = (
        person("p1", "Caroline"),
        fact("f1", "p1", "lives_in", "Caroline lives in Boston"),
        fact("f2", "p1", "visited", "Caroline visited Boston"),
    )
    assert run("I moved to Lisbon last month.", context=ctx).contradicts == ("f1",)


def test_same_object_reinforces_instead_of_contradicting() -> None:
    ctx: tuple[Memory, ...] = (
        person("p1", "Caroline"),
        fact("f1", "p1", "lives_in", "Caroline lives in Boston"),
    )
    assert run("I live in Boston.", context=ctx).contradicts == ()


def test_subject_is_matched_by_text_when_the_entity_is_not_in_context() -> None:
    ctx: tuple[Memory, ...] = (
        fact("f1", "unknown", "works_at", "Melanie works at Google"),
        fact("f2", "unknown", "works_at", "Caroline works at Google"),
        fact("f3", "unknown", "works_at", "The user works at Google"),
    )
    assert run("I work at Microsoft.", context=ctx).contradicts == ("f2",)
    assert run("I work at Microsoft.", speaker="", context=ctx).contradicts == ("f3",)


def test_invalidated_facts_and_multi_valued_predicates_are_left_alone() -> None:
    ctx: tuple[Memory, ...] = (
        person("p1", "Caroline"),
        fact("f1", "p1", "lives_in", "Caroline lives in Boston", invalid=True),
        fact("f2", "p1", "met", "Caroline met Jolene"),
    )
    assert run("I moved to Lisbon. I met Tom.", context=ctx).contradicts == ()


def test_reversed_preference_and_new_favourite_contradict() -> None:
    ctx: tuple[Memory, ...] = (
        Psyche(id="p1", text="Caroline loves hiking", recorded_at=NOW, key="likes:hik"),
        Psyche(id="p2", text="favourite food pizza", recorded_at=NOW, key="favourite_food:pizza"),
        Psyche(id="p3", text="Caroline loves jazz", recorded_at=NOW, key="likes:jazz"),
    )
    result = run("I hate hiking now. My favourite food is sushi.", context=ctx)
    assert result.contradicts == ("p1", "p2")


# ---------------------------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------------------------


def test_summary_skips_greetings_and_is_trimmed() -> None:
    assert run("Hey Mel! I played in a chess tournament yesterday. It was great.").summary == (
        "I played in a chess tournament yesterday."
    )
    long = "I " + "really " * 60 + "love it."
    summary = summarise(long)
    assert len(summary) <= 200
    assert summary.endswith("…")
    assert run("Hi!").summary == "Hi!"
