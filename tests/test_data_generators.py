"""The pieces of the embedded corpus: eSpeak binding, sentence generator, speakers, SLU
templates, effects, session planning, trial lists."""

from __future__ import annotations

import numpy as np
import pytest

from nestbench.data import effects, espeak, slu_templates
from nestbench.data.rttm import Segment, overlap_ratio
from nestbench.data.slurp import annotation_problems, make_record
from nestbench.data.speakers import ACCENTS, FEMALE_VARIANTS, MALE_VARIANTS, make_speakers
from nestbench.data.synth import plan_session
from nestbench.data.text import SentenceGenerator, lexicon, vocabulary
from nestbench.data.trials import balanced_trials


def test_espeak_synthesis_is_deterministic_and_stateless():
    v = espeak.VoiceSettings("en-us+m3", rate=160, pitch=40)
    a = espeak.synthesize("testing one two three.", v, seed=3)
    espeak.synthesize(
        "something else first, to change the library's state.",
        espeak.VoiceSettings("en+f2"),
        seed=9,
    )
    b = espeak.synthesize("testing one two three.", v, seed=3)
    assert espeak.sample_rate() == 22050
    assert a.dtype == np.int16 and 0.8 < len(a) / 22050 < 3.0
    assert np.array_equal(a, b)
    assert np.abs(a).max() > 1000


def test_espeak_settings_change_the_voice():
    text = "the weather is nice today."
    base = espeak.synthesize(text, espeak.VoiceSettings("en-us+m3"), 1)
    slow = espeak.synthesize(text, espeak.VoiceSettings("en-us+m3", rate=100), 1)
    other = espeak.synthesize(text, espeak.VoiceSettings("en-gb-scotland+f2"), 1)
    assert len(slow) > 1.3 * len(base)
    assert len(other) != len(base) or not np.array_equal(other, base)


def test_espeak_voices_exist():
    variants = set(espeak.variant_names())
    assert set(MALE_VARIANTS + FEMALE_VARIANTS) <= variants
    assert set(ACCENTS) <= set(espeak.language_voices())


def test_sentence_generator_vocabulary_and_determinism():
    vocab = set(vocabulary())
    assert len(vocab) >= 2000
    gen = SentenceGenerator()
    rng = np.random.default_rng(0)
    used = set()
    for _ in range(3000):
        words = gen.words(rng)
        assert 4 <= len(words) <= 22
        assert set(words) <= vocab
        used.update(words)
    assert len(used) >= 2000  # the generator really uses the vocabulary
    one = [gen.utterance(np.random.default_rng(5)) for _ in range(3)]
    assert one[0] == one[1] == one[2]
    transcript, speech = one[0]
    assert speech.rstrip(".?").replace(",", "") == transcript
    assert all(w in lexicon() for w in transcript.split())


def test_speakers_distinct_balanced_and_deterministic():
    spk = make_speakers(232, seed=0)
    assert spk == make_speakers(232, seed=0)
    assert spk != make_speakers(232, seed=1)
    assert len({(s.accent, s.variant, s.pitch, s.range, s.rate) for s in spk}) == 232
    assert sum(s.gender == "f" for s in spk) == 116
    assert len({(s.accent, s.variant) for s in spk}) > 200
    settings = spk[0].settings(np.random.default_rng(0))
    assert abs(settings.rate - spk[0].rate) <= 0.06 * spk[0].rate + 1
    assert settings.voice == f"{spk[0].accent}+{spk[0].variant}"


def test_slu_templates_cover_the_spec():
    assert len(slu_templates.scenarios()) >= 8
    assert len(slu_templates.intents()) >= 30
    assert len(slu_templates.slot_types()) >= 15
    rng = np.random.default_rng(0)
    for _ in range(500):
        intent, parts, speech = slu_templates.sample_command(rng)
        scenario, action = slu_templates.split_intent(intent)
        rec = make_record(1, scenario, action, parts, [], slu_templates.tag)
        assert annotation_problems(rec) == []
        assert speech[:-1] == rec["sentence"] and speech[-1] in ".?"
        assert rec["intent"] == intent


def test_effects():
    rng = np.random.default_rng(0)
    x = np.sin(2 * np.pi * 200 * np.arange(22050) / 22050)
    y = effects.resample((x * 10000).astype(np.int16), 22050, 16000)
    assert len(y) == 16000 and abs(np.abs(y).max() - 10000 / 32768) < 0.01
    for kind in ("white", "pink", "brown", "floor"):
        n = effects.make_noise(rng, kind, 8000, [])
        assert n.shape == (8000,) and np.sqrt(np.mean(n**2)) == pytest.approx(1.0)
    spec = np.abs(np.fft.rfft(effects.coloured_noise(rng, 1 << 16, 2.0)))
    assert spec[100:200].mean() > 10 * spec[-2000:].mean()  # brown: energy at low frequencies
    bank = [rng.standard_normal(1000)]
    assert effects.babble_noise(rng, 2500, bank).shape == (2500,)  # loops a short track
    rir = effects.room_impulse_response(rng, 0.5)
    assert rir[0] == 1.0 and len(rir) == int(0.6 * 16000) + 1
    speech = np.zeros(16000)
    speech[4000:12000] = 0.5 * np.sin(np.arange(8000) * 0.1)
    assert effects.speech_bounds(speech) == (4000, 12000)
    noisy = effects.add_noise(
        speech, effects.make_noise(rng, "white", 16000, []), 10.0, effects.active_power(speech)
    )
    noise_power = np.mean((noisy - speech) ** 2)
    assert 10 * np.log10(effects.active_power(speech) / noise_power) == pytest.approx(10, abs=1e-6)
    out = effects.to_int16(effects.normalize_level(noisy, -20.0, effects.active_power(noisy)))
    assert out.dtype == np.int16 and np.abs(out).max() <= 0.95 * 32767 + 1


@pytest.mark.parametrize("ratio", [0.05, 0.1, 0.2])
def test_plan_session_hits_the_overlap_ratio(ratio):
    rng = np.random.default_rng(1)
    lengths = list(rng.uniform(1.0, 6.0, size=20))
    pauses = list(rng.uniform(0.1, 1.0, size=20))
    onsets, end = plan_session(lengths, pauses, ratio, 0.5, rng)
    segs = [
        Segment("f", o, d, f"s{i % 3}")
        for i, (o, d) in enumerate(zip(onsets, lengths, strict=True))
    ]
    assert overlap_ratio(segs) == pytest.approx(ratio, rel=1e-6)
    assert onsets[0] == 0.5 and end == pytest.approx(onsets[-1] + lengths[-1])
    for i in range(len(onsets) - 2):  # never three turns at once
        assert onsets[i + 2] >= onsets[i] + lengths[i] - 1e-9


def test_make_trials_balanced_and_unique():
    utts = {f"id{s}": [f"id{s}/v/{u}.wav" for u in range(4)] for s in range(5)}
    trials = balanced_trials(utts, 40, np.random.default_rng(0))
    assert sum(t.label for t in trials) == 20 and len(trials) == 40
    assert len({(t.enroll, t.test) for t in trials}) == 40
    for t in trials:
        same = t.enroll.split("/")[0] == t.test.split("/")[0]
        assert same == (t.label == 1) and t.enroll != t.test
    few = balanced_trials(utts, 1000, np.random.default_rng(0))  # only 30 target pairs exist
    assert sum(t.label for t in few) == 30 and len(few) == 60
