"""A built-in English sentence generator for the embedded corpus.

A small semantic grammar over a hand-written lexicon: nouns in six classes (people, animals,
objects, food, places, abstractions), verbs that say which class of object they take,
adjectives, adverbs, names and time phrases. Subjects agree with their verbs, verbs are inflected
by rule plus a table of irregular forms, and sentences come as statements, questions, commands and
compound or subordinate clauses, 4 to about 22 words long.

Sentences are lower case words without punctuation (the transcript form);
:meth:`SentenceGenerator.utterance` also gives the punctuated text eSpeak reads, for intonation. :func:`vocabulary` lists every word form the
generator can produce (more than 3,000), and :func:`lexicon` gives each its part-of-speech tag
(Penn Treebank) and lemma, which the SLU data uses for its ``tokens``.

Everything is drawn from a caller's :class:`numpy.random.Generator`, so a seed fixes the output.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np


def _words(block: str) -> list[str]:
    return block.split()


# --- nouns: "word" or "word/plural" for irregular plurals ----------------------------------------
PEOPLE = _words(
    """
    teacher farmer doctor nurse driver baker painter singer dancer writer student pilot sailor
    soldier captain lawyer judge artist actor actress manager worker engineer scientist
    musician chef waiter waitress gardener builder carpenter plumber dentist banker clerk
    officer guard hunter fisherman/fishermen king queen prince princess child/children baby
    boy girl man/men woman/women neighbour friend stranger visitor traveller tourist farmer's
    mother father sister brother uncle aunt cousin grandmother grandfather daughter son wife/wives
    husband family/families guest host player coach referee partner customer owner tenant
    professor librarian reporter editor poet author director producer designer architect
    mechanic electrician tailor butcher shepherd miner merchant shopkeeper postman/postmen
    policeman/policemen firefighter surgeon patient pupil leader mayor minister priest
    monk/monks knight giant wizard detective thief/thieves prisoner stranger hero/heroes villain
    champion beginner expert volunteer assistant secretary president journalist photographer
    scholar inventor explorer passenger porter cashier cleaner barber jeweller lifeguard
    """
)
PEOPLE = list(dict.fromkeys(w for w in PEOPLE if not w.endswith("'s")))

ANIMALS = _words(
    """
    dog cat horse cow pig sheep/sheep goat chicken duck goose/geese rabbit mouse/mice rat fox/foxes
    wolf/wolves bear lion tiger elephant monkey donkey camel deer/deer moose/moose squirrel owl
    eagle hawk crow sparrow pigeon parrot swan turtle frog snake lizard fish/fish whale dolphin
    shark crab lobster bee butterfly/butterflies spider ant beetle zebra giraffe kangaroo
    penguin seal otter badger hedgehog beaver bat puppy/puppies kitten pony/ponies bull calf/calves
    lamb hen rooster mule buffalo/buffaloes leopard panther cheetah gorilla raccoon skunk
    """
)

OBJECTS = _words(
    """
    book letter table chair lamp door window key box/boxes bag basket bottle cup glass/glasses
    plate bowl spoon fork knife/knives pen pencil paper map clock watch/watches phone radio
    camera computer screen ladder rope hammer nail bucket blanket pillow bed sofa carpet mirror
    picture painting photo candle match/matches umbrella coat jacket hat scarf/scarves shoe boot
    glove shirt dress/dresses sweater ring necklace bracelet wallet ticket coin stamp envelope
    newspaper magazine notebook diary/diaries album guitar piano violin drum trumpet flute bell
    ball toy kite puzzle doll bicycle car truck bus/buses train boat ship plane wagon cart
    engine wheel tyre brush comb towel soap bottle jar kettle pot pan oven stove fridge fan
    heater shelf/shelves drawer cupboard cabinet desk bench fence gate wall roof chimney stair
    tent flag sign poster banner parcel package gift suitcase backpack helmet mask badge medal
    trophy/trophies shield sword arrow bow wire cable battery/batteries bulb switch/switches
    button screw bolt tool saw drill shovel rake broom ladder hose sponge needle thread
    scissors ribbon button label folder file record chart list card calendar envelope
    telescope microscope compass lantern torch/torches whistle hook chain lock anchor barrel
    crate sack tray mug teapot jug vase statue fountain
    """
)
OBJECTS = list(dict.fromkeys(OBJECTS))

FOOD = _words(
    """
    bread cake pie apple orange banana pear peach/peaches plum grape cherry/cherries lemon
    lime melon strawberry/strawberries potato/potatoes tomato/tomatoes carrot onion cabbage
    lettuce bean pea pepper cucumber pumpkin mushroom garlic rice soup salad sandwich/sandwiches
    biscuit cookie muffin pancake waffle egg cheese butter sausage steak chicken burger pizza
    pasta noodle omelette yoghurt cereal porridge honey jam sugar salt coffee tea juice milk
    lemonade chocolate sweet candy/candies doughnut pretzel cracker nut almond walnut peanut
    coconut pineapple mango/mangoes apricot avocado broccoli/broccoli spinach/spinach corn
    olive pickle sauce gravy curry/curries stew taco burrito dumpling pudding tart
    """
)

PLACES = _words(
    """
    house/houses school church hospital library museum station airport harbour market shop
    store bakery/bakeries kitchen garden park forest river lake mountain valley hill beach
    island village town city/cities farm barn field meadow desert road street bridge tunnel
    castle palace tower office factory/factories hotel restaurant cafe theatre cinema stadium
    gym pool prison bank court university/universities college classroom hall basement attic
    garage cellar corridor balcony porch yard square harbour port coast cliff cave canyon
    jungle swamp pond stream waterfall volcano/volcanoes camp cottage cabin temple mall
    laboratory/laboratories bookshop pharmacy/pharmacies clinic zoo aquarium warehouse
    studio gallery/galleries courtyard orchard vineyard greenhouse playground parliament
    embassy/embassies ferry/ferries platform
    """
)
PLACES = list(dict.fromkeys(PLACES))

ABSTRACT = _words(
    """
    idea plan story/stories problem question answer reason secret dream memory/memories lesson
    rule law truth promise decision mistake chance choice habit opinion rumour joke news/news
    message song poem speech/speeches report theory/theories method result reward prize
    price plan journey trip holiday adventure meeting party/parties wedding festival concert
    game match/matches race contest exam test project schedule budget contract agreement
    argument discussion conversation silence noise music language history/histories science
    mathematics/mathematics weather season summer winter autumn spring morning evening night
    afternoon weekend moment hour minute week month year century/centuries future past
    problem solution plan warning advice/advice permission invitation apology/apologies
    complaint request recipe lecture chapter sentence word name address number letter
    picture pattern colour shape size weight distance direction speed energy power courage
    patience kindness honesty freedom peace danger trouble luck success failure progress
    business/businesses company/companies career job task duty/duties favour effort skill
    talent knowledge/knowledge experience information/information evidence/evidence
    mystery/mysteries puzzle legend tradition custom culture religion policy/policies
    election campaign strategy/strategies position opportunity/opportunities
    """
)
ABSTRACT = list(dict.fromkeys(ABSTRACT))

# --- verbs: "base", "base/past" for irregular past, "base*" doubles the last consonant -------
# Transitive verbs grouped by the class of object they take.
VERBS_OBJECT = _words(
    """
    find/found lose/lost carry* open close paint clean fix break/broke buy/bought sell/sold
    bring/brought take/took move drop* lift hold/held throw/threw catch/caught wrap* fold hide/hid
    borrow lend/lent return repair polish build/built drag* pack unpack keep/kept touch
    examine check measure weigh wash/washed dry/dried fill empty/emptied mend sharpen
    replace collect deliver steal/stole share hang/hung push pull shake/shook drop* count
    sort choose/chose order carry* pick place label test design draw/drew sketch
    """
)
VERBS_FOOD = _words(
    """
    eat/ate cook bake taste boil fry/fried slice chop* peel serve buy/bought order share grow/grew
    pick wash/washed mix/mixed roast toast stir* season freeze/froze heat cut/cut smell/smelled
    """
)
VERBS_PERSON = _words(
    """
    meet/met call help follow visit thank invite greet teach/taught warn remind ask tell/told
    hire trust admire blame forgive/forgave interview notice answer join recognise ignore
    phone email pay/paid thank congratulate comfort encourage beat/beat chase surprise praise
    """
)
VERBS_ANIMAL = _words(
    """
    feed/fed chase watch/watched find/found catch/caught follow frighten rescue train photograph
    wash/washed brush/brushed count notice hear/heard see/saw
    """
)
VERBS_PLACE = _words(
    """
    visit leave/left clean paint enter explore reach search build/built sweep/swept decorate
    describe photograph guard protect approach cross/crossed repair leave/left find/found
    """
)
VERBS_ABSTRACT = _words(
    """
    discuss/discussed explain remember forget/forgot understand/understood describe share
    consider accept reject plan* change announce suggest propose imagine prepare finish
    begin/began start cancel postpone organise enjoy hear/heard write/wrote read/read learn
    study/studied review present mention repeat question solve improve remember explain
    """
)
VERBS_INTRANSITIVE = _words(
    """
    arrive laugh smile wait sleep/slept cry/cried sing/sang dance run/ran walk jump swim/swam
    shout whisper travel* rest listen work play sit/sat stand/stood fall/fell rise/rose
    return disappear appear agree complain hurry/hurried relax wander stay improve continue
    begin/began stop* win/won lose/lost escape vanish shiver sneeze cough yawn nod* breathe
    """
)

ADJECTIVES = _words(
    """
    old young new big small large tiny huge tall short long wide narrow heavy light dark bright
    clean dirty quiet loud happy sad angry tired hungry thirsty busy lazy brave calm careful
    clever kind polite rude strange famous rich poor strong weak quick slow early late warm cold
    hot cool dry wet soft hard smooth rough sharp round flat empty full cheap expensive simple
    difficult easy important useful useless beautiful ugly pretty handsome lovely friendly
    gentle proud shy nervous curious honest wise silly serious funny cheerful lonely famous
    modern ancient wooden golden silver broken hidden secret ordinary special perfect strange
    fresh sweet bitter salty sour delicious healthy sick wild tame dangerous safe quiet noisy
    crowded peaceful lucky unusual enormous gigantic little fancy plain elegant shiny dusty
    muddy frozen sunny cloudy rainy windy stormy foggy pleasant terrible wonderful awful
    excellent brilliant gloomy cosy tidy messy thick thin deep shallow fierce loyal patient
    generous grumpy jolly eager anxious clumsy graceful mysterious familiar foreign local
    distant nearby private public official colourful pale faint fragile sturdy precious
    valuable rare common popular ancient fresh spare tired sleepy restless stubborn
    """
)
ADJECTIVES = list(dict.fromkeys(ADJECTIVES))
COLOURS = _words(
    "red blue green yellow orange purple pink brown black white grey violet golden silver crimson"
)
COLOURS = [c for c in COLOURS if c not in ("orange",)]

ADVERBS = _words(
    """
    quickly slowly quietly loudly carefully happily sadly suddenly finally eventually recently
    often sometimes always never usually rarely gently politely proudly bravely calmly eagerly
    nervously patiently secretly silently softly warmly angrily easily barely nearly almost
    together alone again already early late soon today yesterday tomorrow tonight outside
    inside upstairs downstairs abroad nearby everywhere somewhere anyway honestly luckily
    clearly probably certainly perhaps quite really very rather
    """
)

NAMES = _words(
    """
    anna ben clara daniel emma frank grace henry isabel jack kate leo lucy mark nina oliver
    paul rose sam tom victor william zoe alice bob carol david eric fiona george helen ian julia
    kevin laura mike nora oscar peter rachel simon tina ursula vera walter yvonne adam bella
    charlie diana edward flora harry ivy james karen liam maria noah olga patrick quinn ruth
    steve tessa umar vincent wendy xavier yusuf zara arthur betty colin doris ellen felix
    gordon hannah irene joseph kenneth linda martin nancy owen philip robert sarah thomas
    """
)

TIME_PHRASES = _words("today yesterday tomorrow tonight") + [
    "this morning",
    "this evening",
    "last night",
    "last week",
    "next week",
    "last year",
    "on monday",
    "on tuesday",
    "on wednesday",
    "on thursday",
    "on friday",
    "on saturday",
    "on sunday",
    "in january",
    "in february",
    "in march",
    "in april",
    "in may",
    "in june",
    "in july",
    "in august",
    "in september",
    "in october",
    "in november",
    "in december",
    "after lunch",
    "before dinner",
    "at midnight",
    "at noon",
    "every day",
    "every morning",
    "in the afternoon",
]

PREP_PLACE = _words("in at near behind beside inside outside across through around past")
PREP_OBJECT = _words("with without under on beside behind near")
DETERMINERS = ["the", "a", "this", "that", "my", "your", "his", "her", "our", "their"]
PLURAL_DETERMINERS = ["the", "these", "those", "my", "your", "his", "her", "our", "their", "some"]
NUMBERS = _words(
    "two three four five six seven eight nine ten eleven twelve twenty thirty forty fifty hundred"
)
MODALS = _words("will would can could should must might")
PRONOUNS_SG = ["he", "she"]
PRONOUNS_PL = ["we", "they"]
CONJUNCTIONS = ["and", "but", "so", "because", "while"]
SUBORDINATORS = ["when", "after", "before", "because", "although", "while", "if"]
# --- inflection ---------------------------------------------------------------------------------
_VOWELS = set("aeiou")


def _plural(noun: str) -> str:
    if noun.endswith(("s", "sh", "ch", "x", "z")):
        return noun + "es"
    if noun.endswith("y") and noun[-2] not in _VOWELS:
        return noun[:-1] + "ies"
    return noun + "s"


def _parse_noun(entry: str) -> tuple[str, str]:
    if "/" in entry:
        sg, pl = entry.split("/")
        return sg, pl
    return entry, _plural(entry)


def _third_person(verb: str) -> str:
    if verb.endswith(("s", "sh", "ch", "x", "z", "o")):
        return verb + "es"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ies"
    return verb + "s"


def _past(verb: str, double: bool) -> str:
    if double:
        return verb + verb[-1] + "ed"
    if verb.endswith("e"):
        return verb + "d"
    if verb.endswith("y") and verb[-2] not in _VOWELS:
        return verb[:-1] + "ied"
    return verb + "ed"


def _gerund(verb: str, double: bool) -> str:
    if double:
        return verb + verb[-1] + "ing"
    if verb.endswith("ie"):
        return verb[:-2] + "ying"
    if verb.endswith("e") and not verb.endswith(("ee", "ye", "oe")) and len(verb) > 2:
        return verb[:-1] + "ing"
    return verb + "ing"


class Verb:
    """A verb's forms: ``base`` (VB), ``third`` (VBZ), ``past`` (VBD), ``gerund`` (VBG)."""

    __slots__ = ("base", "third", "past", "gerund")

    def __init__(self, entry: str) -> None:
        double = entry.endswith("*")
        entry = entry.rstrip("*")
        past = None
        if "/" in entry:
            entry, past = entry.split("/")
        self.base = entry
        self.third = _third_person(entry)
        self.past = past or _past(entry, double)
        self.gerund = _gerund(entry, double)


