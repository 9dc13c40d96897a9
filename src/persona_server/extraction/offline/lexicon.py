"""Closed word lists the rules consult: junk capitalised words, name suffixes, cues, roles, traits.

Everything is casefolded. Lists are closed on purpose: the rules must behave the same on every
run and every machine, and a short list is easy to audit when an extraction looks wrong.
"""

from __future__ import annotations

from persona_server.extraction.offline.gazetteer import _words

MONTHS = _words(
    "january, february, march, april, may, june, july, august, september, october, november"
    ", december"
)
WEEKDAYS = _words("monday, tuesday, wednesday, thursday, friday, saturday, sunday")

# Capitalised words that are never (part of) an entity name: they split a capitalised run.
JUNK = (
    MONTHS
    | WEEKDAYS
    | _words(
        """
        i, i'm, i've, i'll, i'd, me, my, mine, myself, you, you're, you've, you'll, you'd, your
        yours, he, he's, she, she's, it, it's, we, we're, we've, they, they're, them, our, us
        his, her, hers, its, their, him, what, what's, who, who's, why, how, how's, when, where
        where's, which, there, there's, here, here's, that, that's, this, these, those, today
        tonight, tomorrow, yesterday, weekend, hey, hi, hello, hiya, howdy, yo, bye, goodbye
        wow, whoa, woah, oh, ooh, ah, aah, aw, aww, awww, uh, um, hmm, hm, huh, yay, yeah, yep
        yup, yes, no, nope, nah, ok, okay, k, lol, lmao, omg, omfg, haha, hahaha, hehe, btw
        fyi, idk, imo, imho, tbh, tho, thx, ty, np, brb, asap, diy, tv, pm, am, thanks, thank
        congrats, congratulations, cheers, sorry, please, plz, pls, welcome, dear, well, so
        and, but, or, nor, also, anyway, anyways, plus, then, just, really, totally, sure
        great, awesome, amazing, cool, nice, good, glad, happy, sweet, lovely, fantastic, best
        love, lots, hugs, xoxo, mom, dad, mum, mommy, daddy, mama, papa, grandma, grandpa
        granny, god, gosh, jesus, christ, madam, guys, everyone, anyone
        someone, everybody, somebody, nobody, nothing, everything, something, anything, none
        gonna, wanna, gotta, kinda, sorta, yeah, absolutely, definitely, exactly, indeed
        honestly, seriously, literally, actually, basically, hopefully, luckily, unfortunately
        fortunately, sadly, anyhow, meanwhile, although, though, because, since, if, unless
        while, after, before, once, until, as, like, maybe, perhaps, probably, not, never
        always, sometimes, often, usually, still, yet, already, even, only, speaking, talking
        reading, mobile, split, bath, chat, talk, lmk, ttyl, hbu, wbu, rn, irl, ikr, smh, let
        let's, lets, mon, tue, tues, wed, weds, thu, thur, thurs, fri, sat, sun, woohoo, yikes
        oops, whoops, ugh, meh, hooray, phew, alright, aight, ha, hah, oof, wooo, woo, yoy
        kpi, eta, faq, pdf, usb, atm, pc, ceo, cfo, cto, coo, hr, rsvp, ps, am, pm, ootd
        """
    )
)

# Words trimmed from the start of a capitalised run but kept inside one ("The Lord of the Rings"
# minus nothing, "The Beatles" -> "Beatles" is not wanted, so only at a sentence start).
LEADING_ONLY = _words(
    "the, a, an, some, any, every, each, all, both, my, our, your, his, her, their"
)

# Honorific-like prefixes: the next capitalised word is a person's name.
PERSON_TITLES = _words(
    """
    dr, dr., mr, mr., mrs, mrs., ms, ms., mx, mx., prof, prof., professor, doctor, rev, rev.
    sir, dame, lady, lord, uncle, aunt, auntie, coach, officer, judge, captain, capt, capt.
    sgt, sgt., lt, lt., col, col., gen, gen., gov, gov., sen, sen., rep, rep., president
    senator, pastor, grandma, grandpa, granny, nana, pope, queen, king, prince, princess
    mayor
    """
)

