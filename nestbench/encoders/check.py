"""``nestbench encoders check``: test an encoder against the Encoder contract.

The validator feeds random audio of several lengths in several batch layouts and checks:
contract attributes, output structure and shapes, lengths against ``frame_shift``, finite values,
determinism in eval mode, and padding invariance (an utterance's valid frames do not depend on what
it is batched with). Each check gives a :class:`CheckResult`; the command prints them as a table
and exits non-zero when any failed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nestbench.audio import collate_audio
from nestbench.encoders.base import CONTRACT_ATTRIBUTES, EncoderOutput

#: An encoder's frame count may differ from num_samples / frame_shift by this many frames
#: (conv edge effects, NeMo's ``len // 160 + 1``).
LENGTH_TOLERANCE_FRAMES = 2.0


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


def _random_audio(lengths: list[int], seed: int) -> list[torch.Tensor]:
    """Speech-like test signals: noise shaped by a slow random envelope, one per length."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        noise = torch.randn(n, generator=g)
        env = torch.rand(n // 800 + 2, generator=g)
        env = torch.nn.functional.interpolate(env[None, None], size=n, mode="linear")[0, 0]
        out.append(0.1 * noise * env)
    return out


def _run(encoder, wavs: list[torch.Tensor], device) -> EncoderOutput:
    wav, lens = collate_audio(wavs)
    with torch.inference_mode():
        return encoder(wav.to(device), lens.to(device))


def _valid(out: EncoderOutput, i: int) -> list[torch.Tensor]:
    n = int(out.lengths[i])
    return [h[i, :n].float().cpu() for h in out.hidden_states]


def check_structure(encoder, out: EncoderOutput, lengths: list[int]) -> list[str]:
    """Problems with the output's structure, shapes and lengths (empty when fine)."""
    problems = []
    if not isinstance(out.hidden_states, tuple | list):
        return [f"hidden_states is a {type(out.hidden_states).__name__}, expected a tuple"]
    if len(out.hidden_states) != encoder.num_layers + 1:
        problems.append(
            f"{len(out.hidden_states)} hidden states, expected num_layers+1 = {encoder.num_layers + 1}"
        )
    B = len(lengths)
    if tuple(out.lengths.shape) != (B,) or out.lengths.dtype != torch.long:
        problems.append(
            f"lengths: {out.lengths.dtype} {tuple(out.lengths.shape)}, expected long [{B}]"
        )
        return problems
    for i, h in enumerate(out.hidden_states):
        if h.dim() != 3 or h.shape[0] != B or h.shape[2] != encoder.hidden_size:
            problems.append(
                f"hidden_states[{i}] has shape {tuple(h.shape)}, expected [{B}, T, {encoder.hidden_size}]"
            )
        elif h.shape[1] < int(out.lengths.max()):
            problems.append(
                f"hidden_states[{i}] has T={h.shape[1]} < max length {int(out.lengths.max())}"
            )
        elif h.shape[1] != out.hidden_states[0].shape[1]:
            problems.append(
                f"hidden_states[{i}] has T={h.shape[1]}, others {out.hidden_states[0].shape[1]}"
            )
        if not h.is_floating_point():
            problems.append(f"hidden_states[{i}] has dtype {h.dtype}, expected floating point")
    for n, got in zip(lengths, out.lengths.tolist(), strict=True):
        want = n / encoder.frame_shift
        if abs(got - want) > LENGTH_TOLERANCE_FRAMES:
            problems.append(
                f"{n} samples gave {got} frames; frame_shift {encoder.frame_shift} implies about {want:.1f}"
            )
    return problems


def check_encoder(
    encoder,
    durations: tuple[float, ...] = (0.7, 1.3, 2.05, 3.3),
    seed: int = 0,
    device: str | torch.device = "cpu",
    atol: float = 1e-3,
) -> list[CheckResult]:
    """Run every contract check on ``encoder``; returns one result per check.

    Args:
        durations: utterance lengths in seconds (use lengths that are not multiples of the frame
            shift); the padding checks batch them ascending, descending and alone.
        atol: tolerance for padding invariance, relative to the largest magnitude of a layer
            (``|a - b| <= atol * max(1, max|a|)``).
    """
    results = []
    missing = [a for a in CONTRACT_ATTRIBUTES if not hasattr(encoder, a)]
    attr_problems = [f"missing attribute {a}" for a in missing]
    if not missing:
        if encoder.sample_rate != 16000:
            attr_problems.append(f"sample_rate {encoder.sample_rate}, expected 16000")
        for a in ("frame_shift", "hidden_size"):
            if not isinstance(getattr(encoder, a), int) or getattr(encoder, a) <= 0:
                attr_problems.append(f"{a} {getattr(encoder, a)!r}, expected a positive int")
        if not isinstance(encoder.num_layers, int) or encoder.num_layers < 0:
            attr_problems.append(f"num_layers {encoder.num_layers!r}, expected an int >= 0")
    results.append(
        CheckResult(
            "attributes",
            not attr_problems,
            "; ".join(attr_problems)
            or (
                f"frame_shift={encoder.frame_shift} num_layers={encoder.num_layers} "
                f"hidden_size={encoder.hidden_size}"
            ),
        )
    )
    if attr_problems:
        return results

    encoder = encoder.eval().to(device)
    lengths = [int(d * encoder.sample_rate) for d in durations]
    wavs = _random_audio(lengths, seed)
    try:
        batch = _run(encoder, wavs, device)
    except Exception as e:  # the validator reports any failure of the forward pass
        results.append(CheckResult("forward", False, f"{type(e).__name__}: {e}"))
        return results
    problems = check_structure(encoder, batch, lengths)
    results.append(
        CheckResult(
            "shapes and lengths",
            not problems,
            "; ".join(problems)
            or (
                f"{len(batch.hidden_states)} x [B, T, {encoder.hidden_size}], lengths {batch.lengths.tolist()}"
            ),
        )
    )
    if problems:
        return results

    bad = [
        i
        for i, h in enumerate(batch.hidden_states)
        for b in range(len(lengths))
        if not torch.isfinite(h[b, : int(batch.lengths[b])]).all()
    ]
    results.append(
        CheckResult(
            "finite values",
            not bad,
            f"non-finite values in layers {sorted(set(bad))}" if bad else "all finite",
        )
    )

    again = _run(encoder, wavs, device)
    diff = max(
        float((a - b).abs().max())
        for a, b in zip(batch.hidden_states, again.hidden_states, strict=True)
    )
    results.append(
        CheckResult(
            "determinism (eval)",
            diff == 0.0,
            f"two identical calls differ by {diff:.3g}" if diff else "identical",
        )
    )

    results.append(_padding_check(encoder, wavs, batch, device, atol))
    return results


def _padding_check(encoder, wavs, batch: EncoderOutput, device, atol: float) -> CheckResult:
    """Each utterance alone vs in the batch (as given, reversed) must agree on valid frames."""
    order = list(range(len(wavs)))[::-1]
    reversed_out = _run(encoder, [wavs[i] for i in order], device)
    worst, where = 0.0, ""
    for i, wav in enumerate(wavs):
        alone = _valid(_run(encoder, [wav], device), 0)
        for label, out, j in (
            ("batched", batch, i),
            ("reversed batch", reversed_out, order.index(i)),
        ):
            other = _valid(out, j)
            if len(other[0]) != len(alone[0]):
                return CheckResult(
                    "padding invariance",
                    False,
                    f"utterance {i}: {len(alone[0])} frames alone, {len(other[0])} {label}",
                )
            for k, (a, b) in enumerate(zip(alone, other, strict=True)):
                err = float((a - b).abs().max()) / max(1.0, float(a.abs().max()))
                if err > worst:
                    worst, where = err, f"utterance {i}, layer {k}, {label}"
    ok = worst <= atol
    detail = f"max relative difference {worst:.2g}" + (f" at {where}" if where else "")
    return CheckResult("padding invariance", ok, detail + ("" if ok else f" > {atol:g}"))


def format_results(spec: str, results: list[CheckResult]) -> str:
    """The results as a plain-text table."""
    width = max(len(r.name) for r in results)
    lines = [f"encoder: {spec}"]
    lines += [f"  {'PASS' if r.ok else 'FAIL'}  {r.name:<{width}}  {r.detail}" for r in results]
    failed = [r.name for r in results if not r.ok]
    lines.append(
        f"{len(results) - len(failed)}/{len(results)} checks passed"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return "\n".join(lines)
