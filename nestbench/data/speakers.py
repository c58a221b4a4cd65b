"""Synthetic speakers: each a fixed combination of an English accent (an eSpeak language voice), a
voice variant (formants, pitch register, roughness), and pitch, pitch-range, rate and word-gap
settings, plus a fixed "timbre" equaliser applied to all of its audio.

Speakers are drawn gender-balanced, and distinct (accent, variant) pairs are used before any
pair repeats, so that speakers differ in more than their prosody settings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .espeak import VoiceSettings

#: English accents shipped with eSpeak NG: language voice -> description.
ACCENTS: dict[str, str] = {
    "en": "British English",
    "en-gb-x-rp": "Received Pronunciation",
    "en-gb-scotland": "Scottish English",
    "en-gb-x-gbclan": "Lancastrian English",
    "en-gb-x-gbcwmd": "West Midlands English",
    "en-us": "American English",
    "en-us-nyc": "New York City English",
    "en-029": "Caribbean English",
}

#: Voice variants (``espeak-ng-data/voices/!v``) that sound human, by the gender they model.
MALE_VARIANTS = [
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "Andy", "Denis", "Diogo", "Gene", "Henrique",
    "Hugo", "Jacky", "Lee", "Mario", "Michael", "Mike", "Reed", "antonio", "croak", "david", "ed",
    "edward", "gustave", "iven", "iven3", "marcelo", "michel", "miguel", "paul", "pedro", "quincy",
    "rob", "robert", "sandro", "travis", "victor", "grandpa", "boris", "benjamin", "caleb", "max",
    "klatt", "klatt2",
]  # fmt: skip
FEMALE_VARIANTS = [
    "f1", "f2", "f3", "f4", "f5", "Alicia", "Andrea", "Annie", "anika", "aunty", "belinda",
    "grandma", "linda", "shelby", "steph", "steph2", "steph3",
]  # fmt: skip


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker.

    Attributes:
        index: position in the corpus's speaker table (0-based), the basis of its ids.
        accent: eSpeak language voice, a key of :data:`ACCENTS`.
        variant: eSpeak voice variant.
        gender: ``"m"`` or ``"f"``, as the variant models it.
        pitch, range, rate, word_gap: eSpeak settings (see :class:`~.espeak.VoiceSettings`).
        eq_freq, eq_gain_db, eq_q: a peaking equaliser applied to all of the speaker's audio.
        tilt_db: spectral tilt, dB per octave around 1 kHz.
    """

    index: int
    accent: str
    variant: str
    gender: str
    pitch: int
    range: int
    rate: int
    word_gap: int
    eq_freq: float
    eq_gain_db: float
    eq_q: float
    tilt_db: float

    @property
    def voice(self) -> str:
        """eSpeak voice name, e.g. ``"en-us+m3"``."""
        return f"{self.accent}+{self.variant}"

    def settings(
        self, rng: np.random.Generator | None = None, jitter: float = 1.0
    ) -> VoiceSettings:
        """eSpeak settings for one utterance, with per-utterance jitter of rate and pitch.

        Args:
            rng: draws the jitter; None: no jitter.
            jitter: scale of the jitter (1 = rate ±6 %, pitch ±4, range ±5).
        """
        if rng is None:
            return VoiceSettings(self.voice, self.rate, self.pitch, self.range, self.word_gap)
        rate = self.rate * (1.0 + jitter * rng.uniform(-0.06, 0.06))
        pitch = self.pitch + jitter * rng.uniform(-4, 4)
        rng_ = self.range + jitter * rng.uniform(-5, 5)
        return VoiceSettings(
            self.voice, int(round(rate)), int(round(pitch)), int(round(rng_)), self.word_gap
        )

    def as_dict(self) -> dict:
        """Plain dict (for the data card and ``speakers.tsv``)."""
        return asdict(self)


def make_speakers(n: int, seed: int) -> list[Speaker]:
    """Draw ``n`` distinct speakers, half of each gender (odd ``n``: one more female).

    Args:
        n: how many.
        seed: fixes the draw.

    Returns:
        Speakers with ``index`` 0..n-1, in an order that alternates genders.
    """
    rng = np.random.default_rng([seed, 0x5BEA])
    accents = list(ACCENTS)
    pools = {}
    for gender, variants in (("f", FEMALE_VARIANTS), ("m", MALE_VARIANTS)):
        combos = [(a, v) for v in variants for a in accents]
        order = rng.permutation(len(combos))
        pools[gender] = [combos[i] for i in order]
    speakers = []
    used: set[tuple] = set()
    counts = {"f": 0, "m": 0}
    for i in range(n):
        gender = "f" if i % 2 == 0 else "m"
        pool = pools[gender]
        accent, variant = pool[counts[gender] % len(pool)]
        counts[gender] += 1
        while True:
            pitch = int(rng.integers(20, 81))
            range_ = int(rng.integers(25, 86))
            rate = int(rng.integers(130, 201))
            word_gap = int(rng.choice([0, 0, 0, 1, 2]))
            key = (accent, variant, pitch // 4, range_ // 8, rate // 8)
            if key not in used:
                used.add(key)
                break
        speakers.append(
            Speaker(
                index=i,
                accent=accent,
                variant=variant,
                gender=gender,
                pitch=pitch,
                range=range_,
                rate=rate,
                word_gap=word_gap,
                eq_freq=float(np.round(np.exp(rng.uniform(np.log(400), np.log(4000))), 1)),
                eq_gain_db=float(np.round(rng.uniform(-6, 6), 2)),
                eq_q=float(np.round(rng.uniform(0.7, 2.0), 2)),
                tilt_db=float(np.round(rng.uniform(-2.0, 2.0), 2)),
            )
        )
    return speakers
