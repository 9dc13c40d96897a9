"""Compact built-in name lists: places, organisations, events and common first names.

All entries are casefolded. Kept deliberately small (a few hundred names each): they exist to
type capitalised words and to rescue names at sentence start, not to be an encyclopaedia.
Common words that are also names ("Will", "Hope", "Nice", "Turkey") are left out of the lists
that would make them count as names at a sentence start.
"""

from __future__ import annotations

from persona_server.domain.names import normalise_name


def _words(block: str) -> frozenset[str]:
    """One entry per line or comma-separated; lets the data below stay readable."""
    return frozenset(
        part.strip().casefold()
        for line in block.splitlines()
        for part in line.split(",")
        if part.strip()
    )


def _names(block: str) -> frozenset[str]:
    """Like `_words`, stored in the normalised form names are looked up in ("st louis")."""
    return frozenset(normalise_name(w) for w in _words(block))


COUNTRIES = _names(
    """
    afghanistan, albania, algeria, andorra, angola, argentina, armenia, australia, austria
    azerbaijan, bahamas, bahrain, bangladesh, barbados, belarus, belgium, belize, benin, bhutan
    bolivia, bosnia, botswana, brazil, brunei, bulgaria, burkina faso, burundi, cambodia, cameroon
    canada, cape verde, chad, chile, china, colombia, congo, costa rica, croatia, cuba, cyprus
    czechia, czech republic, denmark, djibouti, dominica, dominican republic, ecuador, egypt
    el salvador, england, eritrea, estonia, eswatini, ethiopia, fiji, finland, france, gabon
    gambia, georgia, germany, ghana, greece, grenada, guatemala, guinea, guyana, haiti, honduras
    hungary, iceland, india, indonesia, iran, iraq, ireland, israel, italy, ivory coast, jamaica
    japan, jordan, kazakhstan, kenya, kosovo, kuwait, kyrgyzstan, laos, latvia, lebanon, lesotho
    liberia, libya, liechtenstein, lithuania, luxembourg, madagascar, malawi, malaysia, maldives
    mali, malta, mauritania, mauritius, mexico, moldova, monaco, mongolia, montenegro, morocco
    mozambique, myanmar, namibia, nepal, netherlands, holland, new zealand, nicaragua, niger
    nigeria, north korea, north macedonia, norway, oman, pakistan, palestine, panama
    papua new guinea, paraguay, peru, philippines, poland, portugal, qatar, romania, russia
    rwanda, samoa, san marino, saudi arabia, scotland, senegal, serbia, seychelles, sierra leone
    singapore, slovakia, slovenia, somalia, south africa, south korea, korea, south sudan, spain
    sri lanka, sudan, suriname, sweden, switzerland, syria, taiwan, tajikistan, tanzania
    thailand, togo, tonga, trinidad, tunisia, turkey, turkmenistan, uganda, ukraine
    united arab emirates, uae, united kingdom, uk, britain, great britain, united states, usa
    us, america, uruguay, uzbekistan, vanuatu, vatican, venezuela, vietnam, wales, yemen, zambia
    zimbabwe
    """
)

REGIONS = _names(
    """
    europe, asia, africa, north america, south america, latin america, central america
    antarctica, oceania, middle east, scandinavia, caribbean, the caribbean, mediterranean
    balkans, siberia, patagonia, tuscany, provence, bavaria, catalonia, andalusia, normandy
    brittany, sicily, sardinia, bali, java, sumatra, borneo, tasmania, hawaii, alaska, yukon
    new england, midwest, the midwest, silicon valley, the alps, alps, the rockies, rockies
    himalayas, the himalayas, sahara, amazon rainforest, outback, highlands, lake district
    cornwall, yorkshire, greenland, puerto rico, hong kong, macau, iberia, the bahamas
    """
)

US_STATES = _names(
    """
    alabama, arizona, arkansas, california, colorado, connecticut, delaware, florida, idaho
    illinois, indiana, iowa, kansas, kentucky, louisiana, maine, maryland, massachusetts
    michigan, minnesota, mississippi, missouri, montana, nebraska, nevada, new hampshire
    new jersey, new mexico, new york, north carolina, north dakota, ohio, oklahoma, oregon
    pennsylvania, rhode island, south carolina, south dakota, tennessee, texas, utah, vermont
    virginia, washington, west virginia, wisconsin, wyoming, ontario, quebec, british columbia
    alberta, manitoba, nova scotia, queensland, new south wales, victoria
    """
)

