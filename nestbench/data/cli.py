"""``nestbench data``: make the embedded corpus, import real corpora, check data.

::

    nestbench data synth --out DIR [--size tiny|small|default] [--seed N] [--workers N] [--force]
    nestbench data prepare librispeech SRC --out DIR
    nestbench data prepare voxceleb SRC --out DIR [--trials LIST ...]
    nestbench data prepare slurp SRC --out DIR [--audio-dir DIR ...] [--skip-missing]
    nestbench data prepare rttm SRC --out DIR [--split NAME]
    nestbench data check MANIFEST|DIR [--tolerance S] [--headers-only]
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from nestbench.errors import fail

from .manifest import ManifestError


def _fail(e: Exception) -> None:
    fail(e)


@click.group(name="data")
def data() -> None:
    """Speech data: the embedded corpus, importers for real corpora, checks."""


@data.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the corpus into (empty or missing).",
)
@click.option(
    "--size",
    type=click.Choice(["tiny", "small", "default"]),
    default="default",
    show_default=True,
    help="tiny: seconds, for tests; default: the benchmark (> 3 h).",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Same seed and size give byte-identical files.",
)
@click.option(
    "--workers",
    type=int,
    default=None,
    help="Processes to synthesise with (default: CPU count). Does not change output.",
)
@click.option("--force", is_flag=True, help="Replace the corpus files of a non-empty folder.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def synth(out: Path, size: str, seed: int, workers: int | None, force: bool, quiet: bool) -> None:
    """Synthesise the embedded corpus (ASR, SV, diarization, SLU) with eSpeak NG."""
    from .synth import CorpusExistsError, synthesize_corpus

    start = time.perf_counter()
    try:
        stats = synthesize_corpus(
            out, size=size, seed=seed, workers=workers, force=force, progress=not quiet
        )
    except (CorpusExistsError, ValueError) as e:
        _fail(e)
    click.echo(
        f"wrote {stats['total_files']} audio files, {stats['total_hours']:.2f} h, to "
        f"{out} in {time.perf_counter() - start:.0f} s; data card: {out / 'README.md'}"
    )


@data.group()
def prepare() -> None:
    """Import a real corpus from its own layout into manifests."""


def _report(written) -> None:
    items = written.items() if isinstance(written, dict) else [("manifest", written)]
    for name, path in items:
        click.echo(f"{name}: {path}")


def _run(fn, *args, **kwargs) -> None:
    from .importers.common import ImportError_

    try:
        _report(fn(*args, **kwargs))
    except (ManifestError, ImportError_) as e:
        _fail(e)


_SRC = click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the manifests.",
)


@prepare.command()
@_SRC
@_OUT
def librispeech(src: Path, out: Path) -> None:
    """LibriSpeech: SRC is a split (dev-clean/) or a folder of splits."""
    from .importers import prepare_librispeech

    _run(prepare_librispeech, src, out)


@prepare.command()
@_SRC
@_OUT
@click.option(
    "--trials",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trial list(s); default: the ones found in SRC.",
)
def voxceleb(src: Path, out: Path, trials: tuple[str, ...]) -> None:
    """VoxCeleb: SRC holds wav/id*/<video>/*.wav (and trial lists)."""
    from .importers import prepare_voxceleb

    _run(prepare_voxceleb, src, out, list(trials) or None)


@prepare.command()
@_SRC
@_OUT
@click.option(
    "--audio-dir",
    multiple=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder(s) with the recordings; default: SRC/audio/slurp_real, slurp_synth.",
)
@click.option("--skip-missing", is_flag=True, help="Leave out recordings whose file is missing.")
def slurp(src: Path, out: Path, audio_dir: tuple[str, ...], skip_missing: bool) -> None:
    """SLURP: SRC holds dataset/slurp/*.jsonl and audio/."""
    from .importers import prepare_slurp

    _run(prepare_slurp, src, out, list(audio_dir) or None, skip_missing)


@prepare.command()
@_SRC
@_OUT
@click.option("--split", default="all", show_default=True, help="Name of the manifest/split.")
def rttm(src: Path, out: Path, split: str) -> None:
    """Diarization: SRC holds recordings with RTTM (and UEM) files."""
    from .importers import prepare_rttm

    _run(prepare_rttm, src, out, split)


@data.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--tolerance",
    type=float,
    default=0.02,
    show_default=True,
    help="Seconds by which durations and segment ends may disagree with the audio.",
)
@click.option("--headers-only", is_flag=True, help="Read only audio headers (faster).")
def check(path: Path, tolerance: float, headers_only: bool) -> None:
    """Check a manifest, trial list, SLURP file, or every one in a folder; exit 1 on errors."""
    from .check import check_path

    try:
        report = check_path(path, tolerance=tolerance, read_audio=not headers_only)
    except ValueError as e:
        _fail(e)
    for p in report.problems:
        click.echo(str(p))
    click.echo(report.summary())
    if not report.ok:
        raise SystemExit(1)
