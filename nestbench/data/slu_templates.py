"""Templates for the embedded SLURP-style data: scenarios, intents (``<scenario>_<action>``, as in
SLURP), slot types with their fillers, and a sampler of annotated commands.

A template is text with ``{slot_type}`` placeholders, e.g. ``"wake me up at {time}"``.
"""

from __future__ import annotations

import re

import numpy as np

from .text import NAMES
from .text import tag as _text_tag

SLOT_FILLERS: dict[str, list[str]] = {
    "time": [
        "six am", "seven am", "seven thirty", "eight fifteen", "nine am", "ten pm", "noon",
        "midnight", "five thirty pm", "quarter past six", "half past seven", "eleven forty five",
        "two pm", "four o'clock", "six forty", "three in the afternoon", "nine thirty",
    ],
    "date": [
        "today", "tomorrow", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
        "sunday", "this weekend", "next week", "the fifth of may", "the first of june",
        "christmas day", "next monday", "this friday", "the twentieth of march",
    ],
    "timeofday": ["morning", "afternoon", "evening", "tonight", "night", "lunchtime"],
    "place_name": [
        "london", "paris", "new york", "tokyo", "berlin", "boston", "edinburgh", "sydney",
        "rome", "madrid", "chicago", "dublin", "glasgow", "manchester", "toronto", "seattle",
        "lisbon", "vienna", "oslo", "cairo",
    ],
    "person": NAMES[:60],
    "relation": [
        "mum", "dad", "brother", "sister", "boss", "wife", "husband", "colleagues", "friend",
        "grandmother", "grandfather", "aunt", "uncle", "neighbour", "team", "manager",
    ],
    "event_name": [
        "meeting", "dentist appointment", "birthday party", "lunch", "gym session",
        "team meeting", "doctor appointment", "yoga class", "dinner", "conference call",
        "piano lesson", "job interview", "haircut", "football practice", "book club",
    ],
    "food_type": [
        "pizza", "sushi", "chinese", "indian", "thai", "burgers", "curry", "noodles", "tacos",
        "kebab", "fish and chips", "pasta", "salad", "sandwiches", "ramen",
    ],
    "business_name": [
        "pizza hut", "starbucks", "subway", "tesco", "burger king", "costa", "nandos",
        "pret", "wagamama", "walmart", "target", "ikea",
    ],
    "business_type": [
        "restaurant", "cafe", "pharmacy", "supermarket", "bakery", "petrol station",
        "bank", "cinema", "gym", "hospital", "library", "post office",
    ],
    "song_name": [
        "yellow submarine", "bohemian rhapsody", "hey jude", "let it be", "imagine",
        "wonderwall", "hotel california", "yesterday", "purple rain", "dancing queen",
        "billie jean", "like a rolling stone", "smells like teen spirit", "hallelujah",
    ],
    "artist_name": [
        "the beatles", "adele", "queen", "madonna", "taylor swift", "elvis", "abba",
        "coldplay", "beyonce", "david bowie", "bob dylan", "ed sheeran", "rihanna", "prince",
        "nirvana", "the rolling stones",
    ],
    "playlist_name": [
        "workout", "chill", "party", "road trip", "sleep", "focus", "morning", "summer hits",
        "dinner", "running", "study",
    ],
    "radio_name": [
        "radio one", "jazz fm", "classic fm", "radio four", "capital", "heart radio",
        "absolute radio", "world service", "radio two", "kiss fm",
    ],
    "podcast_name": [
        "the daily", "science weekly", "history hour", "tech talk", "football weekly",
        "the food programme", "desert island discs", "crime stories", "money box",
    ],
    "audiobook_name": [
        "pride and prejudice", "moby dick", "great expectations", "treasure island",
        "little women", "jane eyre", "the hobbit", "dracula", "emma", "war and peace",
    ],
    "music_genre": [
        "jazz", "rock", "pop", "classical", "hip hop", "country", "blues", "reggae", "folk",
        "soul", "metal", "techno", "disco",
    ],
    "device_type": [
        "lights", "lamp", "vacuum cleaner", "robot vacuum", "coffee machine", "smart plug",
        "heater", "fan", "tv", "radiator", "kettle", "dishwasher",
    ],
    "color_type": [
        "red", "blue", "green", "warm white", "purple", "yellow", "pink", "orange", "cool white",
        "soft blue",
    ],
    "house_place": [
        "kitchen", "bedroom", "living room", "bathroom", "garage", "office", "hallway",
        "dining room", "garden", "basement", "attic",
    ],
    "list_name": [
        "grocery", "shopping", "to do", "packing", "christmas", "birthday", "reading",
        "holiday", "work", "chores",
    ],
    "currency_name": [
        "dollars", "euros", "pounds", "yen", "pesos", "rupees", "swiss francs",
        "canadian dollars", "australian dollars", "yuan", "rand",
    ],
    "weather_descriptor": [
        "rain", "snow", "sunny", "cold", "windy", "hot", "foggy", "umbrella", "jacket", "frost",
        "thunderstorms", "warm",
    ],
    "news_topic": [
        "sports", "politics", "technology", "business", "science", "health", "elections",
        "the economy", "football", "climate", "entertainment",
    ],
    "transport_type": ["train", "bus", "taxi", "flight", "tube", "ferry", "coach", "tram"],
    "definition_word": [
        "serendipity", "ephemeral", "photosynthesis", "democracy", "gravity", "algorithm",
        "metaphor", "inflation", "hurricane", "volcano", "nostalgia", "paradox", "velocity",
        "molecule", "symphony",
    ],
    "change_amount": [
        "ten percent", "twenty percent", "a bit", "half", "a little", "fifty percent", "a lot",
    ],
    "order_type": ["delivery", "takeaway", "pickup", "collection"],
    "meal_type": ["breakfast", "lunch", "dinner", "brunch", "dessert"],
    "general_frequency": ["every day", "every monday", "weekly", "daily", "every weekend",
                          "every morning"],
    "time_zone": ["eastern time", "pacific time", "gmt", "central european time", "tokyo time",
                  "india time"],
    "cooking_type": ["bake", "roast", "grill", "boil", "fry", "steam"],
    "game_name": ["chess", "trivia", "twenty questions", "hangman", "sudoku", "a word game"],
    "media_type": ["twitter", "facebook", "instagram", "linkedin"],
    "joke_type": ["funny", "silly", "knock knock", "dad", "short"],
    "email_folder": ["inbox", "spam", "work", "drafts"],
    "ingredient": ["eggs", "milk", "bread", "butter", "apples", "coffee", "rice", "cheese",
                   "tomatoes", "pasta", "chicken", "bananas", "onions"],
}  # fmt: skip

