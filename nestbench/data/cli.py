"""``nestbench data``: make the embedded corpus, import real corpora, check data.

::

    nestbench data synth --out DIR [--size tiny|small|default] [--seed N] [--workers N] [--force]
    nestbench data prepare librispeech SRC --out DIR [--part SPLIT=PART[,PART]] [--force]
    nestbench data prepare voxceleb SRC --out DIR [--trials LIST ...] [--dev-speakers N]
                                                 [--dev-trials N] [--seed N] [--force]
    nestbench data prepare slurp SRC --out DIR [--audio-dir DIR ...] [--skip-missing]
                                              [--no-synthetic] [--force]
    nestbench data prepare rttm SRC --out DIR [--split train|dev|test|NAME] [--force]

Every importer writes the layout of :mod:`nestbench.data.layout` (``DIR/<task>/<split>_...``),
so ``nestbench run --task <task> --data DIR`` reads its output.
    nestbench data check MANIFEST|DIR [--tolerance S] [--headers-only]
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from nestbench.errors import UserError, fail


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
    try:
        _report(fn(*args, **kwargs))
    except UserError as e:
        _fail(e)


_SRC = click.argument("src", type=click.Path(exists=True, file_okay=False, path_type=Path))
_OUT = click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data folder to write into (its <task>/ sub-folder).",
)
_FORCE = click.option("--force", is_flag=True, help="Replace split files that exist in DIR.")


def _parse_parts(values: tuple[str, ...]) -> dict[str, list[str]] | None:
    if not values:
        return None
    mapping: dict[str, list[str]] = {}
    for v in values:
        split, sep, parts = v.partition("=")
        if not sep or not split or not parts:
            raise click.BadParameter(
                f"{v!r}: expected SPLIT=PART[,PART...], e.g. train=train-clean-100,train-clean-360",
                param_hint="--part",
            )
        mapping.setdefault(split, []).extend(p for p in parts.split(",") if p)
    return mapping


@prepare.command()
@_SRC
@_OUT
@click.option(
    "--part",
    "parts",
    multiple=True,
    help="SPLIT=PART[,PART]: the LibriSpeech parts of a split (repeat per split). Default: "
    "train = train-*, dev = dev-clean, test-clean/test-other = themselves.",
)
@_FORCE
def librispeech(src: Path, out: Path, parts: tuple[str, ...], force: bool) -> None:
    """LibriSpeech: SRC holds its parts (train-clean-100/, dev-clean/, test-clean/, ...)."""
    from .importers import prepare_librispeech

    _run(prepare_librispeech, src, out, _parse_parts(parts), force)


@prepare.command()
@_SRC
@_OUT
@click.option(
    "--trials",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Trial list(s); the first is the test split. Default: the ones found in SRC.",
)
@click.option(
    "--dev-speakers",
    type=click.IntRange(min=2),
    default=None,
    help="Training speakers held out as the dev split [default: 5%, at least 2].",
)
@click.option(
    "--dev-trials",
    type=click.IntRange(min=2),
    default=2000,
    show_default=True,
    help="Trials of the dev split (half target).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the dev split.")
@_FORCE
def voxceleb(
    src: Path,
    out: Path,
    trials: tuple[str, ...],
    dev_speakers: int | None,
    dev_trials: int,
    seed: int,
    force: bool,
) -> None:
    """VoxCeleb: SRC holds wav/id*/<video>/*.wav (and trial lists)."""
    from .importers import prepare_voxceleb

    _run(prepare_voxceleb, src, out, list(trials) or None, dev_speakers, dev_trials, seed, force)


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
@click.option(
    "--synthetic/--no-synthetic",
    default=True,
    show_default=True,
    help="Add train_synthetic.jsonl to the training split.",
)
@_FORCE
def slurp(
    src: Path,
    out: Path,
    audio_dir: tuple[str, ...],
    skip_missing: bool,
    synthetic: bool,
    force: bool,
) -> None:
    """SLURP: SRC holds dataset/slurp/*.jsonl and audio/."""
    from .importers import prepare_slurp

    _run(prepare_slurp, src, out, list(audio_dir) or None, skip_missing, synthetic, force)


@prepare.command()
@_SRC
@_OUT
@click.option(
    "--split",
    default="test",
    show_default=True,
    help="The split these recordings are (train, dev, test, or an eval split's name).",
)
@_FORCE
def rttm(src: Path, out: Path, split: str, force: bool) -> None:
    """Diarization: SRC holds one split's recordings with RTTM (and UEM) files."""
    from .importers import prepare_rttm

    _run(prepare_rttm, src, out, split, force)


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
