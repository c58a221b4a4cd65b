"""Small speaker-verification folders for runner tests: tonal 'speakers' in noise.

Layout as the SV task reads it: train/dev/test manifests and dev/test VoxCeleb trial lists.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import soundfile as sf


def write_sv_folder(root: Path, splits: dict[str, list[tuple[int, np.ndarray]]]) -> Path:
    """Write ``{split: [(speaker, audio [S]), ...]}`` as the SV task reads it: ``<split>.json``
    manifests (``label`` = ``spkNN``) and every pair of a dev/test split as its trial list."""
    root.mkdir(parents=True, exist_ok=True)
    for split, utterances in splits.items():
        records, counts = [], {}
        for s, x in utterances:
            counts[s] = counts.get(s, -1) + 1
            rel = f"wav/{split}/spk{s:02d}/u{counts[s]}.wav"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / rel, x.astype(np.float32), 16000, subtype="PCM_16")
            records.append(
                {
                    "audio_filepath": rel,
                    "duration": round(x.size / 16000, 4),
                    "label": f"spk{s:02d}",
                }
            )
        (root / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in records))
        if split == "train":
            continue
        lines = []
        for a, b in itertools.combinations(records, 2):
            name = lambda r: r["audio_filepath"].split("/", 2)[2]  # noqa: E731
            lines.append(f"{int(a['label'] == b['label'])} {name(a)} {name(b)}")
        (root / f"{split}_trials.txt").write_text("\n".join(lines) + "\n")
    return root


def make_sv_folder(root: Path, train_speakers=6, eval_speakers=3, utts=4, seed=0) -> Path:
    """Each speaker is a fixed set of three partials; utterances vary in length, phase, noise."""
    rng = np.random.default_rng(seed)
    spk_id = itertools.count()

    def utterances(n_spk):
        out = []
        for _ in range(n_spk):
            s = next(spk_id)
            freqs = 150 + 90 * np.array([s % 5, 2 + s % 3, 4 + s % 7]) + 13 * s
            for _ in range(utts):
                t = np.arange(int(16000 * float(rng.uniform(0.6, 1.4)))) / 16000
                x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) / 3
                out.append((s, 0.3 * x + 0.02 * rng.standard_normal(t.size)))
        return out

    sizes = {"train": train_speakers, "dev": eval_speakers, "test": eval_speakers}
    return write_sv_folder(root, {split: utterances(n) for split, n in sizes.items()})


PARTIALS = 350.0 * 1.45 ** np.arange(7)  # 350 Hz .. 3.2 kHz


def make_nuisance_sv_folder(root: Path, train_speakers=12, eval_speakers=4, utts=5, seed=0) -> Path:
    """SV data on which an untrained head is near chance: a speaker is a faint constant pair of
    partials (from 7 frequencies; evaluation speakers have pairs no training speaker has), buried
    under what varies per utterance: loud random 'syllable' tones, noise level and gain."""
    rng = np.random.default_rng(seed)
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

    def speakers(lo: int, n: int) -> list[tuple[int, np.ndarray]]:
        return [(s, utterance(speaker_pairs[s])) for s in range(lo, lo + n) for _ in range(utts)]

    return write_sv_folder(
        root,
        {
            "train": speakers(0, train_speakers),
            "dev": speakers(train_speakers, eval_speakers),
            "test": speakers(train_speakers + eval_speakers, eval_speakers),
        },
    )


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
