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