# intent -> templates; the intent's scenario is the text before the first underscore
TEMPLATES: dict[str, list[str]] = {
    "alarm_set": [
        "wake me up at {time}", "set an alarm for {time}", "set an alarm for {time} {date}",
        "wake me up at {time} {date}", "i need an alarm at {time} {general_frequency}",
        "alarm for {time} please",
    ],
    "alarm_query": [
        "what alarms do i have", "what time is my alarm {date}", "is there an alarm set for "
        "{date}", "show me my alarms for {date}", "when will my alarm go off",
    ],
    "alarm_remove": [
        "cancel my alarm for {time}", "remove the {time} alarm", "delete all alarms for {date}",
        "turn off the alarm for {time} {date}",
    ],
    "calendar_set": [
        "add a {event_name} with {person} {date}", "schedule a {event_name} at {time}",
        "remind me about the {event_name} {date} at {time}", "put {event_name} in my calendar "
        "for {date}", "book a {event_name} with my {relation} {date}",
        "remind me to call my {relation} {date} {timeofday}",
    ],
    "calendar_query": [
        "what is on my calendar {date}", "do i have any meetings {date}", "when is my "
        "{event_name}", "what am i doing {date} {timeofday}", "is my {event_name} at {time}",
        "who am i meeting {date}",
    ],
    "calendar_remove": [
        "cancel my {event_name} {date}", "delete the {event_name} with {person}",
        "remove all events {date}", "clear my calendar for {date}",
    ],
    "weather_query": [
        "what is the weather like {date}", "will it {weather_descriptor} {date} in "
        "{place_name}", "what is the weather in {place_name}", "do i need an {weather_descriptor}"
        " {date}", "how cold will it be {date} {timeofday}", "is it going to be {weather_descriptor}"
        " in {place_name} {date}", "weather forecast for {place_name}",
    ],
    "play_music": [
        "play {song_name} by {artist_name}", "play some {music_genre}", "play my {playlist_name}"
        " playlist", "i want to hear {artist_name}", "play {song_name}", "put on some "
        "{music_genre} music", "play something by {artist_name}",
    ],
    "play_radio": [
        "play {radio_name}", "turn on the radio", "tune in to {radio_name}",
        "put {radio_name} on", "i want to listen to {radio_name}",
    ],
    "play_podcasts": [
        "play the latest episode of {podcast_name}", "play {podcast_name}",
        "resume my podcast", "play the next episode of {podcast_name}",
    ],
    "play_audiobook": [
        "read {audiobook_name}", "continue my audiobook", "play the audiobook "
        "{audiobook_name}", "resume {audiobook_name} from chapter two",
    ],
    "play_game": [
        "let us play {game_name}", "start a game of {game_name}", "i want to play {game_name}",
    ],
    "music_likeness": [
        "i like {music_genre}", "i love this song", "save that i like {artist_name}",
        "i really enjoy {music_genre} music", "remember that i like {song_name}",
    ],
    "music_query": [
        "what song is this", "who sings this song", "what is the name of this song",
        "which album is {song_name} from",
    ],
    "iot_hue_lightoff": [
        "turn off the lights in the {house_place}", "switch off the {house_place} lights",
        "lights off", "turn the lights off in the {house_place}",
    ],
    "iot_hue_lighton": [
        "turn on the lights in the {house_place}", "switch on the {house_place} lights",
        "lights on please", "turn the {house_place} lights on",
    ],
    "iot_hue_lightchange": [
        "change the lights to {color_type}", "make the {house_place} lights {color_type}",
        "set the lights in the {house_place} to {color_type}",
    ],
    "iot_hue_lightdim": [
        "dim the lights in the {house_place}", "dim the lights by {change_amount}",
        "make the {house_place} darker", "lower the lights by {change_amount}",
    ],
    "iot_hue_lightup": [
        "brighten the lights in the {house_place}", "increase the brightness by "
        "{change_amount}", "make the lights brighter",
    ],
    "iot_cleaning": [
        "start the {device_type}", "vacuum the {house_place}", "clean the {house_place} "
        "{timeofday}", "turn on the robot vacuum in the {house_place}",
    ],
    "iot_coffee": [
        "make me a coffee", "start the coffee machine", "make coffee at {time}",
        "i want a coffee {timeofday}",
    ],
    "iot_wemo_on": [
        "turn on the {device_type}", "switch the {device_type} on", "power on the "
        "{device_type} in the {house_place}",
    ],
    "iot_wemo_off": [
        "turn off the {device_type}", "switch the {device_type} off", "power off the "
        "{device_type} in the {house_place}",
    ],
    "lists_createoradd": [
        "add {ingredient} to my {list_name} list", "create a {list_name} list", "put "
        "{ingredient} on the {list_name} list", "make a new list called {list_name}",
    ],
    "lists_query": [
        "what is on my {list_name} list", "read my {list_name} list", "what lists do i have",
        "is {ingredient} on my {list_name} list",
    ],
    "lists_remove": [
        "remove {ingredient} from my {list_name} list", "delete my {list_name} list",
        "take {ingredient} off the {list_name} list",
    ],
    "email_sendemail": [
        "send an email to {person}", "email my {relation} about the {event_name}",
        "write an email to {person} saying i will be late", "reply to {person}",
    ],
    "email_query": [
        "do i have new emails", "check my {email_folder}", "any emails from {person}",
        "read my latest email from my {relation}", "how many unread emails do i have",
    ],
    "email_querycontact": [
        "what is the phone number of {person}", "give me the address of my {relation}",
        "when is the birthday of {person}", "find the email address of {person}",
    ],
    "email_addcontact": [
        "add {person} to my contacts", "save this number for {person}",
        "create a new contact for my {relation}",
    ],
    "takeaway_order": [
        "order {food_type} for {order_type}", "order me some {food_type}", "i want to order "
        "{food_type} from {business_name}", "get me {food_type} for {meal_type}",
    ],
    "takeaway_query": [
        "does {business_name} do {order_type}", "is my {food_type} order on the way",
        "which {business_type} near me does {order_type}", "when will my food arrive",
    ],
    "transport_ticket": [
        "book a {transport_type} ticket to {place_name}", "buy me a {transport_type} ticket to "
        "{place_name} {date}", "i need a ticket to {place_name} {date} {timeofday}",
    ],
    "transport_query": [
        "when is the next {transport_type} to {place_name}", "how long does the "
        "{transport_type} to {place_name} take", "is the {time} {transport_type} on time",
    ],
    "transport_taxi": [
        "book a taxi to {place_name}", "get me a taxi at {time}", "call a cab to the "
        "{business_type}", "i need a taxi {date} at {time}",
    ],
    "transport_traffic": [
        "how is the traffic to {place_name}", "is there traffic on the way to work",
        "what is the traffic like {timeofday}",
    ],
    "qa_factoid": [
        "how tall is the eiffel tower", "what is the capital of {place_name}", "who wrote "
        "{audiobook_name}", "how far is {place_name} from {place_name}", "how many people live "
        "in {place_name}",
    ],
    "qa_currency": [
        "what is the exchange rate from {currency_name} to {currency_name}", "how many "
        "{currency_name} is one hundred {currency_name}", "convert fifty {currency_name} to "
        "{currency_name}",
    ],
    "qa_definition": [
        "what does {definition_word} mean", "define {definition_word}", "what is the meaning "
        "of {definition_word}", "tell me about {definition_word}",
    ],
    "qa_maths": [
        "what is five plus seven", "what is twelve times three", "what is the square root of "
        "eighty one", "how much is twenty divided by four",
    ],
    "news_query": [
        "what is the latest news", "tell me the {news_topic} news", "any news about "
        "{news_topic} {date}", "what are the headlines in {place_name}",
    ],
    "recommendation_events": [
        "what is happening in {place_name} {date}", "are there any concerts {date}",
        "recommend something to do {date} {timeofday}", "any {music_genre} gigs this weekend",
    ],
    "recommendation_locations": [
        "recommend a good {business_type} near me", "where is the best {food_type} in "
        "{place_name}", "find me a {business_type} nearby", "what is a nice {business_type} "
        "in {place_name}",
    ],
    "datetime_query": [
        "what time is it", "what is the date {date}", "what time is it in {place_name}",
        "what day is it {date}",
    ],
    "datetime_convert": [
        "what is {time} in {time_zone}", "convert {time} {time_zone} to {time_zone}",
        "what time is it in {time_zone}",
    ],
    "cooking_recipe": [
        "how do i {cooking_type} {ingredient}", "give me a recipe for {food_type}", "how long "
        "should i {cooking_type} {ingredient}", "what can i make for {meal_type} with "
        "{ingredient}",
    ],
    "audio_volume_up": [
        "turn the volume up", "louder please", "increase the volume by {change_amount}",
        "turn it up a bit",
    ],
    "audio_volume_down": [
        "turn the volume down", "quieter please", "lower the volume by {change_amount}",
        "turn it down",
    ],
    "audio_volume_mute": ["mute", "be quiet", "mute the sound", "silence please"],
    "general_joke": ["tell me a {joke_type} joke", "make me laugh", "do you know any jokes"],
    "general_quirky": [
        "what is your favourite colour", "do you like {music_genre}", "are you a robot",
        "sing me a song",
    ],
    "social_post": [
        "post on {media_type} that i am in {place_name}", "tweet that i love {food_type}",
        "update my {media_type} status",
    ],
    "social_query": [
        "what is new on {media_type}", "any updates from {person} on {media_type}",
        "check my {media_type} notifications",
    ],
}  # fmt: skip