CITIES = _names(
    """
    london, paris, berlin, madrid, barcelona, lisbon, porto, rome, milan, venice, florence
    naples, amsterdam, rotterdam, brussels, vienna, prague, budapest, warsaw, krakow, munich
    hamburg, frankfurt, cologne, zurich, geneva, copenhagen, stockholm, oslo, helsinki
    reykjavik, dublin, edinburgh, glasgow, manchester, liverpool, birmingham, oxford
    cambridge, bristol, brighton, leeds, belfast, cardiff, athens, istanbul, ankara, moscow
    saint petersburg, st. petersburg, kyiv, kiev, bucharest, sofia, belgrade, zagreb
    dubrovnik, ljubljana, tallinn, riga, vilnius, seville, valencia, malaga, marseille, lyon
    bordeaux, monaco, salzburg, bruges, antwerp, tokyo, kyoto, osaka, seoul, busan, beijing
    shanghai, shenzhen, guangzhou, taipei, bangkok, chiang mai, phuket, hanoi
    ho chi minh city, saigon, singapore, kuala lumpur, jakarta, manila, mumbai, delhi
    new delhi, bangalore, bengaluru, chennai, kolkata, hyderabad, goa, jaipur, kathmandu
    karachi, lahore, dhaka, colombo, dubai, abu dhabi, doha, riyadh, tehran, baghdad
    jerusalem, tel aviv, beirut, amman, cairo, marrakech, casablanca, tunis, lagos, accra
    nairobi, addis ababa, cape town, johannesburg, durban, kampala, dakar, zanzibar
    sydney, melbourne, brisbane, perth, adelaide, canberra, auckland, wellington
    queenstown, new york city, nyc, brooklyn, manhattan, queens, the bronx, los angeles
    la, san francisco, sf, san diego, san jose, sacramento, oakland, seattle, portland
    chicago, boston, philadelphia, pittsburgh, detroit, cleveland, columbus, cincinnati
    indianapolis, milwaukee, minneapolis, st. louis, kansas city, denver, boulder
    salt lake city, las vegas, vegas, phoenix, tucson, albuquerque, dallas, houston, austin
    san antonio, el paso, new orleans, nashville, memphis, atlanta, miami, orlando, tampa
    jacksonville, charlotte, raleigh, richmond, baltimore, washington dc, washington d.c.
    dc, honolulu, anchorage, toronto, montreal, vancouver, ottawa, calgary, edmonton
    quebec city, mexico city, cancun, tijuana, guadalajara, havana, san juan, bogota
    medellin, lima, cusco, quito, santiago, buenos aires, montevideo, rio de janeiro, rio
    sao paulo, brasilia, caracas, panama city, san jose, hollywood, malibu, napa, aspen
    yosemite, yellowstone, grand canyon, niagara falls, key west, savannah, charleston
    """
)

PLACES = COUNTRIES | REGIONS | US_STATES | CITIES

# Well-known organisations that carry no org suffix; suffixes ("Inc", "University") do the rest.
ORGANIZATIONS = _names(
    """
    google, alphabet, apple, microsoft, amazon, meta, facebook, instagram, whatsapp, twitter
    netflix, spotify, youtube, tiktok, uber, lyft, airbnb, tesla, spacex, nvidia, intel, amd
    ibm, oracle, salesforce, adobe, samsung, sony, nintendo, toyota, honda, ford, bmw
    volkswagen, mercedes, ikea, walmart, target, costco, starbucks, mcdonald's, mcdonalds
    disney, pixar, nasa, fbi, cia, un, united nations, who, unicef, red cross, nhs, bbc, cnn
    nike, adidas, linkedin, reddit, openai, deloitte, accenture, mckinsey, goldman sachs
    jpmorgan, paypal, ebay, etsy, shopify, dropbox, slack, zoom, pinterest, snapchat
    harvard, stanford, mit, yale, princeton, oxford university, cambridge university, ucla
    nyu, columbia, berkeley, peace corps, ymca, aa, habitat for humanity, greenpeace
    """
)

