"""Clean speech for NEST pretraining: fresh sentences by the embedded corpus's training speakers.

NEST computes its quantizer targets from clean speech and feeds the encoder an augmented copy.
The embedded corpus's own recordings carry their noise (5-30 dB SNR) and reverberation, so their
targets would hash noise; this module renders a separate pool, without noise or room, from the
same eSpeak voices:

- speakers: the corpus's ``train`` pool only (the same :func:`~.speakers.make_speakers` and
  :func:`~.synth.assign_pools` draw), so no dev, test or babble speaker is heard;
- sentences: drawn fresh (the corpus's sentence grammar and SLU command templates), each used
  once, and never one the corpus speaks in any dataset or split (``sentences.json``);
- audio: 1-3 sentences with pauses, 0.05-0.4 s of digital silence around them, a level of -35 to
  -18 dBFS; int16 WAV.

Layout under ``<corpus>/pretrain/clean-<H>h-seed<S>-v<V>/``::

    pool.json                  what was made (hours, counts, speakers); written last
    train_manifest.json        pretraining audio (audio_filepath, duration, text, sentences,
                               speaker)
    val_manifest.json          held-out utterances of the same speakers (validation loss)
    eval_manifest.json         clean renders of the corpus's *test* speakers, fresh sentences:
                               masked-token accuracy on unseen voices; never pretrained on
    wav/<speaker>/<k>.wav      the audio

Deterministic for a corpus, size and seed: sentences are planned in this process, each
utterance is synthesised from its own generator ``(seed, 8, part, index)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import effects
from .manifest import atomic_write_text, read_manifest, write_manifest
from .slu_templates import sample_command
from .speakers import make_speakers
from .synth import (
    GENERATOR_VERSION,
    SAMPLE_RATE,
    SIZES,
    _Context,
    _rng,
    _run_jobs,
    _write_wav,
    asr_speaker_id,
    assign_pools,
    speak_sentences,
)
from .text import SentenceGenerator, normalize_sentence

POOL_VERSION = "1"
_POOL = 8  # random stream code (synth uses 1-7)
PARTS = ("train", "val", "eval")
#: utterances per speaker of ``val`` (training speakers) and ``eval`` (test speakers)
HELD_OUT_PER_SPEAKER = {"val": 2, "eval": 10}
MEAN_UTTERANCE_S = 5.6  # measured mean of the rendered utterances, to plan the hours


class PoolError(RuntimeError):
    """The pool cannot be made from this corpus (e.g. no ``sentences.json``)."""


def pool_dir(corpus: str | Path, hours: float, seed: int = 0) -> Path:
    """Where the pool of ``hours`` for ``corpus`` lives (whether or not it exists)."""
    return Path(corpus) / "pretrain" / f"clean-{hours:g}h-seed{seed}-v{POOL_VERSION}"


def corpus_sentences(corpus: str | Path) -> dict[str, dict[str, list[str]]]:
    """``sentences.json`` of a corpus: every normalised sentence per dataset and split."""
    path = Path(corpus) / "sentences.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PoolError(
            f"{path} is missing: the corpus was made by an older generator; regenerate it "
            f"(nestbench data synth --force, generator {GENERATOR_VERSION})"
        ) from None


def _corpus_info(corpus: Path) -> tuple[str, int]:
    stats = json.loads((corpus / "corpus.json").read_text())
    return str(stats["size"]), int(stats["seed"])


def plan_sentences(
    count: int, forbidden: set[str], rng: np.random.Generator, command_share: float = 0.2
) -> list[str]:
    """``count`` distinct sentences (eSpeak text) whose normalised form is not in ``forbidden``:
    grammar sentences, and SLU commands with probability ``command_share``."""
    gen = SentenceGenerator(min_words=4, max_words=20)
    seen = set(forbidden)
    out: list[str] = []
    while len(out) < count:
        speech = sample_command(rng)[2] if rng.random() < command_share else gen.utterance(rng)[1]
        key = normalize_sentence(speech)
        if key and key not in seen:
            seen.add(key)
            out.append(speech)
    return out


def _pool_job(job: dict) -> dict:
    from .synth import _CTX as ctx

    records = []
    for item in job["items"]:
        spk = ctx.speakers[item["speaker"]]
        rng = _rng(ctx.seed, _POOL, PARTS.index(item["part"]), item["index"])
        clean = speak_sentences(spk, item["texts"], rng, gap=(0.15, 0.5))
        clean = clean[: _speech_end(clean)]  # it ends on a pause: a fresh one below
        x = np.concatenate([np.zeros(_pad(rng)), clean, np.zeros(_pad(rng))])
        power = effects.active_power(x)
        audio = effects.to_int16(effects.normalize_level(x, rng.uniform(-35.0, -18.0), power))
        path = Path(ctx.out, item["file"])
        dur = _write_wav(path, audio)
        sentences = [normalize_sentence(t) for t in item["texts"]]
        records.append(
            {
                "audio_filepath": item["final"],
                "duration": dur,
                "text": " ".join(sentences),
                "sentences": sentences,
                "speaker": asr_speaker_id(spk),
            }
        )
    return {"records": records}


def _pad(rng: np.random.Generator) -> int:
    return int(rng.uniform(0.05, 0.4) * SAMPLE_RATE)


def _speech_end(x: np.ndarray) -> int:
    nz = np.flatnonzero(x)
    return int(nz[-1]) + 1 if len(nz) else 0


def _plan(corpus: Path, hours: float, seed: int, final: Path):
    """(corpus seed, size config, the planned utterances: part, index, speaker, texts, paths)."""
    size, corpus_seed = _corpus_info(corpus)
    cfg = SIZES[size]
    pools = assign_pools(cfg.speakers, cfg.babble_speakers, corpus_seed)
    forbidden = {
        s for splits in corpus_sentences(corpus).values() for v in splits.values() for s in v
    }
    rng = _rng(seed, _POOL, 99)
    train_spk, test_spk = pools["train"], pools["test"]
    n_train = max(len(train_spk), round(hours * 3600 / MEAN_UTTERANCE_S))
    counts = {
        "train": n_train,
        "val": HELD_OUT_PER_SPEAKER["val"] * len(train_spk),
        "eval": HELD_OUT_PER_SPEAKER["eval"] * len(test_spk),
    }
    items = []
    for part in PARTS:
        speakers = test_spk if part == "eval" else train_spk
        n = counts[part]
        per_utt = rng.choice([1, 2, 3], size=n, p=[0.55, 0.3, 0.15])
        texts = plan_sentences(int(per_utt.sum()), forbidden, rng)
        forbidden.update(normalize_sentence(t) for t in texts)  # each sentence used once
        pos = 0
        for i in range(n):
            spk = speakers[i % len(speakers)]
            sid = str(10000 + spk)  # the corpus's id (synth.asr_speaker_id)
            rel = f"wav/{sid}/{part}-{i:06d}.wav"
            items.append(
                {
                    "part": part,
                    "index": i,
                    "speaker": spk,
                    "texts": texts[pos : pos + int(per_utt[i])],
                    "file": rel,
                    "final": str(final / rel),
                }
            )
            pos += int(per_utt[i])
    return corpus_seed, cfg, items


def make_pool(
    corpus: str | Path,
    hours: float,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The pool folder for ``corpus`` (see the module docstring), made first if needed
    (under a lock, into a partial folder renamed when complete). Raises PoolError."""
    from .embedded import _locked, build_then_replace

    corpus = Path(corpus).resolve()
    if hours <= 0:
        raise PoolError(f"pretraining pool hours must be > 0, got {hours}")
    final = pool_dir(corpus, hours, seed)
    if (final / "pool.json").is_file():
        return final
    with _locked(final.with_name(final.name + ".lock")):
        if (final / "pool.json").is_file():
            return final
        corpus_seed, cfg, items = _plan(corpus, hours, seed, final)
        speakers = make_speakers(sum(cfg.speakers) + cfg.babble_speakers, corpus_seed)
        build_then_replace(
            final,
            lambda partial: _synthesize(
                partial, corpus, hours, seed, cfg, speakers, items, workers, progress
            ),
        )
    return final


