"""The ``nestbench`` command."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from nestbench import __version__
from nestbench.errors import USER_ERRORS, fail


class Group(click.Group):
    """Prints an error the user caused as one ``Error: ...`` line and exits 1 (``--debug`` or
    ``NESTBENCH_DEBUG=1``: the traceback instead)."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except USER_ERRORS as e:
            fail(e)


def _set_debug(ctx, param, value: bool) -> None:
    from nestbench import errors

    errors.DEBUG = bool(value)


@click.group(cls=Group)
@click.version_option(__version__, prog_name="nestbench")
@click.option(
    "--debug",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_set_debug,
    help="Show the traceback of an error instead of one line (also NESTBENCH_DEBUG=1).",
)
def main() -> None:
    """Evaluate self-supervised speech encoders on downstream speech tasks."""


@main.group()
def encoders() -> None:
    """List encoders and check that an encoder follows the contract."""


@encoders.command("list")
def encoders_list() -> None:
    """List the registered encoders (built-in and entry points)."""
    from nestbench.encoders import available_encoders

    regs = available_encoders()
    width = max(len(n) for n in regs)
    for name, reg in sorted(regs.items()):
        click.echo(f"{name:<{width}}  {reg.description}")
    forms = [
        ("hf:PATH", "a local transformers folder (Wav2Vec2, HuBERT, WavLM, Data2VecAudio)"),
        ("s3prl:NAME", "an s3prl upstream from a local checkpoint (encoder.kwargs.ckpt=PATH)"),
        ("PATH", "a .nemo / .ckpt / state-dict file of a NEST or FastConformer"),
        ("module:callable", "any factory returning an encoder"),
    ]
    click.echo("\nSpec forms:")
    for form, what in forms:
        click.echo(f"{form:<{width}}  {what}")


@encoders.command("check")
@click.argument("spec")
@click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    default=None,
    help="Local weights file for encoders that take one (wav2vec2-base, ...).",
)
@click.option("--device", default="cpu", show_default=True, help="torch device to run on.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random test audio.")
@click.option(
    "--atol",
    default=1e-3,
    show_default=True,
    help="Relative tolerance of the padding-invariance check.",
)
def encoders_check(spec: str, weights: str | None, device: str, seed: int, atol: float) -> None:
    """Check that encoder SPEC follows the Encoder contract; exit 1 if a check fails."""
    from nestbench.encoders import EncoderSpecError, load_encoder
    from nestbench.encoders.check import check_encoder, format_results

    kwargs = {"weights": weights} if weights else {}
    try:
        encoder = load_encoder(spec, **kwargs)
    except (EncoderSpecError, ValueError, TypeError) as e:
        fail(e)
    results = check_encoder(encoder, seed=seed, device=device, atol=atol)
    click.echo(format_results(spec, results))
    if not all(r.ok for r in results):
        sys.exit(1)


def _format_metric(score: dict) -> str:
    value = score["value"]
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    if "ci95" in score:
        text += f"  [{score['ci95'][0]:.3f}, {score['ci95'][1]:.3f}]"
    return text


def metrics_table(result) -> str:
    """A short plain-text table of a result's metrics (a RunResult), one block per eval split."""
    head = (
        f"{result.task} | {result.encoder} | {result.mode} | seed {result.seed}"
        f" | {result.timings_s.get('total', 0):.0f} s"
    )
    lines = [head]
    for split, metrics in result.metrics.items():
        width = max(len(k) for k in metrics)
        lines.append(f"  {split}:")
        lines += [f"    {k:<{width}}  {_format_metric(v)}" for k, v in metrics.items()]
    shares = result.layer_weights.get("effective_shares")
    if shares and len(shares) > 1:
        lines.append("  layer shares: " + " ".join(f"{v:.3f}" for v in shares))
    return "\n".join(lines)


@main.command("run", context_settings={"ignore_unknown_options": True})
@click.option("--task", required=True, help="Task name (sv, ...).")
@click.option("--encoder", default=None, help="Encoder spec (default: configs/run.yaml).")
@click.option("--mode", type=click.Choice(["frozen", "finetune"]), default=None)
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    default=None,
    help="Dataset folder (default: the embedded corpus, generated once and cached).",
)
@click.option("--seed", type=int, default=None)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Runs go to OUT/<task>/<run-id>/ (default: runs).",
)
@click.option("--force", is_flag=True, help="Re-run even if a finished result exists.")
@click.option(
    "--wait",
    type=float,
    default=0.0,
    show_default=True,
    help="Seconds to wait for an identical run in progress (then reuse its result).",
)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def run_cmd(task, encoder, mode, data, seed, out, force, wait, overrides) -> None:
    """Train and evaluate one task on one encoder. OVERRIDES: key=value config overrides."""
    from nestbench.config import ConfigError
    from nestbench.encoders import EncoderSpecError
    from nestbench.result import ResultError, RunResult
    from nestbench.runner import run
    from nestbench.task import TaskError

    try:
        r, result = run(
            task,
            list(overrides),
            force=force,
            wait=wait,
            encoder=encoder,
            mode=mode,
            data=data,
            seed=seed,
            out=out,
        )
        if not r.is_global_zero:  # a non-zero DDP rank: rank 0 reports
            return
        if result is None:
            click.echo(f"already finished: {r.result_path} (use --force to run again)")
            result = RunResult.read(r.result_path)
    except (ConfigError, TaskError, EncoderSpecError, FileNotFoundError, ResultError) as e:
        fail(e)
    click.echo(metrics_table(result))
    click.echo(f"result: {r.result_path}")