# Holidays and recurring events: capitalised, so typed as EVENT rather than OTHER.
EVENTS = _names(
    """
    christmas, christmas eve, easter, halloween, thanksgiving, hanukkah, diwali, ramadan, eid
    new year, new year's, new year's eve, new years, valentine's day, valentines day
    mother's day, father's day, independence day, labor day, memorial day, pride, pride month
    super bowl, olympics, world cup, black friday, passover, lunar new year, chinese new year
    """
)

# Common given names that are not ordinary English words. They let a name count as a person
# even at the start of a sentence ("Melanie said..."), where capitalisation proves nothing.
FIRST_NAMES = _words(
    """
    aaron, abigail, adam, adrian, aiden, alan, albert, alex, alexander, alexandra, alexis
    alice, alicia, alison, allison, amanda, amber, amelia, amy, andrea, andrew, andy, angela
    anna, anne, annie, anthony, antonio, ariana, arthur, ashley, audrey, ava, barbara
    benjamin, ben, bernard, beth, bethany, betty, beverly, brandon, brenda, brian, brittany
    bruce, bryan, caleb, cameron, carl, carla, carlos, carmen, carol, caroline, carolyn
    catherine, charles, charlie, charlotte, chloe, chris, christian, christina, christine
    christopher, cindy, claire, clara, cody, colin, connor, craig, cynthia, daisy, daniel
    danielle, david, deborah, debra, denise, dennis, derek, diana, diane, donald, donna
    dorothy, douglas, dylan, edward, elena, eli, elijah, elizabeth, ella, ellie, emily, emma
    eric, erica, erin, ethan, eva, evan, evelyn, fiona, gabriel, gabriella, gary, george
    georgia, gerald, gina, gloria, gregory, greg, hannah, harold, harry, heather, helen
    henry, isaac, isabel, isabella, jack, jacob, jacqueline, james, jamie, jane, janet
    janice, jasmine, jason, jeffrey, jeff, jenna, jennifer, jenny, jeremy, jerry, jesse
    jessica, joan, joanna, joe, joel, john, jon, jonathan, jordan, jose, joseph, joshua
    josh, joyce, juan, judith, judy, julia, julian, julie, justin, karen, kate, katherine
    kathleen, kathryn, katie, kayla, keith, kelly, kenneth, kevin, kim, kimberly, kyle
    laura, lauren, leah, lee, leo, liam, lily, linda, lisa, logan, lori, lucas, lucy, luis
    luke, madison, maria, marie, marilyn, mario, marissa, martha, martin, mary, mason
    matthew, matt, megan, melanie, melissa, mia, michael, michelle, mike, mila, miranda
    molly, monica, nancy, naomi, natalie, nathan, nicholas, nick, nicole, noah, nora
    oliver, olivia, oscar, owen, pamela, patricia, patrick, paul, paula, peter, philip
    rachel, rebecca, richard, robert, rob, roger, ronald, ruth, ryan, samantha, sam, samuel
    sandra, sara, sarah, scott, sean, sebastian, sharon, shirley, simon, sofia, sophia
    sophie, stephanie, stephen, steve, steven, susan, tammy, taylor, teresa, thomas, tiffany
    timothy, tim, tom, tony, tyler, valerie, vanessa, victor, victoria, vincent, virginia
    walter, wayne, william, zachary, zoe, maya, priya, raj, ahmed, mohammed, muhammad, ali
    fatima, omar, yusuf, aisha, wei, li, chen, hiroshi, yuki, kenji, sakura, pierre, marco
    jake, zach, nate, tina, jess, becky, nina, rosa, rita, tara, abby, kate, kat, leon, theo
    ethan, mason, hugo, felix, ivy, chloe, jade, ruby, zara, nico, sasha, dana, maggie, ellen
    giulia, luca, hans, lars, ingrid, sven, olga, ivan, dmitri, natasha, anya, mateo, diego
    sofía, javier, lucia, carmen, pablo, ana, joão, joao, nadia, tariq, kwame, amara
    """
)