ORG_SUFFIXES = _words(
    """
    inc, inc., ltd, ltd., llc, corp, corp., co, co., plc, gmbh, company, corporation
    university, college, school, academy, institute, club, center, centre, church, temple
    mosque, synagogue, bank, hospital, clinic, foundation, association, society, group
    agency, studio, studios, labs, lab, partners, ministries, ministry, department, council
    committee, union, league, network, services, solutions, technologies, systems, records
    press, magazine, times, post, news, airlines, airways, motors, foods, pharmaceuticals
    team, orchestra, choir, band, shelter, charity, org, fund, cafe, café, restaurant
    bakery, bar, pub, gym, salon, shop, store, market, brewery, kitchen, bistro, diner
    """
)

PLACE_SUFFIXES = _words(
    """
    park, lake, lakes, mountain, mountains, mount, beach, river, street, st, st., avenue, ave
    ave., road, rd, rd., boulevard, blvd, lane, drive, square, island, islands, bay, valley
    falls, canyon, city, county, town, village, museum, gallery, airport, station, bridge
    tower, mall, hotel, resort, trail, forest, coast, peninsula, desert, gardens, garden, zoo
    aquarium, stadium, arena, theater, theatre, library, hall, plaza, harbor, harbour, pier
    heights, hills, springs, reservoir, national park, cathedral, castle, palace, district
    """
)

EVENT_SUFFIXES = _words(
    """
    festival, fest, conference, summit, concert, parade, marathon, expo, fair, games, cup
    championship, championships, tournament, tour, wedding, gala, ceremony, convention
    retreat, workshop, hackathon, week, day, night, party, show, awards, march, rally
    """
)

# Words right before a name that say what kind of name it is ("with Melanie", "in Lisbon").
PERSON_BEFORE = _words(
    """
    with, met, meet, meeting, told, tell, asked, ask, call, texted, text, messaged
    hugged, thanks, thank, hey, hi, hello, dear, congrats, congratulations, love, miss
    girlfriend, boyfriend, husband, wife, friend, sister, brother, son
    daughter, cousin, mom, mum, dad, mother, father, aunt, uncle, niece, nephew, partner
    fiance, fiancé, fiancee, grandma, grandpa, colleague, coworker, boss, roommate, neighbor
    neighbour, mentor, buddy, pal, bestie, kid, kids
    """
)
# Words that open a greeting or reaction; a name right after them, closed by punctuation, is
# someone being addressed ("Wow Nate!", "Thanks Melanie.").
INTERJECTIONS = _words(
    """
    hey, hi, hello, hiya, yo, wow, whoa, woah, oh, ooh, aw, aww, yay, yeah, yes, yep, yup, no
    nope, ok, okay, thanks, thank you, congrats, congratulations, cheers, sorry, well, so
    cool, great, awesome, amazing, nice, good, sure, absolutely, totally, haha, lol, omg, dear
    bye, goodbye, morning, evening, night, woohoo, hooray, right, true, exactly, agreed
    """
)
PLACE_BEFORE = _words(
    """
    in, to, from, near, visited, visit, visiting, around, across, toward, towards, through
    outside, inside, within, leaving, left, moved, flew, drove, downtown, into, via
    """
)
ORG_BEFORE = _words("at, joined, join, joining, hired, employed, interned")
PERSON_AFTER = _words(
    """
    said, says, told, tells, asked, asks, thinks, thought, mentioned, texted, called, replied
    explained, suggested, wrote, laughed, smiled, agreed, shared, recommended, invited
    """
)

