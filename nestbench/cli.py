"""The ``nestbench`` command."""

from __future__ import annotations

import sys

import click

from nestbench import __version__


@click.group()
@click.version_option(__version__, prog_name="nestbench")
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
    click.echo("\nAlso accepted: a path to a .nemo/.ckpt/state-dict file, or module:callable.")


@encoders.command("check")
@click.argument("spec")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="Local weights file for encoders that take one (wav2vec2-base, ...).")
@click.option("--device", default="cpu", show_default=True, help="torch device to run on.")
@click.option("--seed", default=0, show_default=True, help="Seed of the random test audio.")
@click.option("--atol", default=1e-3, show_default=True,
              help="Relative tolerance of the padding-invariance check.")
def encoders_check(spec: str, weights: str | None, device: str, seed: int, atol: float) -> None:
    """Check that encoder SPEC follows the Encoder contract; exit 1 if a check fails."""
    from nestbench.encoders import EncoderSpecError, load_encoder
    from nestbench.encoders.check import check_encoder, format_results

    kwargs = {"weights": weights} if weights else {}
    try:
        encoder = load_encoder(spec, **kwargs)
    except (EncoderSpecError, ValueError, TypeError) as e:
        raise click.ClickException(str(e)) from e
    results = check_encoder(encoder, seed=seed, device=device, atol=atol)
    click.echo(format_results(spec, results))
    if not all(r.ok for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