@main.command("pretrain", context_settings={"ignore_unknown_options": True})
@click.option(
    "--config",
    default=None,
    help="A configs/pretrain/ name (tiny_cpu, nest_small, nest_large, embedded) or a YAML path; "
    "merged over configs/pretrain/base.yaml.",
)
@click.option(
    "--data",
    multiple=True,
    type=click.Path(exists=True),
    help="Training manifest (repeat for several); a folder adds its */train_manifest.json.",
)
@click.option("--print-config", is_flag=True, help="Print the resolved config and exit.")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def pretrain_cmd(config, data, print_config, overrides) -> None:
    """Pretrain a NEST model (NeMo's recipe) and write .nemo checkpoints.

    OVERRIDES: key=value config overrides, e.g. trainer.max_steps=2000 init_from=PATH.nemo.
    Starting again with the same out= resumes from its last checkpoint.
    """
    from omegaconf import OmegaConf

    from nestbench.config import ConfigError
    from nestbench.encoders.checkpoint import CheckpointError
    from nestbench.pretrain.config import resolve_pretrain_config

    try:
        cfg = resolve_pretrain_config(config, data, overrides)
        if print_config:
            click.echo(OmegaConf.to_yaml(cfg), nl=False)
            return
        from nestbench.pretrain.train import pretrain

        result = pretrain(cfg)
    except (ConfigError, CheckpointError, FileNotFoundError) as e:
        fail(e)
    if not result.is_global_zero:  # a non-zero DDP rank: rank 0 reports
        return
    loss = "n/a" if result.train_loss is None else f"{result.train_loss:.4f}"
    click.echo(f"step {result.global_step}  train_loss {loss}  {result.wall_time_s:.0f} s")
    if result.val_loss is not None:
        click.echo(f"val_loss {result.val_loss:.4f}  val_acc {result.val_acc:.4f}")
    click.echo(f"model: {result.nemo_path}")


class DefaultCommandGroup(Group):
    """A group whose first argument, when not one of its commands, goes to ``default``
    (``nestbench sweep FILE`` = ``nestbench sweep start FILE``)."""

    default = "start"

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


@main.group("sweep", cls=DefaultCommandGroup)
def sweep_group() -> None:
    """Run a sweep file (`nestbench sweep configs/sweeps/NAME.yaml`) or show its status
    (`nestbench sweep status NAME`)."""


@sweep_group.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("sweep_file")
@click.option(
    "--executor",
    type=click.Choice(["local", "slurm", "submitit-local"]),
    default=None,
    help="Where runs go (default: the file's executor.name): this machine, SLURM through "
    "submitit, or submitit's local executor.",
)
@click.option("--jobs", type=int, default=None, help="Runs at once with --executor local.")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def sweep_start(sweep_file, executor, jobs, overrides) -> None:
    """Run (or resume) the sweep SWEEP_FILE (a path, or a name in configs/sweeps/). OVERRIDES:
    key=value settings of the sweep file (e.g. out=/scratch/runs executor.slurm.partition=gpu).
    Finished runs are skipped; exits 1 when a run failed."""
    from nestbench.sweep import run_sweep
    from nestbench.sweep_config import load_sweep

    extra = list(overrides)
    if executor:
        extra.append(f"executor.name={executor}")
    if jobs is not None:
        extra.append(f"executor.jobs={jobs}")
    summary = run_sweep(load_sweep(sweep_file, extra), echo=click.echo)
    if summary["failed"]:
        sys.exit(1)


@sweep_group.command("status")
@click.argument("name")
@click.option("--out", default=None, help="The sweep's out folder (default: the file's, or runs).")
def sweep_status_cmd(name, out) -> None:
    """Done / running / failed / left runs of sweep NAME (a name or a sweep file), with times."""
    from nestbench.sweep import format_status, sweep_dir, sweep_status
    from nestbench.sweep_config import load_sweep, sweep_path

    sweep_name, sweep_out = Path(name).stem, out or "runs"
    if sweep_path(name).is_file():
        cfg = load_sweep(name)
        sweep_name, sweep_out = cfg.name, out or cfg.out
    click.echo(format_status(sweep_name, sweep_status(sweep_dir(sweep_out, sweep_name))))


@main.command("leaderboard")
@click.argument("result_dirs", nargs=-1, type=click.Path())
@click.option(
    "--format", "fmt", type=click.Choice(["md", "csv", "json", "html"]), default="md",
    show_default=True, help="Output format (html: one self-contained page).",
)  # fmt: skip
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write to this file.")
@click.option(
    "--plots",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for the layer-weight PNGs (md and html; default: plots/ beside --out).",
)
@click.option(
    "--resamples", type=int, default=2000, show_default=True,
    help="Bootstrap resamples of the paired tests.",
)  # fmt: skip
def leaderboard_cmd(result_dirs, fmt, out, plots, resamples) -> None:
    """Tables of the runs under RESULT_DIRS (default: runs): per task and eval split, mean +- std
    over seeds with 95% intervals, paired tests, the SUPERB-style score and costs."""
    from nestbench.leaderboard import render

    if plots is None and out is not None:
        plots = str(Path(out).parent / "plots")
    text, lb = render(result_dirs or ["runs"], fmt, out, plots, n_resamples=resamples)
    if out is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"leaderboard of {sum(len(r.runs) for r in lb.rows)} runs: {out}")
    for p in lb.problems:
        click.echo(f"note: {p}", err=True)


from nestbench.data.cli import data  # noqa: E402  (the `nestbench data` group)

main.add_command(data)

if __name__ == "__main__":
    main()