def _verbs(entries: list[str]) -> list[Verb]:
    seen: dict[str, Verb] = {}
    for e in entries:
        v = Verb(e)
        seen.setdefault(v.base, v)
    return list(seen.values())


NOUN_CLASSES: dict[str, list[tuple[str, str]]] = {
    "person": [_parse_noun(w) for w in PEOPLE],
    "animal": [_parse_noun(w) for w in ANIMALS],
    "object": [_parse_noun(w) for w in OBJECTS],
    "food": [_parse_noun(w) for w in FOOD],
    "place": [_parse_noun(w) for w in PLACES],
    "abstract": [_parse_noun(w) for w in ABSTRACT],
}
VERB_CLASSES: dict[str, list[Verb]] = {
    "object": _verbs(VERBS_OBJECT),
    "food": _verbs(VERBS_FOOD),
    "person": _verbs(VERBS_PERSON),
    "animal": _verbs(VERBS_ANIMAL),
    "place": _verbs(VERBS_PLACE),
    "abstract": _verbs(VERBS_ABSTRACT),
}
INTRANSITIVE = _verbs(VERBS_INTRANSITIVE)
_OBJECT_CLASS_WEIGHTS = {
    "object": 0.3,
    "food": 0.15,
    "person": 0.15,
    "animal": 0.1,
    "place": 0.12,
    "abstract": 0.18,
}


