"""Audio input: read any file soundfile reads as 16 kHz mono float32.

Resampling (``torchaudio.functional.resample``) and downmixing each emit a warning, so a user
knows their corpus is not in the expected format. Unreadable, empty or non-finite audio raises
:class:`AudioError` naming the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from nestbench.errors import UserError

SAMPLE_RATE = 16000


class AudioError(UserError):
    """Audio that cannot be used: unreadable, empty, or with NaN/Inf samples."""


class AudioFormatWarning(UserWarning):
    """Audio was converted (resampled or downmixed) on load."""


def load_audio(
    path: str | Path,
    sample_rate: int = SAMPLE_RATE,
    offset: float = 0.0,
    duration: float | None = None,
) -> torch.Tensor:
    """Read an audio file as mono float32 at ``sample_rate``.

    Args:
        path: any file soundfile reads (wav, flac, ogg, ...).
        sample_rate: target rate; other rates are resampled with a warning.
        offset: start, in seconds, of the segment to read.
        duration: length, in seconds, of the segment to read (None: to the end).

    Returns:
        FloatTensor [S], values as soundfile gives them (about -1..1).
    """
    path = Path(path)
    try:
        info = sf.info(str(path))
        start = int(round(offset * info.samplerate))
        frames = -1 if duration is None else int(round(duration * info.samplerate))
        data, sr = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if data.shape[0] == 0:
        what = (
            "is empty (0 samples)"
            if offset == 0 and duration is None
            else (f"has no samples in the segment offset={offset} duration={duration}")
        )
        raise AudioError(f"{path}: audio {what}")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).any(axis=1).sum())
        raise AudioError(f"{path}: audio has {bad} non-finite (NaN or Inf) samples")
    wav = torch.from_numpy(data)
    if wav.shape[1] > 1:
        warnings.warn(
            f"{path}: {wav.shape[1]} channels, downmixed to mono by averaging",
            AudioFormatWarning,
            stacklevel=2,
        )
        wav = wav.mean(dim=1)
    else:
        wav = wav[:, 0]
    if sr != sample_rate:
        warnings.warn(
            f"{path}: sample rate {sr} Hz, resampled to {sample_rate} Hz",
            AudioFormatWarning,
            stacklevel=2,
        )
        wav = AF.resample(wav, sr, sample_rate)
    return wav.contiguous()


def collate_audio(wavs: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad 1-D waveforms into a batch.

    Returns:
        wav: FloatTensor [B, S_max]; wav_lens: LongTensor [B].
    """
    lens = torch.tensor([w.shape[0] for w in wavs], dtype=torch.long)
    out = torch.zeros(len(wavs), int(lens.max()) if len(wavs) else 0)
    for i, w in enumerate(wavs):
        out[i, : w.shape[0]] = w
    return out, lens


#: How far decoded audio may fall short of (or exceed) the record's ``duration``: seconds, plus
#: a fraction of the duration (rounded manifest durations pass, truncated files do not).
DURATION_TOLERANCE = (0.1, 0.01)


def load_item(item: dict, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """Audio of one manifest record: the whole file, or the segment its ``offset`` (seconds)
    and ``duration`` select when the record has an ``offset`` field. Returns FloatTensor [S].

    Raises AudioError naming the file when the decoded audio is shorter or longer than the
    record's ``duration`` says (beyond :data:`DURATION_TOLERANCE`): a truncated or replaced file.
    """
    if item.get("offset") is None:
        wav = load_audio(item["audio_filepath"], sample_rate)
    else:
        wav = load_audio(
            item["audio_filepath"], sample_rate, float(item["offset"]), item.get("duration")
        )
    _check_duration(item, wav.shape[0] / sample_rate)
    return wav


def _check_duration(item: dict, got: float) -> None:
    expected = item.get("duration")
    if expected is None:
        return
    secs, frac = DURATION_TOLERANCE
    if abs(got - float(expected)) > secs + frac * float(expected):
        where = "" if item.get("offset") is None else f" from offset {float(item['offset']):g} s"
        raise AudioError(
            f"{item['audio_filepath']}: the manifest says {float(expected):.3f} s{where}, "
            f"the audio has {got:.3f} s (a truncated or replaced file?)"
        )


def segment_reader(
    item: dict, sample_rate: int = SAMPLE_RATE
) -> tuple[Callable[[int, int], torch.Tensor], int]:
    """Read a record's audio piece by piece (a long recording never loaded whole).

    Returns:
        ``read(start, stop)`` -> FloatTensor [stop - start] (samples at ``sample_rate`` from the
        record's start), and the record's length in samples (from the file's header, checked
        against the manifest's ``duration`` as :func:`load_item` does).

    Raises:
        AudioError: the file cannot be read, its length disagrees with the manifest, or a piece
        comes back short (the file is shorter than its header says).
    """
    path = item["audio_filepath"]
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    base = float(item.get("offset") or 0.0)
    available = max(0.0, info.frames / info.samplerate - base)
    seconds = available if item.get("duration") is None else min(available, float(item["duration"]))
    _check_duration(item, seconds)
    if seconds <= 0:
        raise AudioError(f"{path}: audio has no samples from offset {base:g} s")

    def read(start: int, stop: int) -> torch.Tensor:
        wav = load_audio(
            path, sample_rate, base + start / sample_rate, (stop - start) / sample_rate
        )
        want = stop - start
        if wav.shape[0] < want - max(2, want // 1000):
            raise AudioError(
                f"{path}: {wav.shape[0]} samples where {want} were expected from "
                f"{base + start / sample_rate:.3f} s (a truncated file?)"
            )
        if wav.shape[0] != want:  # resampling may give a sample more or less
            wav = torch.nn.functional.pad(wav[:want], (0, max(0, want - wav.shape[0])))
        return wav

    return read, int(round(seconds * sample_rate))