def _synthesize(
    partial: Path, corpus: Path, hours, seed, cfg, speakers, items, workers, progress
) -> None:
    """Render the planned ``items`` into ``partial``: wavs, the three manifests, pool.json."""
    ctx = _Context(out=str(partial), seed=seed, size=cfg, speakers=speakers, bank=[])
    jobs = [
        {"items": items[i : i + 16], "weight": len(items[i : i + 16])}
        for i in range(0, len(items), 16)
    ]
    desc = f"nestbench pretraining pool ({hours:g} h)"
    results = _run_jobs(jobs, ctx, workers, progress, desc, _pool_job)
    records = [r for res in results for r in res["records"]]
    stats = {"version": POOL_VERSION, "corpus": str(corpus), "seed": seed, "parts": {}}
    for part in PARTS:
        recs = [r for r, it in zip(records, items, strict=True) if it["part"] == part]
        write_manifest(partial / f"{part}_manifest.json", recs)
        stats["parts"][part] = {
            "utterances": len(recs),
            "hours": round(sum(r["duration"] for r in recs) / 3600, 4),
            "speakers": len({r["speaker"] for r in recs}),
            "speaker_pool": "test" if part == "eval" else "train",
            "sentences": sum(len(it["texts"]) for it in items if it["part"] == part),
        }
    atomic_write_text(partial / "pool.json", json.dumps(stats, indent=2) + "\n")


def pool_manifest(pool: str | Path, part: str) -> Path:
    """``<pool>/<part>_manifest.json`` (``train``, ``val`` or ``eval``)."""
    if part not in PARTS:
        raise ValueError(f"pool part must be one of {', '.join(PARTS)}, got {part!r}")
    return Path(pool) / f"{part}_manifest.json"


def pool_records(pool: str | Path, part: str) -> list[dict]:
    """The records of one part of a pool."""
    return list(read_manifest(pool_manifest(pool, part)))
