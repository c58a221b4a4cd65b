"""The feature cache: every layer of every utterance computed once, reused by frozen runs.

Layout: ``<root>/<encoder-key>/<aa>/<item-key>.feat`` where

- ``encoder-key`` hashes the encoder's ``identity()`` (class, config, a digest of its weights),
  the selected layers and the preprocessing description, so a changed encoder or setting gets a
  fresh folder (``identity.json`` in it says what it holds);
- ``item-key`` hashes the audio file (resolved path, size, modification time) and the segment
  (offset, duration), so an edited file is recomputed.

Each entry is a small header (magic, shape, CRC-32 of the payload) followed by float16 values
[N, T, D] that are memory-mapped on read (and, up to ``memory_mb``, kept in memory for later
epochs). Writes go to a temporary file renamed into place, so an interrupted run leaves no half
entry; an entry whose header, size or checksum is wrong is reported, deleted and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from nestbench.audio import AudioError, collate_audio, load_item, segment_reader
from nestbench.encoders.windowed import Chunking, encode_chunks
from nestbench.lock import file_lock
from nestbench.sampler import duration_batches

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
_MAGIC = b"NBFEAT01"
_HEADER = struct.Struct("<8sIIIII")  # magic, ndim(=3), N, T, D, crc32
_F16_MAX = float(np.finfo(np.float16).max)


def default_cache_root() -> Path:
    """``$NESTBENCH_CACHE`` or ``$XDG_CACHE_HOME/nestbench`` (default ``~/.cache/nestbench``)."""
    if os.environ.get("NESTBENCH_CACHE"):
        return Path(os.environ["NESTBENCH_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nestbench"


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _seconds(item: dict) -> float:
    return float(item.get("duration") or 0.0)


def audio_key(item: dict) -> str:
    """Key of one audio segment: the file's resolved path, size and mtime, offset and duration."""
    path = Path(item["audio_filepath"]).resolve()
    st = path.stat()
    return _digest(
        [
            str(path),
            st.st_size,
            st.st_mtime_ns,
            float(item.get("offset") or 0.0),
            item.get("duration"),
        ]
    )


class DamagedEntry(Exception):
    pass


