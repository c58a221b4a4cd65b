"""The ASR text normaliser: what references and hypotheses are scored in, and what units see.

``normalize(text)``: Unicode NFKD with accents dropped, lower case, curly apostrophes made
straight, every other punctuation mark (``- _ / . , ; : ! ? " ( ) [ ] { } * & ...``) and every
whitespace run made one space, leading/trailing spaces removed. The alphabet is ``a``-``z``,
``'`` and the space (LibriSpeech's); characters still outside it (digits, other scripts, symbols)
are what :func:`outside_alphabet` reports, and the task drops them or stops, as ``asr.unknown_chars``
says.
"""

from __future__ import annotations

import re
import string
import unicodedata

ALPHABET = frozenset(string.ascii_lowercase + "' ")
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})
_PUNCT = re.compile(
    r"[\s\-_/.,;:!?\"()\[\]{}*&+=<>|~^#%@\\\u2010-\u2015\u2026\u00ab\u00bb\u201c\u201d]+"
)


def normalize(text: str) -> str:
    """``text`` in the normaliser's form (see the module docstring)."""
    text = unicodedata.normalize("NFKD", str(text))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower().translate(_APOSTROPHES)
    return _PUNCT.sub(" ", text).strip()


def outside_alphabet(normalized: str) -> set[str]:
    """The characters of a normalised text that are not in :data:`ALPHABET`."""
    return set(normalized) - ALPHABET


def drop_outside(normalized: str) -> str:
    """A normalised text without its out-of-alphabet characters (spaces collapsed again)."""
    return " ".join("".join(c for c in normalized if c in ALPHABET).split())