# Family, social and pet roles, mapped to the canonical word used in predicates ("sister_of").
ROLES: dict[str, str] = {
    "friend": "friend",
    "best friend": "best_friend",
    "bestie": "best_friend",
    "buddy": "friend",
    "pal": "friend",
    "sister": "sister",
    "brother": "brother",
    "sibling": "sibling",
    "mom": "mother",
    "mum": "mother",
    "mother": "mother",
    "dad": "father",
    "father": "father",
    "parent": "parent",
    "son": "son",
    "daughter": "daughter",
    "kid": "child",
    "child": "child",
    "wife": "wife",
    "husband": "husband",
    "partner": "partner",
    "spouse": "spouse",
    "boyfriend": "boyfriend",
    "girlfriend": "girlfriend",
    "fiance": "fiance",
    "fiancé": "fiance",
    "fiancee": "fiance",
    "fiancée": "fiance",
    "cousin": "cousin",
    "aunt": "aunt",
    "uncle": "uncle",
    "niece": "niece",
    "nephew": "nephew",
    "grandma": "grandmother",
    "grandmother": "grandmother",
    "grandpa": "grandfather",
    "grandfather": "grandfather",
    "grandson": "grandson",
    "granddaughter": "granddaughter",
    "boss": "boss",
    "manager": "manager",
    "coworker": "coworker",
    "co-worker": "coworker",
    "colleague": "colleague",
    "roommate": "roommate",
    "flatmate": "roommate",
    "neighbor": "neighbor",
    "neighbour": "neighbor",
    "mentor": "mentor",
    "teacher": "teacher",
    "coach": "coach",
    "therapist": "therapist",
    "doctor": "doctor",
    "classmate": "classmate",
    "teammate": "teammate",
    "dog": "dog",
    "puppy": "dog",
    "cat": "cat",
    "kitten": "cat",
    "pet": "pet",
}
PET_ROLES = frozenset({"dog", "cat", "pet"})

# Adjectives that describe a lasting disposition. "I'm happy" is a mood, "I'm shy" a trait;
# only the listed words make "I am (very) X" a TRAIT.
TRAIT_ADJECTIVES = _words(
    """
    shy, outgoing, introverted, extroverted, extraverted, introvert, extrovert, ambivert
    organized, organised, disorganized, messy, tidy, neat, creative, artistic, patient
    impatient, stubborn, ambitious, competitive, curious, optimistic, pessimistic, lazy
    adventurous, independent, sensitive, anxious, empathetic, empathic, honest, loyal
    spontaneous, energetic, calm, perfectionist, disciplined, generous, kind, easygoing
    easy-going, laid-back, laid back, reserved, talkative, sociable, social, confident
    insecure, determined, resilient, caring, emotional, analytical, practical, responsible
    hardworking, hard-working, punctual, forgetful, clumsy, nerdy, geeky, sporty, athletic
    outdoorsy, religious, spiritual, frugal, thrifty, cautious, reckless, impulsive
    introspective, open-minded, conservative, liberal, quiet, loud, funny, serious
    sarcastic, romantic, nostalgic, sentimental, passionate, driven, motivated, picky
    chill, relaxed, workaholic, homebody, optimist, pessimist, early riser, night owl
    morning person, night person, people person, dog person, cat person, bookworm, foodie
    """
)

DIETS = _words("vegetarian, vegan, pescatarian, pescetarian, gluten-free, keto, kosher, halal")

# Objects of "I love X" that point at something only the conversation knows ("I love that").
VAGUE_OBJECTS = _words(
    """
    it, that, this, these, those, them, you, ya, u, him, her, how, when, what, where, why
    who, the way, your, yours, ur, hearing, seeing, being, having, doing, getting, everything
    anything, something, all, both, one, some, such, so, too, there, here, they, we, he, she
    i, us, his, their, its, is, was, are, were, be, been, am, every, each, more, most, other
    others, if, because, and, but, or, lol, haha, as, than, just
    """
)

# Verb phrases after "I'll / I will" that are conversational, not goals.
TRIVIAL_INTENTIONS = _words(
    """
    let, talk, see, check, keep, try, be, send, tell, think, get, catch, text, call, look
    show, share, make, ask, wait, say, bring, update, message, remember, have, give, take
    do, reply, respond, email, ping, sleep, leave, stop, need, go ahead, come
    """
)

# Intentions that are about the next few minutes, whatever the verb ("I'm gonna go to bed").
TRIVIAL_PLANS = (
    "go to bed", "go to sleep", "head out", "head off", "head home", "get going", "get some sleep",
    "take a nap", "grab ", "be back", "call you", "text you", "let you", "see you", "talk to you",
    "talk soon", "catch you", "get back to you", "check it", "try it", "sleep", "crash",
    "tell you", "hear about", "hear more", "show you", "send you",
)  # fmt: skip
