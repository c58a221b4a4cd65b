"""Slot tags in the transcript: SUPERB SF's design on subword units.

A training target is the normalised sentence with each entity's words between a begin tag
``<type>`` and an end tag ``</type>``::

    remind me to<event_name> call my team</event_name><date> the first of june</date>

The tags are whole sentencepiece pieces (user-defined symbols), so CTC emits them like any unit;
each is glued to the word before it (:func:`join_tagged`) so that it costs one unit, not two (a
tag after a space would also need a word-boundary piece of its own).
:func:`parse_tags` reads a decoded string back into its words and ``{type, filler}`` entities:
words between a begin tag and the next end tag (of any type) or the next begin tag are the
filler of the begin tag's type; an end tag with nothing open, and an entity without words, are
ignored; an entity still open at the end closes there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TAG = re.compile(r"^<(/?)([a-z0-9_]+)>$")
_TAGS_IN = re.compile(r"(</?[a-z0-9_]+>)")


def begin_tag(kind: str) -> str:
    return f"<{kind}>"


def end_tag(kind: str) -> str:
    return f"</{kind}>"


def tag_symbols(types: Sequence[str]) -> list[str]:
    """Begin and end tags of every entity type, in a stable order."""
    return [t for kind in sorted(set(types)) for t in (begin_tag(kind), end_tag(kind))]


def find_span(words: Sequence[str], filler: Sequence[str], taken: set[int]) -> int | None:
    """The first start index of ``filler`` in ``words`` whose words are not ``taken``."""
    n = len(filler)
    if n == 0:
        return None
    for i in range(len(words) - n + 1):
        if list(words[i : i + n]) == list(filler) and not taken & set(range(i, i + n)):
            return i
    return None


def tag_text(words: Sequence[str], entities: Sequence[tuple[str, Sequence[str]]]):
    """The tagged word sequence of a sentence, and the entities whose filler is not a span of
    unused words of the sentence (left untagged; the caller counts them).

    Args:
        words: the normalised sentence's words.
        entities: (type, filler words) pairs.
    """
    starts: dict[int, tuple[str, int]] = {}
    taken: set[int] = set()
    missing = []
    for kind, filler in entities:
        i = find_span(words, filler, taken)
        if i is None:
            missing.append((kind, " ".join(filler)))
            continue
        starts[i] = (kind, len(filler))
        taken |= set(range(i, i + len(filler)))
    out: list[str] = []
    close_at: dict[int, str] = {}
    for i, w in enumerate(words):
        if i in close_at:
            out.append(end_tag(close_at.pop(i)))
        if i in starts:
            kind, n = starts[i]
            out.append(begin_tag(kind))
            close_at[i + n] = kind
        out.append(w)
    for kind in close_at.values():
        out.append(end_tag(kind))
    return out, missing


def join_tagged(tokens: Sequence[str]) -> str:
    """Tokens of :func:`tag_text` as one string, each tag glued to the token before it."""
    out = ""
    for tok in tokens:
        out += tok if (_TAG.match(tok) and out) else (" " + tok if out else tok)
    return out


def parse_tags(text: str) -> tuple[list[str], list[dict]]:
    """Words and ``{type, filler}`` entities of a decoded tagged string (module docstring)."""
    text = _TAGS_IN.sub(r" \1 ", text)
    words: list[str] = []
    entities: list[dict] = []
    open_kind: str | None = None
    filler: list[str] = []

    def close():
        if open_kind is not None and filler:
            entities.append({"type": open_kind, "filler": " ".join(filler)})

    for token in text.split():
        m = _TAG.match(token)
        if m is None:
            words.append(token)
            if open_kind is not None:
                filler.append(token)
            continue
        if m.group(1):  # an end tag closes whatever is open
            close()
            open_kind, filler = None, []
        else:
            close()
            open_kind, filler = m.group(2), []
    close()
    return words, entities