# Penn Treebank tag and lemma of the template words the sentence generator's lexicon lacks.
_TEMPLATE_TAGS: dict[str, tuple[str, str]] = {
    w: (t, lemma)
    for t, entries in {
        "VB": "add brighten clear convert create define delete dim get give go increase know let "
        "live love lower make mean mute need post put recommend remove reply resume save "
        "send set show tune turn tweet update wake want like have",
        "NN": "alarm audiobook birthday bit brightness cab capital contact date episode exchange "
        "food forecast machine meaning playlist podcast rate robot root something sound "
        "status taxi time traffic vacuum volume way",
        "NNS": "alarms:alarm contacts:contact events:event gigs:gig headlines:headline "
        "lights:light notifications:notification people:person times:time "
        "updates:update",
        "JJ": "favourite:favourite good:good nice:nice unread:unread latest:late darker:dark "
        "brighter:bright louder:loud quieter:quiet far:far much:much eighty:eighty",
        "JJS": "best:good",
        "VBG": "doing:do going:go happening:happen saying:say meaning:mean",
        "VBN": "divided:divide",
        "UH": "hey okay olly",
        "CC": "plus",
        "NNP": "eiffel",
    }.items()
    for w, lemma in (e.split(":") if ":" in e else (e, e) for e in entries.split())
}
_PROPER_SLOTS = (
    "place_name",
    "person",
    "artist_name",
    "business_name",
    "song_name",
    "radio_name",
    "podcast_name",
    "audiobook_name",
    "media_type",
    "time_zone",
)
_PROPER_WORDS = {w for slot in _PROPER_SLOTS for f in SLOT_FILLERS[slot] for w in f.split()}


