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

Two additions beyond NeMo's augmentation, both off by default (NeMo's recipe) and used by the
``embedded`` recipe, whose clean pretraining pool lacks the rooms and babble of the corpus:

- ``reverb_prob``: the utterance itself is first convolved with a synthetic room impulse response
  (:func:`nestbench.data.effects.room_impulse_response`, RT60 ``U[min_rt60, max_rt60]`` s,
  direct-to-reverberant ratio ``U[min_drr, max_drr]`` dB, the corpus's rooms);
- ``babble_ratio``: that share of the noise overlays is babble, the sum of ``babble_talkers``
  other utterances of the batch, each scaled to unit energy.

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

from nestbench.layers import valid_mask


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
    reverb_prob: float = 0.0
    min_rt60: float = 0.15
    max_rt60: float = 0.8
    min_drr: float = 0.0
    max_drr: float = 8.0
    babble_ratio: float = 0.0
    babble_talkers: int = 4

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
            (0 <= self.reverb_prob <= 1, f"reverb_prob must be in [0, 1], got {self.reverb_prob}"),
            (0 < self.min_rt60 <= self.max_rt60, "need 0 < min_rt60 <= max_rt60"),
            (self.min_drr <= self.max_drr, "min_drr must be <= max_drr"),
            (
                0 <= self.babble_ratio <= 1,
                f"babble_ratio must be in [0, 1], got {self.babble_ratio}",
            ),
            (self.babble_talkers >= 1, f"babble_talkers must be >= 1, got {self.babble_talkers}"),
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


def reverberate_batch(
    audio: torch.Tensor,
    audio_len: torch.Tensor,
    rt60: torch.Tensor,
    drr_db: torch.Tensor,
    seeds: torch.Tensor,
    apply: torch.Tensor,
) -> torch.Tensor:
    """Rows of ``audio`` [B, S] where ``apply`` [B] is true convolved with a room impulse
    response (RT60 ``rt60`` [B] s, DRR ``drr_db`` [B], noise tail from ``seeds`` [B]), cut to
    ``S`` samples and zero past ``audio_len`` [B]. Returns [B, S]."""
    import numpy as np

    from nestbench.data.effects import room_impulse_response

    rows = torch.nonzero(apply, as_tuple=False).flatten().tolist()
    if not rows:
        return audio
    s = audio.shape[1]
    rirs = [
        torch.from_numpy(
            room_impulse_response(
                np.random.default_rng(int(seeds[i])), float(rt60[i]), drr_db=float(drr_db[i])
            )
        )
        for i in rows
    ]
    longest = max(len(h) for h in rirs)
    n = 1 << (s + longest - 1).bit_length()
    h = torch.zeros(len(rows), longest, dtype=torch.float64, device=audio.device)
    for k, rir in enumerate(rirs):
        h[k, : len(rir)] = rir
    x = audio[rows].double()
    y = torch.fft.irfft(torch.fft.rfft(x, n) * torch.fft.rfft(h, n), n)[:, :s]
    valid = valid_mask(audio_len[rows], s, audio.device)
    out = audio.clone()
    out[rows] = (y * valid).to(audio.dtype)
    return out


def babble_of_batch(audio: torch.Tensor, audio_len: torch.Tensor, talkers: int) -> torch.Tensor:
    """For each row i, the sum of rows i+1, ..., i+talkers (mod B, at most B-1 of them), each
    scaled to unit mean energy over its valid length (zeros past it). Returns [B, S]."""
    b, s = audio.shape
    valid = valid_mask(audio_len, s, audio.device)
    energy = (audio * valid).pow(2).sum(1) / audio_len.clamp(min=1)
    unit = audio * valid / energy.clamp(min=1e-20).sqrt()[:, None]
    out = torch.zeros_like(audio)
    for k in range(1, min(talkers, b - 1) + 1):
        out = out + unit.roll(-k, dims=0)
    return out


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
    utterance, -1 for noise), ``scale``, ``rt60`` (0: no room) and ``babble`` (the overlay is
    babble).
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
        clean = audio
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
        # rooms and babble draw after NeMo's draws, and only when enabled, so that NeMo's
        # settings draw exactly what they did without them
        reverb = torch.zeros(b, dtype=torch.bool, device=dev)
        rt60 = torch.zeros(b, device=dev)
        if cfg.reverb_prob > 0:
            reverb = torch.rand(b, generator=g, device=dev) < cfg.reverb_prob
            rt60 = _uniform(b, cfg.min_rt60, cfg.max_rt60, g, dev)
            drr = _uniform(b, cfg.min_drr, cfg.max_drr, g, dev)
            room_seed = torch.randint(0, 2**31 - 1, (b,), generator=g, device=dev)
            audio = reverberate_batch(audio, audio_len, rt60, drr, room_seed, reverb)
        babble = torch.zeros(b, dtype=torch.bool, device=dev)
        if cfg.babble_ratio > 0 and b > 1:
            babble = torch.rand(b, generator=g, device=dev) < cfg.babble_ratio
        if babble.any():
            bab = babble_of_batch(clean, audio_len, cfg.babble_talkers)
            if noise.shape[1] < s:
                noise = torch.nn.functional.pad(noise, (0, s - noise.shape[1]))
            noise = torch.where(babble[:, None], bab, noise[:, :s])
            noise_len = torch.where(babble, audio_len, noise_len)
        src_len = torch.where(use_noise, noise_len, partner_len)
        # a random read offset inside the source when it is longer than the stretch
        room = (src_len - mix_len).clamp(min=0)
        offset = (torch.rand(b, generator=g, device=dev) * (room + 1)).long()
        offset = torch.where(src_len > mix_len, offset, torch.zeros_like(offset))

        speech_seg = _gather_segments(clean[partner], partner_len, offset, start, mix_len, s)
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
            "rt60": torch.where(reverb, rt60, torch.zeros_like(rt60)),
            "babble": babble & use_noise & applied,
        }
        return noisy, audio_len.clone(), info