def _read_entry(path: Path, verify: bool) -> np.ndarray:
    """Memory-map an entry as float16 [N, T, D]; raises DamagedEntry when it is not whole."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(_HEADER.size)
    if len(head) != _HEADER.size:
        raise DamagedEntry("truncated header")
    magic, ndim, n, t, d, crc = _HEADER.unpack(head)
    if magic != _MAGIC or ndim != 3:
        raise DamagedEntry("bad header")
    if size != _HEADER.size + 2 * n * t * d:
        raise DamagedEntry(f"size {size} does not match shape [{n}, {t}, {d}]")
    data = np.memmap(path, dtype=np.float16, mode="r", offset=_HEADER.size, shape=(n, t, d))
    if verify and zlib.crc32(data) != crc:
        raise DamagedEntry("checksum mismatch")
    return data


def _write_entry(path: Path, values: np.ndarray) -> None:
    values = np.ascontiguousarray(values, dtype=np.float16)
    header = _HEADER.pack(_MAGIC, 3, *values.shape, zlib.crc32(values))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".feat")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(values.tobytes())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class EntryWriter:
    """Writes one entry chunk by chunk along T, so a long recording's features never sit in
    memory whole. Each layer's frames go to a temporary file as they come; on a clean exit from
    the ``with`` block they are joined layer after layer ([N, T, D]) behind the header
    (shape, CRC-32) and the entry is renamed into place. On an error nothing is left behind."""

    def __init__(self, path: Path):
        self.path = path
        self.shape: tuple[int, int] | None = None  # (N, D)
        self.frames = 0
        self.parts: list = []

    def __enter__(self) -> EntryWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def append(self, values: np.ndarray) -> None:
        """Add the next frames: float [N, t, D] (clipped to the float16 range)."""
        values = np.ascontiguousarray(np.clip(values, -_F16_MAX, _F16_MAX), dtype=np.float16)
        if self.shape is None:
            self.shape = (values.shape[0], values.shape[2])
            self.parts = [
                tempfile.TemporaryFile(dir=self.path.parent) for _ in range(self.shape[0])
            ]
        elif (values.shape[0], values.shape[2]) != self.shape:
            raise ValueError(
                f"chunk of shape {values.shape} after chunks of [N, *, D] {self.shape}"
            )
        for part, layer in zip(self.parts, values, strict=True):
            part.write(layer.tobytes())
        self.frames += values.shape[1]

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._finish()
        finally:
            for part in self.parts:
                part.close()

    def _finish(self) -> None:
        if self.shape is None:
            raise ValueError(f"{self.path}: an entry needs at least one chunk of frames")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-", suffix=".feat")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * _HEADER.size)
                crc = 0
                for part in self.parts:
                    part.seek(0)
                    while block := part.read(1 << 24):
                        crc = zlib.crc32(block, crc)
                        f.write(block)
                f.seek(0)
                f.write(_HEADER.pack(_MAGIC, 3, self.shape[0], self.frames, self.shape[1], crc))
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


class FeatureCache:
    """Cached hidden states of one encoder (with one layer selection and preprocessing).

    Args:
        root: cache root (see :func:`default_cache_root`).
        identity: the encoder's ``identity()`` dict.
        layers: indices of the hidden states to keep (None: all L+1).
        preprocessing: anything else that changes the features (sample rate, ...).
        chunking: how recordings longer than one window are encoded
            (:mod:`nestbench.encoders.windowed`); it is part of the key of those entries only,
            so changing it recomputes just them.
        memory_mb: entries :meth:`load` reads are also kept in memory up to this many MiB, so
            later epochs read no file (0: always memory-mapped from disk). :meth:`build` and
            :meth:`missing` always check the files, and a build forgets what is held.
    """

    def __init__(
        self,
        root: str | Path,
        identity: dict,
        layers: Sequence[int] | None = None,
        preprocessing: dict | None = None,
        chunking: Chunking | None = None,
        memory_mb: float = 0.0,
    ):
        self.chunking = chunking
        self.memory_bytes = int(float(memory_mb) * 2**20)
        self._held: dict[tuple, np.ndarray] = {}  # item id -> its entry, read into memory
        self.held_bytes = 0
        self.layers = None if layers is None else [int(i) for i in layers]
        description = {
            "format": FORMAT_VERSION,
            "encoder": identity,
            "layers": self.layers,
            "preprocessing": preprocessing or {},
        }
        self.key = _digest(description)
        self.dir = Path(root) / self.key
        self.dir.mkdir(parents=True, exist_ok=True)
        ident = self.dir / "identity.json"
        if not ident.exists():
            tmp = ident.with_suffix(".tmp")
            tmp.write_text(json.dumps(description, indent=2, sort_keys=True, default=str))
            os.replace(tmp, ident)
        self._verified: set[Path] = set()
        self.rebuilt = 0
        self.last_fill = {"items": 0, "audio_seconds": 0.0}

    def chunked(self, item: dict) -> bool:
        """Whether ``item`` is long enough to be encoded in windows."""
        return self.chunking is not None and self.chunking.applies(_seconds(item))

    def entry_path(self, item: dict) -> Path:
        key = audio_key(item)
        if self.chunked(item):
            key = _digest([key, self.chunking.describe()])
        return self.dir / key[:2] / f"{key}.feat"

    @staticmethod
    def _item_id(item: dict) -> tuple:
        return (item["audio_filepath"], item.get("offset"), item.get("duration"))

    def load(self, item: dict) -> np.ndarray | None:
        """Cached float16 [N, T, D] for ``item`` (read-only: held in memory while ``memory_mb``
        allows, memory-mapped otherwise), or None when absent or damaged.

        A damaged entry is logged and deleted, so the next :meth:`build` recomputes it.
        """
        key = self._item_id(item)
        held = self._held.get(key)
        if held is not None:
            return held
        data = self._load_file(item)
        if data is not None and self.held_bytes + data.nbytes <= self.memory_bytes:
            data = np.array(data)  # out of the memory map, into this process's memory
            data.flags.writeable = False
            self._held[key] = data
            self.held_bytes += data.nbytes
        return data

    def forget(self) -> None:
        """Drop the entries held in memory (the files stay)."""
        self._held.clear()
        self.held_bytes = 0

    def _drop(self, item: dict) -> None:
        held = self._held.pop(self._item_id(item), None)
        if held is not None:
            self.held_bytes -= held.nbytes

    def _load_file(self, item: dict) -> np.ndarray | None:
        path = self.entry_path(item)
        if not path.exists():
            return None
        try:
            data = _read_entry(path, verify=path not in self._verified)
        except (DamagedEntry, ValueError, OSError) as e:
            log.warning(
                "feature cache entry %s for %s is damaged (%s): recomputing it",
                path,
                item["audio_filepath"],
                e,
            )
            path.unlink(missing_ok=True)
            self.rebuilt += 1
            return None
        self._verified.add(path)
        return data

    def store(self, item: dict, hidden: np.ndarray) -> None:
        """Write float16 [N, T, D] for ``item`` atomically (values clipped to the float16 range)."""
        self._verified.discard(self.entry_path(item))
        self._drop(item)
        _write_entry(self.entry_path(item), np.clip(hidden, -_F16_MAX, _F16_MAX))

    def missing(self, items: Iterable[dict]) -> list[dict]:
        """The items without a whole entry (checks, and removes, damaged ones)."""
        return [it for it in items if self._load_file(it) is None]

    @torch.inference_mode()
    def build(
        self,
        items: Sequence[dict],
        encoder,
        device: str | torch.device = "cpu",
        batch_seconds: float = 160.0,
        sample_rate: int = 16000,
        progress: bool = True,
    ) -> int:
        """Compute and store the entries of ``items`` that are missing; returns how many.

        The encoder runs in eval mode without gradients over batches of similar length holding at
        most ``batch_seconds`` of padded audio. Processes filling the same items (the runs of a
        sweep that differ only in seed or head) take turns under a file lock, so the later ones
        find the entries made and compute nothing. ``last_fill`` holds what this call computed
        (``items`` and their ``audio_seconds``).
        """
        self.forget()  # what is held may predate an edit of its audio: read the files again
        unique = {self.entry_path(it): it for it in items}  # an item listed twice is computed once
        self.last_fill = {"items": 0, "audio_seconds": 0.0}
        if not self.missing(unique.values()):
            return 0
        name = _digest(sorted(str(p) for p in unique))[:16]
        with file_lock(self.dir / f".fill-{name}.lock"):
            todo = self.missing(unique.values())
            if todo:
                self._compute(todo, encoder, device, batch_seconds, sample_rate, progress)
        self.last_fill = {"items": len(todo), "audio_seconds": sum(map(_seconds, todo))}
        return len(todo)

    def _compute(self, todo, encoder, device, batch_seconds, sample_rate, progress) -> None:
        was_training = encoder.training
        encoder.eval()
        long = [it for it in todo if self.chunked(it)]
        short = [it for it in todo if not self.chunked(it)]
        durations = [_seconds(it) for it in short]
        order = sorted(range(len(short)), key=lambda i: -durations[i])
        batches = [
            [short[i] for i in b]
            for b in duration_batches(durations, order, batch_seconds=batch_seconds)
        ]
        bar = tqdm(
            total=len(todo),
            desc=f"caching features ({self.key[:8]})",
            unit="utt",
            disable=not progress,
        )
        try:
            for item in long:
                self._build_chunked(item, encoder, device, batch_seconds, sample_rate)
                bar.update(1)
            for batch in batches:
                wavs = [load_item(it, sample_rate) for it in batch]
                wav, lens = collate_audio(wavs)
                out = encoder(wav.to(device), lens.to(device))
                stacked = torch.stack(self._select(out.hidden_states), dim=1).float().cpu()
                for b, it in enumerate(batch):
                    n = int(out.lengths[b])
                    if n < 1:
                        raise AudioError(
                            f"{it['audio_filepath']}: {lens[b] / sample_rate:.3f} s of audio "
                            "give the encoder no output frame (too short for it)"
                        )
                    self.store(it, stacked[b, :, :n].numpy())  # [N, T, D]
                bar.update(len(batch))
        finally:
            bar.close()
            encoder.train(was_training)

    def _select(self, states: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        return states if self.layers is None else tuple(states[i] for i in self.layers)

    def _build_chunked(self, item, encoder, device, batch_seconds: float, sample_rate: int):
        """Encode a long ``item`` in windows, streaming each chunk's frames to its entry."""
        read, num_samples = segment_reader(item, sample_rate)
        self._verified.discard(self.entry_path(item))
        self._drop(item)
        with EntryWriter(self.entry_path(item)) as writer:
            for states in encode_chunks(
                encoder, read, num_samples, self.chunking, sample_rate, device, batch_seconds
            ):
                writer.append(torch.stack(self._select(states)).float().cpu().numpy())
