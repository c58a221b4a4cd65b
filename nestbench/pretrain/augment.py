"""Speaker and noise augmentation of NEST pretraining (NeMo's ``MultiSpeakerNoiseAugmentation``
with one segment and one extra speaker, the NEST recipe), vectorised over the batch.

Each utterance, with probability ``prob``, gets a stretch of ``mix_rate`` of its length (a random
start) overlaid with either

- noise (probability ``noise_ratio``, always when the batch has one utterance) at an
  audio-to-noise energy ratio ``r ~ U[min_r_noise, max_r_noise]`` dB, or
- a segment of another utterance of the batch at ``r ~ U[min_r_speech, max_r_speech]`` dB,

scaled by ``sqrt(E_audio / (10^(r/10) * E_noise))`` where ``E`` is the mean energy per sample over
the utterance's valid length (E_noise of the overlay, zeros included, as NeMo computes it).
The quantizer targets come from the clean audio; the encoder sees the mixture.

Noise comes from a noise manifest (the batch's ``noise`` rows, see :mod:`nestbench.pretrain.data`)
or, when there is none, is generated: Gaussian noise coloured with a random spectral slope
``1/f^beta``, ``beta ~ U[min_color, max_color]`` (0 white, 1 pink, 2 brown). NeMo uses silence
when no noise manifest is given, which makes the noise branch a no-op.

All randomness comes from the ``torch.Generator`` passed in, so a step is reproducible from its
seed on any device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AugmentConfig:
    """Settings of :class:`SpeakerNoiseAugmentation` (NeMo's names and NEST defaults)."""

    prob: float = 0.5
    noise_ratio: float = 0.5
    min_r_speech: float = -5.0
    max_r_speech: float = 5.0
    min_r_noise: float = -5.0
    max_r_noise: float = 20.0
    min_mix_rate: float = 0.5
    max_mix_rate: float = 0.5
    min_color: float = 0.0
    max_color: float = 2.0

    def __post_init__(self) -> None:
        checks = [
            (0 <= self.prob <= 1, f"prob must be in [0, 1], got {self.prob}"),
            (0 <= self.noise_ratio <= 1, f"noise_ratio must be in [0, 1], got {self.noise_ratio}"),
            (self.min_r_speech <= self.max_r_speech, "min_r_speech must be <= max_r_speech"),
            (self.min_r_noise <= self.max_r_noise, "min_r_noise must be <= max_r_noise"),
            (
                0 <= self.min_mix_rate <= self.max_mix_rate <= 1,
                f"need 0 <= min_mix_rate <= max_mix_rate <= 1, got {self.min_mix_rate}, "
                f"{self.max_mix_rate}",
            ),
            (self.min_color <= self.max_color, "min_color must be <= max_color"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"augmentation: {message}")


def _uniform(n: int, low: float, high: float, g: torch.Generator, device) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g, device=device)


def colored_noise(
    batch: int,
    length: int,
    beta: torch.Tensor,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Gaussian noise with power spectrum ~ 1/f^beta, unit RMS per row.

    beta: [B] spectral slopes (0 white, 1 pink, 2 brown). Returns FloatTensor [B, length].
    """
    white = torch.randn(batch, length, generator=generator, device=device)
    if length < 2:
        return white
    spec = torch.fft.rfft(white, dim=1)  # [B, length//2 + 1]
    freqs = torch.fft.rfftfreq(length, device=device).clamp(min=1.0 / length)
    spec = spec * freqs[None, :].pow(-beta.to(device)[:, None] / 2)
    spec[:, 0] = 0  # no DC offset
    noise = torch.fft.irfft(spec, n=length, dim=1)
    return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)


def _gather_segments(
    source: torch.Tensor, source_len: torch.Tensor, offset: torch.Tensor, start, mix_len, length
):
    """For each row i, a signal [S] that is zero except on ``[start_i, start_i + mix_len_i)``,
    where it holds ``source[i]`` read from ``offset_i`` (wrapping at ``source_len_i``, i.e.
    repeated when the source is shorter than the stretch). Returns [B, S]."""
    steps = torch.arange(length, device=source.device)[None, :]  # [1, S]
    rel = steps - start[:, None]
    inside = (rel >= 0) & (rel < mix_len[:, None])
    src_len = source_len.clamp(min=1)[:, None]
    pos = (offset[:, None] + rel.clamp(min=0)) % src_len
    pos = pos.clamp(max=source.shape[1] - 1)
    return torch.gather(source, 1, pos) * inside


class SpeakerNoiseAugmentation:
    """NEST's batch augmentation (see the module docstring). Stateless: call it with a generator.

    ``__call__(audio [B, S], audio_len [B], generator, noise=None [B, S'], noise_len=None [B])``
    returns ``(noisy [B, S], noisy_len [B], info)`` where ``info`` holds per-utterance tensors
    ``applied`` (bool), ``use_noise`` (bool), ``ratio_db``, ``start``, ``mix_len``, ``offset``
    (where the overlay is read from in its source), ``partner`` (index of the mixed-in
    utterance, -1 for noise) and ``scale``.
    """

    def __init__(self, cfg: AugmentConfig | None = None, **kwargs):
        self.cfg = cfg if cfg is not None else AugmentConfig(**kwargs)

    def __call__(
        self,
        audio: torch.Tensor,
        audio_len: torch.Tensor,
        generator: torch.Generator,
        noise: torch.Tensor | None = None,
        noise_len: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        cfg = self.cfg
        b, s = audio.shape
        dev = audio.device
        g = generator
        audio_len = audio_len.to(dev).long()
        applied = torch.rand(b, generator=g, device=dev) < cfg.prob
        use_noise = (torch.rand(b, generator=g, device=dev) < cfg.noise_ratio) | (b == 1)
        r_noise = _uniform(b, cfg.min_r_noise, cfg.max_r_noise, g, dev)
        r_speech = _uniform(b, cfg.min_r_speech, cfg.max_r_speech, g, dev)
        ratio_db = torch.where(use_noise, r_noise, r_speech)
        mix_rate = _uniform(b, cfg.min_mix_rate, cfg.max_mix_rate, g, dev)
        mix_len = (audio_len.float() * mix_rate).long().clamp(min=1)
        mix_len = torch.minimum(mix_len, audio_len.clamp(min=1))
        start = (torch.rand(b, generator=g, device=dev) * (audio_len - mix_len + 1)).long()

        # speech: another utterance of the batch, uniformly among the others
        shift = torch.randint(1, max(b, 2), (b,), generator=g, device=dev)
        partner = (torch.arange(b, device=dev) + shift) % b
        partner_len = audio_len[partner]
        # noise: rows of the given noise, or coloured noise
        if noise is None:
            beta = _uniform(b, cfg.min_color, cfg.max_color, g, dev)
            noise = colored_noise(b, s, beta, g, dev).to(audio.dtype)
            noise_len = torch.full((b,), s, device=dev, dtype=torch.long)
        else:
            noise = noise.to(dev, audio.dtype)
            noise_len = (
                torch.full((b,), noise.shape[1], device=dev, dtype=torch.long)
                if noise_len is None
                else noise_len.to(dev).long()
            )
        src_len = torch.where(use_noise, noise_len, partner_len)
        # a random read offset inside the source when it is longer than the stretch
        room = (src_len - mix_len).clamp(min=0)
        offset = (torch.rand(b, generator=g, device=dev) * (room + 1)).long()
        offset = torch.where(src_len > mix_len, offset, torch.zeros_like(offset))

        speech_seg = _gather_segments(audio[partner], partner_len, offset, start, mix_len, s)
        if noise.shape[1] < s:
            noise = torch.nn.functional.pad(noise, (0, s - noise.shape[1]))
        noise_seg = _gather_segments(noise[:, :s], noise_len, offset, start, mix_len, s)
        overlay = torch.where(use_noise[:, None], noise_seg, speech_seg)

        denom = audio_len.clamp(min=1).to(audio.dtype)
        valid = torch.arange(s, device=dev)[None, :] < audio_len[:, None]
        e_audio = (audio * valid).pow(2).sum(1) / denom
        e_noise = (overlay * valid).pow(2).sum(1) / denom
        scale = torch.where(
            e_noise > 0,
            (e_audio / (10 ** (ratio_db / 10) * e_noise.clamp(min=1e-20))).sqrt(),
            torch.zeros_like(e_noise),
        )
        scale = torch.where(applied, scale, torch.zeros_like(scale))
        noisy = audio + scale[:, None] * overlay * valid
        info = {
            "applied": applied,
            "use_noise": use_noise,
            "ratio_db": ratio_db,
            "start": start,
            "mix_len": mix_len,
            "offset": offset,
            "partner": torch.where(use_noise, torch.full_like(partner, -1), partner),
            "scale": scale,
        }
        return noisy, audio_len.clone(), info