# --- generator ----------------------------------------------------------------------------------
def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


class SentenceGenerator:
    """Draws English sentences (lower case words, no punctuation).

    Each call of :meth:`sentence` uses only the given generator, so the output is a pure function
    of its state. ``min_words``/``max_words`` bound the length (sentences outside are redrawn).
    """

    def __init__(self, min_words: int = 4, max_words: int = 22) -> None:
        self.min_words = min_words
        self.max_words = max_words

    # noun phrases return (words, plural)
    def _noun_phrase(self, rng, cls: str, allow_name: bool = True) -> tuple[list[str], bool]:
        r = rng.random()
        if cls == "person" and allow_name and r < 0.25:
            return [_pick(rng, NAMES)], False
        sg, pl = _pick(rng, NOUN_CLASSES[cls])
        plural = rng.random() < 0.3 and sg != pl or (sg == pl and rng.random() < 0.2)
        words: list[str] = []
        if plural:
            if rng.random() < 0.2:
                words.append(_pick(rng, NUMBERS))
            else:
                words.append(_pick(rng, PLURAL_DETERMINERS))
        else:
            det = _pick(rng, DETERMINERS)
            words.append(det)
        if rng.random() < 0.45:
            adj = (
                _pick(rng, COLOURS)
                if cls in ("object", "animal") and rng.random() < 0.3
                else (_pick(rng, ADJECTIVES))
            )
            words.append(adj)
        words.append(pl if plural else sg)
        if words[0] == "a" and words[1][0] in _VOWELS:
            words[0] = "an"
        if cls in ("object", "place", "abstract") and rng.random() < 0.08:
            of_words, _ = self._noun_phrase(rng, _pick(rng, ["person", "place"]), allow_name)
            words += ["of"] + of_words
        return words, plural

    def _subject(self, rng) -> tuple[list[str], bool]:
        r = rng.random()
        if r < 0.12:
            p = _pick(rng, PRONOUNS_SG + PRONOUNS_PL + ["i", "you"])
            return [p], p in ("we", "they", "i", "you")
        cls = "person" if r < 0.8 else "animal"
        return self._noun_phrase(rng, cls)

    def _object(self, rng, cls: str) -> list[str]:
        words, _ = self._noun_phrase(rng, cls)
        return words

    def _verb_and_object(self, rng) -> tuple[Verb, list[str]]:
        if rng.random() < 0.2:
            return _pick(rng, INTRANSITIVE), []
        classes = list(_OBJECT_CLASS_WEIGHTS)
        p = np.array([_OBJECT_CLASS_WEIGHTS[c] for c in classes])
        cls = classes[int(rng.choice(len(classes), p=p / p.sum()))]
        return _pick(rng, VERB_CLASSES[cls]), self._object(rng, cls)

    def _modifiers(self, rng) -> list[str]:
        out: list[str] = []
        if rng.random() < 0.35:
            prep = _pick(rng, PREP_PLACE)
            out += [prep] + self._object(rng, "place")
        elif rng.random() < 0.15:
            out += [_pick(rng, PREP_OBJECT)] + self._object(rng, "object")
        if rng.random() < 0.3:
            out += _pick(rng, TIME_PHRASES).split()
        elif rng.random() < 0.15:
            out.append(_pick(rng, ADVERBS))
        return out

    def _clause(self, rng) -> list[str]:
        subj, plural = self._subject(rng)
        verb, obj = self._verb_and_object(rng)
        r = rng.random()
        if r < 0.45:
            vp = [verb.past]
        elif r < 0.65:
            present = verb.base if plural else verb.third
            vp = [present]
        elif r < 0.8:
            vp = [_pick(rng, MODALS), verb.base]
        elif r < 0.9:
            aux = (
                ("were" if plural else "was") if rng.random() < 0.5 else ("are" if plural else "is")
            )
            if subj == ["i"]:
                aux = "was" if aux in ("was", "were") else "am"
            vp = [aux, verb.gerund]
        else:
            vp = (
                ["did", "not", verb.base]
                if rng.random() < 0.5
                else [
                    "do" if plural else "does",
                    "not",
                    verb.base,
                ]
            )
        return subj + vp + obj + self._modifiers(rng)

    def _question(self, rng) -> list[str]:
        subj, plural = self._subject(rng)
        verb, obj = self._verb_and_object(rng)
        r = rng.random()
        if r < 0.4:
            head = ["did"]
        elif r < 0.7:
            head = [_pick(rng, MODALS)]
        else:
            head = [_pick(rng, ["where", "why", "when", "how"]), "did"]
        return head + subj + [verb.base] + obj + self._modifiers(rng)

    def _command(self, rng) -> list[str]:
        verb, obj = self._verb_and_object(rng)
        lead = ["please"] if rng.random() < 0.3 else []
        return lead + [verb.base] + obj + self._modifiers(rng)

    def _draw(self, rng: np.random.Generator) -> tuple[list[str], str]:
        """(words, eSpeak text with punctuation)."""
        for _ in range(100):
            r = rng.random()
            end, pause_after = ".", None
            if r < 0.55:
                w = self._clause(rng)
            elif r < 0.7:
                first = self._clause(rng)
                w = first + [_pick(rng, CONJUNCTIONS)] + self._clause(rng)
                pause_after = len(first) if rng.random() < 0.5 else None
            elif r < 0.8:
                first = [_pick(rng, SUBORDINATORS)] + self._clause(rng)
                w = first + self._clause(rng)
                pause_after = len(first)
            elif r < 0.92:
                w, end = self._question(rng), "?"
            else:
                w = self._command(rng)
            if self.min_words <= len(w) <= self.max_words:
                break
        if pause_after is None:
            speech = " ".join(w)
        else:
            speech = " ".join(w[:pause_after]) + ", " + " ".join(w[pause_after:])
        return w, speech + end

    def words(self, rng: np.random.Generator) -> list[str]:
        """One sentence as a list of lower case words."""
        return self._draw(rng)[0]

    def sentence(self, rng: np.random.Generator) -> str:
        """One sentence: lower case words separated by single spaces."""
        return " ".join(self.words(rng))

    def utterance(self, rng: np.random.Generator) -> tuple[str, str]:
        """One sentence as (transcript, text for eSpeak).

        The transcript is lower case words separated by spaces; the eSpeak text adds a comma
        between clauses and ends with ``.`` or ``?``, for the intonation.
        """
        words, speech = self._draw(rng)
        return " ".join(words), speech


