"""Audio for NEST pretraining: manifests -> chunks -> length-bucketed batches.

- :func:`load_records` reads JSON-lines manifests, drops records shorter than ``min_duration``
  and splits longer than ``max_duration`` into equal consecutive chunks (``offset`` and
  ``duration`` of the segment), so long recordings (diarization sessions) are used whole;
- :class:`AudioDataset` reads one record's audio (``nestbench.audio.load_item``);
- batches come from :class:`nestbench.sampler.BucketBatchSampler` (shared with task runs and the
  feature cache): shuffled per epoch from a seed, similar lengths together, dealt to DDP ranks;
- :class:`NoiseBank` gives each batch noise rows read from a noise manifest (random segments);
- :func:`collate` pads a batch into ``{"audio" [B, S], "audio_len" [B]}``
  (plus ``"noise"``, ``"noise_len"`` when noise is read from files).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path

import torch

from nestbench.audio import collate_audio, load_item
from nestbench.data.manifest import read_manifest
from nestbench.sampler import BucketBatchSampler

__all__ = [
    "AudioDataset",
    "BucketBatchSampler",
    "Collate",
    "NoiseBank",
    "check_audio",
    "load_records",
]


def load_records(
    manifests: Sequence[str | Path],
    min_duration: float = 1.0,
    max_duration: float | None = 60.0,
) -> list[dict]:
    """The records of ``manifests`` (each with an absolute ``audio_filepath``), chunked.

    Records shorter than ``min_duration`` seconds are dropped; records longer than
    ``max_duration`` become ``ceil(d / max_duration)`` equal consecutive segments (NeMo drops
    them instead). Raises FileNotFoundError naming a missing manifest, ValueError when nothing
    is left.
    """
    out: list[dict] = []
    for manifest in manifests:
        path = Path(manifest).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"pretraining manifest not found: {path}")
        for rec in read_manifest(path):
            dur = float(rec["duration"])
            if dur < min_duration:
                continue
            base = float(rec.get("offset") or 0.0)
            n = 1 if not max_duration or dur <= max_duration else math.ceil(dur / max_duration)
            for k in range(n):
                part = {"audio_filepath": rec["audio_filepath"], "duration": dur / n}
                if n > 1 or rec.get("offset") is not None:
                    part["offset"] = base + k * dur / n
                out.append(part)
    if not out:
        raise ValueError(
            f"no usable audio in {', '.join(map(str, manifests)) or '(no manifests)'} "
            f"(min_duration={min_duration})"
        )
    return out


def check_audio(records: Sequence[dict]) -> None:
    """Read every audio file's header once (``soundfile.info``), before training starts; raises
    AudioError naming the unreadable files (the first few, and how many)."""
    import soundfile as sf

    from nestbench.audio import AudioError

    bad = []
    for path in dict.fromkeys(r["audio_filepath"] for r in records):
        try:
            info = sf.info(str(path))
            if info.frames == 0:
                bad.append(f"{path} (no samples)")
        except (OSError, RuntimeError, sf.LibsndfileError) as e:
            bad.append(f"{path} ({' '.join(str(e).split())})")
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise AudioError(
            f"{len(bad)} audio file(s) of the pretraining manifests cannot be used: "
            f"{'; '.join(bad[:3])}{more}"
        )


class AudioDataset(torch.utils.data.Dataset):
    """Item i: ``(index, FloatTensor [S])`` audio of record i at 16 kHz."""

    def __init__(self, records: list[dict]):
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor]:
        return i, load_item(self.records[i])


class NoiseBank:
    """Noise from noise manifests: ``sample(lengths, rng) -> (noise [B, S], noise_len [B])``,
    each row a random segment of a random noise record (read from disk), at most the
    utterance's length."""

    def __init__(self, manifests: Sequence[str | Path]):
        self.records = load_records(manifests, min_duration=0.0, max_duration=None)

    def sample(self, lengths: torch.Tensor, rng: random.Random):
        rows = []
        for n in lengths.tolist():
            rec = dict(rng.choice(self.records))
            dur = float(rec["duration"])
            want = n / 16000
            if dur > want:
                rec["offset"] = float(rec.get("offset") or 0.0) + rng.uniform(0, dur - want)
                rec["duration"] = want
            rows.append(load_item(rec)[:n])
        return collate_audio(rows)


class Collate:
    """Pads ``(index, audio)`` items into a batch dict; adds file noise when a
    :class:`NoiseBank` is given (seeded from the batch's indices, so workers agree)."""

    def __init__(self, noise: NoiseBank | None = None, seed: int = 0):
        self.noise = noise
        self.seed = seed

    def __call__(self, items: list[tuple[int, torch.Tensor]]) -> dict[str, torch.Tensor]:
        index = [i for i, _ in items]
        audio, audio_len = collate_audio([w for _, w in items])
        batch = {"audio": audio, "audio_len": audio_len, "index": torch.tensor(index)}
        if self.noise is not None:
            rng = random.Random(hash((self.seed, *index)))
            batch["noise"], batch["noise_len"] = self.noise.sample(audio_len, rng)
        return batch