def tag(word: str) -> tuple[str, str]:
    """(Penn Treebank tag, lemma) of a word of the SLU sentences, for SLURP ``tokens``: the
    template words' own tags, then the sentence generator's lexicon, then NNP for words of names
    (places, people, titles), else NN."""
    if word in _TEMPLATE_TAGS:
        return _TEMPLATE_TAGS[word]
    pos, lemma = _text_tag(word)
    if (pos, lemma) == ("NN", word) and word in _PROPER_WORDS:
        return "NNP", word
    return pos, lemma


#: Multi-word scenarios, so that ``scenario_action`` splits correctly.
_SCENARIOS = (
    "alarm", "calendar", "weather", "play", "music", "iot", "lists", "email", "takeaway",
    "transport", "qa", "news", "recommendation", "datetime", "cooking", "audio", "general",
    "social",
)  # fmt: skip
_SLOT = re.compile(r"\{(\w+)\}")
_PREFIXES = ["please", "hey", "okay", "olly", "can you"]


def split_intent(intent: str) -> tuple[str, str]:
    """``"iot_hue_lightoff"`` -> ``("iot", "hue_lightoff")``."""
    scenario, action = intent.split("_", 1)
    return scenario, action


def scenarios() -> list[str]:
    """All scenarios the templates use."""
    return sorted({split_intent(i)[0] for i in TEMPLATES})