def _noun_forms() -> list[tuple[str, str, str]]:
    out = []
    for nouns in NOUN_CLASSES.values():
        for sg, pl in nouns:
            out.append((sg, "NN", sg))
            if pl != sg:
                out.append((pl, "NNS", sg))
    return out


@lru_cache(maxsize=1)
def lexicon() -> dict[str, tuple[str, str]]:
    """Every word form the generator produces -> (Penn Treebank tag, lemma); first tag wins."""
    lex: dict[str, tuple[str, str]] = {}

    def add(word: str, tag: str, lemma: str) -> None:
        lex.setdefault(word, (tag, lemma))

    for w in ["i", "you", "he", "she", "it", "we", "they", "me", "him", "them", "us"]:
        add(w, "PRP", "-PRON-")
    for w in ["my", "your", "his", "her", "our", "their"]:
        add(w, "PRP$", "-PRON-")
    for w in [
        "the",
        "a",
        "an",
        "this",
        "that",
        "these",
        "those",
        "some",
        "every",
        "each",
        "all",
        "any",
        "no",
        "several",
        "many",
        "few",
    ]:
        add(w, "DT", w)
    for w in ["is", "am", "are", "was", "were", "be", "been"]:
        add(w, "VBZ" if w == "is" else "VBD" if w in ("was", "were") else "VBP", "be")
    for w, tag in [("do", "VBP"), ("does", "VBZ"), ("did", "VBD")]:
        add(w, tag, "do")
    for w in MODALS:
        add(w, "MD", w)
    for w in ["and", "but", "or"]:
        add(w, "CC", w)
    for w in ["so", "because", "while", "when", "after", "before", "although", "if"]:
        add(w, "IN", w)
    for w in (
        PREP_PLACE
        + PREP_OBJECT
        + [
            "of",
            "for",
            "from",
            "by",
            "about",
            "into",
            "onto",
            "over",
            "up",
            "down",
            "off",
            "out",
            "than",
            "to",
        ]
    ):
        add(w, "IN", w)
    for w in ["where", "why", "how"]:
        add(w, "WRB", w)
    for w in ["what", "which"]:
        add(w, "WDT", w)
    add("who", "WP", "who")
    add("whose", "WP$", "who")
    add("not", "RB", "not")
    add("please", "UH", "please")
    add("there", "EX", "there")
    add("here", "RB", "here")
    add("then", "RB", "then")
    for w in NUMBERS + ["one"]:
        add(w, "CD", w)
    for w, tag, lemma in _noun_forms():
        add(w, tag, lemma)
    for verbs in [*VERB_CLASSES.values(), INTRANSITIVE]:
        for v in verbs:
            add(v.base, "VB", v.base)
            add(v.third, "VBZ", v.base)
            add(v.past, "VBD", v.base)
            add(v.gerund, "VBG", v.base)
    for w, lemma in [("wanted", "want"), ("tried", "try"), ("said", "say"), ("told", "tell")]:
        add(w, "VBD", lemma)
    for w in ADJECTIVES + COLOURS:
        add(w, "JJ", w)
    for w in ADVERBS:
        add(w, "RB", w)
    for w in NAMES:
        add(w, "NNP", w)
    for phrase in TIME_PHRASES:
        for w in phrase.split():
            add(
                w,
                "NNP"
                if w.endswith("day")
                and w not in ("today", "yesterday")
                or w
                in (
                    "january february march april may june july august september october november "
                    "december".split()
                )
                else "NN",
                w,
            )
    return lex


