"""A small speaker-verification folder for runner tests: tonal 'speakers' in noise.

Each speaker is a fixed set of three partials; utterances vary in length, phase and noise. Layout
as the SV task reads it: train/dev/test manifests and dev/test VoxCeleb trial lists.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import soundfile as sf


def make_sv_folder(root: Path, train_speakers=6, eval_speakers=3, utts=4, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    spk_id = itertools.count()

    def utterances(split, n_spk):
        records = []
        for _ in range(n_spk):
            s = next(spk_id)
            freqs = 150 + 90 * np.array([s % 5, 2 + s % 3, 4 + s % 7]) + 13 * s
            for u in range(utts):
                dur = float(rng.uniform(0.6, 1.4))
                t = np.arange(int(16000 * dur)) / 16000
                x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) / 3
                x = 0.3 * x + 0.02 * rng.standard_normal(t.size)
                rel = f"wav/{split}/spk{s:02d}/u{u}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, x.astype(np.float32), 16000, subtype="PCM_16")
                records.append(
                    {
                        "audio_filepath": rel,
                        "duration": round(t.size / 16000, 4),
                        "label": f"spk{s:02d}",
                    }
                )
        (root / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in records))
        return records

    utterances("train", train_speakers)
    for split in ("dev", "test"):
        recs = utterances(split, eval_speakers)
        lines = []
        for a, b in itertools.combinations(recs, 2):
            name = lambda r: r["audio_filepath"].split("/", 2)[2]  # noqa: E731
            lines.append(f"{int(a['label'] == b['label'])} {name(a)} {name(b)}")
        (root / f"{split}_trials.txt").write_text("\n".join(lines) + "\n")
    return root


PARTIALS = 350.0 * 1.45 ** np.arange(7)  # 350 Hz .. 3.2 kHz


def make_nuisance_sv_folder(root: Path, train_speakers=12, eval_speakers=4, utts=5, seed=0) -> Path:
    """SV data on which an untrained head is near chance: a speaker is a faint constant pair of
    partials (from 7 frequencies; evaluation speakers have pairs no training speaker has), buried
    under what varies per utterance: loud random 'syllable' tones, noise level and gain."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    pairs = list(itertools.combinations(range(len(PARTIALS)), 2))
    order = rng.permutation(len(pairs))
    n_eval = 2 * eval_speakers
    speaker_pairs = [pairs[i] for i in order[: train_speakers + n_eval]]

    def utterance(pair) -> np.ndarray:
        dur = float(rng.uniform(1.5, 2.5))
        n = int(16000 * dur)
        t = np.arange(n) / 16000
        x = sum(0.02 * np.sin(2 * np.pi * PARTIALS[k] * t + rng.uniform(0, 6)) for k in pair)
        pos = 0
        while pos < n:
            length = int(16000 * rng.uniform(0.08, 0.2))
            f = rng.uniform(250, 4000)
            seg = np.arange(min(length, n - pos)) / 16000
            x[pos : pos + seg.size] += rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * f * seg)
            pos += seg.size + int(16000 * rng.uniform(0.0, 0.1))
        x = x + rng.uniform(0.005, 0.04) * rng.standard_normal(n)
        return rng.uniform(0.3, 1.0) * x

    def split_records(split, speakers):
        records = []
        for s, pair in speakers:
            for u in range(utts):
                rel = f"wav/{split}/spk{s:02d}/u{u}.wav"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                x = utterance(pair)
                sf.write(root / rel, x.astype(np.float32), 16000, subtype="PCM_16")
                records.append(
                    {
                        "audio_filepath": rel,
                        "duration": round(x.size / 16000, 4),
                        "label": f"spk{s:02d}",
                    }
                )
        (root / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in records))
        return records

    indexed = list(enumerate(speaker_pairs))
    split_records("train", indexed[:train_speakers])
    for k, split in enumerate(("dev", "test")):
        lo = train_speakers + k * eval_speakers
        recs = split_records(split, indexed[lo : lo + eval_speakers])
        lines = []
        for a, b in itertools.combinations(recs, 2):
            name = lambda r: r["audio_filepath"].split("/", 2)[2]  # noqa: E731
            lines.append(f"{int(a['label'] == b['label'])} {name(a)} {name(b)}")
        (root / f"{split}_trials.txt").write_text("\n".join(lines) + "\n")
    return root


SMALL_SV = [
    "sv.channels=[32,32,32,32,64]",
    "sv.attention_channels=16",
    "sv.embedding_dim=16",
    "sv.bootstrap=50",
    "sv.crop_seconds=0.5",
    "sv.cohort_top_n=3",
    "trainer.batch_size=8",
    "trainer.progress=false",
    "trainer.max_epochs=3",
    "trainer.patience=10",
]