def intents() -> list[str]:
    """All intents the templates use."""
    return sorted(TEMPLATES)


def slot_types() -> list[str]:
    """All slot types the templates use."""
    return sorted({s for ts in TEMPLATES.values() for t in ts for s in _SLOT.findall(t)})


def sample_command(rng: np.random.Generator, intent: str | None = None):
    """Draw one annotated command.

    Returns:
        (intent, parts, speech_text): ``parts`` for :func:`~.slurp.make_record` (text pieces and
        ``(slot type, filler)`` pairs), and the text for eSpeak.
    """
    if intent is None:
        names = intents()
        intent = names[int(rng.integers(len(names)))]
    templates = TEMPLATES[intent]
    template = templates[int(rng.integers(len(templates)))]
    parts: list = []
    if rng.random() < 0.12:
        parts.append(_PREFIXES[int(rng.integers(len(_PREFIXES)))])
    pos = 0
    used: dict[str, str] = {}
    for m in _SLOT.finditer(template):
        if m.start() > pos:
            parts.append(template[pos : m.start()].strip())
        slot = m.group(1)
        fillers = SLOT_FILLERS[slot]
        filler = fillers[int(rng.integers(len(fillers)))]
        for _ in range(5):  # "from {currency} to {currency}": different fillers
            if used.get(slot) != filler:
                break
            filler = fillers[int(rng.integers(len(fillers)))]
        used[slot] = filler
        pos = m.end()
        parts.append((slot, filler))
    if pos < len(template):
        parts.append(template[pos:].strip())
    parts = [p for p in parts if not (isinstance(p, str) and not p)]
    words = []
    for p in parts:
        words.append(p[1] if isinstance(p, tuple) else p)
    text = " ".join(" ".join(words).split())
    question = text.split(" ", 1)[0] in {
        "what", "when", "where", "who", "how", "which", "is", "are", "do", "does", "any", "will",
    }  # fmt: skip
    return intent, parts, text + ("?" if question else ".")


assert all(split_intent(i)[0] in _SCENARIOS for i in TEMPLATES)
assert all(s in SLOT_FILLERS for s in slot_types())