@lru_cache(maxsize=1)
def vocabulary() -> list[str]:
    """Every word form :class:`SentenceGenerator` can produce, sorted."""
    words: set[str] = set()
    for w, _, _ in _noun_forms():
        words.add(w)
    for verbs in [*VERB_CLASSES.values(), INTRANSITIVE]:
        for v in verbs:
            words.update((v.base, v.third, v.past, v.gerund))
    for group in (
        ADJECTIVES,
        COLOURS,
        ADVERBS,
        NAMES,
        PREP_PLACE,
        PREP_OBJECT,
        DETERMINERS,
        PLURAL_DETERMINERS,
        NUMBERS,
        MODALS,
        PRONOUNS_SG,
        PRONOUNS_PL,
        CONJUNCTIONS,
        SUBORDINATORS,
    ):
        words.update(group)
    for phrase in TIME_PHRASES:
        words.update(phrase.split())
    words.update(
        [
            "i",
            "you",
            "an",
            "of",
            "not",
            "did",
            "do",
            "does",
            "was",
            "were",
            "is",
            "are",
            "am",
            "please",
            "where",
            "why",
            "when",
            "how",
        ]
    )
    return sorted(words)


def normalize_sentence(text: str) -> str:
    """A sentence reduced for comparison: lower case, words of letters, digits and apostrophes
    separated by single spaces (``"Yes, I agree."`` -> ``"yes i agree"``)."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def tag(word: str) -> tuple[str, str]:
    """(Penn Treebank tag, lemma) of ``word``: from :func:`lexicon`, else a proper noun guess."""
    return lexicon().get(word, ("NN", word))
