"""Log-mel features exactly as NeMo's ``AudioToMelSpectrogramPreprocessor`` computes them.

Pipeline (eval mode), for audio ``wav`` [B, S] with lengths [B]:

1. dither (training only), pre-emphasis ``y[n] = x[n] - 0.97 x[n-1]``, ``y[0] = x[0]``;
2. ``torch.stft`` (n_fft 512, hop 160, Hann window of 400 samples, ``periodic=False``, centred);
3. power spectrum ``|X|^2`` -> slaney mel filterbank ``fb`` [1, 80, 257] -> ``log(mel + 2**-24)``;
4. per-feature normalisation over the valid frames (mean, unbiased std + 1e-5);
5. frames at or past the valid length set to 0, time padded with 0 to a multiple of 16.

Two generations of this step exist (NeMo PR #13827, first released in NeMo 2.5.0):

- ``"2.5"``: ``frames = len // 160``, the STFT pads with zeros, pre-emphasised samples past the
  length are zeroed, and the encoder's subsampling masks padded steps. Padding invariant.
- ``"2.4"``: ``frames = len // 160 + 1``, the STFT pads by reflection *of the whole padded row*,
  no masking in the subsampling. This is what ``ssl_en_nest_large_v1.0`` was trained with.
  An utterance's features then depend on how much padding it was batched with. With
  ``batch_invariant=True`` each row is instead processed as NeMo 2.4 processes a batch of one
  unpadded utterance (reflection at the utterance's own end), which is padding invariant.
"""

from __future__ import annotations

import math
import re

import torch
import torchaudio.functional as AF
from torch import nn

GENERATIONS = ("2.4", "2.5")

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
}


def generation_for_version(nemo_version: str | None) -> str:
    """The preprocessing generation a NeMo version used: ``"2.5"`` or ``"2.4"``.

    ``"2.5.0"``, ``"2.5.0rc1"``, ``"2.6.0.dev0"``, ``"3.0.0"`` -> ``"2.5"``;
    ``"2.4.0"``, ``"1.23.0"``, ``"2.0.0rc0"`` -> ``"2.4"``.
    ``None`` or an unparsable string -> ``"2.5"``: the current NeMo behaviour, and the one
    nestbench's own checkpoints use (they always record a version, so only foreign checkpoints
    without a config end up here; pass ``generation=`` to override).
    """
    if not nemo_version:
        return "2.5"
    m = re.match(r"\s*v?(\d+)\.(\d+)", str(nemo_version))
    if m is None:
        return "2.5"
    major, minor = int(m.group(1)), int(m.group(2))
    return "2.5" if (major, minor) >= (2, 5) else "2.4"


def check_generation(generation: str) -> str:
    """Return ``generation`` if it is ``"2.4"`` or ``"2.5"``, else raise ValueError."""
    generation = str(generation)
    if generation not in GENERATIONS:
        raise ValueError(f"unknown preprocessing generation {generation!r}: use '2.4' or '2.5'")
    return generation


def slaney_mel_filterbank(
    sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> torch.Tensor:
    """librosa's default mel filterbank (slaney scale and area normalisation), [n_mels, n_fft//2+1]."""
    fb = AF.melscale_fbanks(
        n_fft // 2 + 1,
        float(fmin),
        float(fmax),
        n_mels,
        sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return fb.T.contiguous().float()


def lengths_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """BoolTensor [B, max_len], True at valid steps ``t < lengths[b]``."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


class FilterbankFeatures(nn.Module):
    """The featurizer: buffers ``window`` [win_length] and ``fb`` [1, n_mels, n_fft//2+1].

    Args mirror NeMo's ``FilterbankFeatures``; only what NEST checkpoints use is supported.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_window_size: int = 400,
        n_window_stride: int = 160,
        window: str = "hann",
        normalize: str | None = "per_feature",
        n_fft: int | None = 512,
        preemph: float | None = 0.97,
        nfilt: int = 80,
        lowfreq: float = 0.0,
        highfreq: float | None = None,
        log: bool = True,
        log_zero_guard_type: str = "add",
        log_zero_guard_value: float | str = 2**-24,
        dither: float = 1e-5,
        pad_to: int = 16,
        pad_value: float = 0.0,
        mag_power: float = 2.0,
        generation: str = "2.5",
        batch_invariant: bool = False,
    ):
        super().__init__()
        if window not in _WINDOWS:
            raise ValueError(f"unsupported window {window!r} (supported: {sorted(_WINDOWS)})")
        if normalize not in ("per_feature", None, "", "none"):
            raise ValueError(
                f"unsupported normalize={normalize!r} (supported: 'per_feature', None)"
            )
        if log_zero_guard_type not in ("add", "clamp"):
            raise ValueError(
                f"log_zero_guard_type must be 'add' or 'clamp', not {log_zero_guard_type!r}"
            )
        if not isinstance(pad_to, int) or pad_to < 0:
            raise ValueError(f"unsupported pad_to={pad_to!r} (a non-negative int is required)")
        self.sample_rate = sample_rate
        self.window_type = window
        self.win_length = n_window_size
        self.hop_length = n_window_stride
        self.n_fft = n_fft or 2 ** math.ceil(math.log2(n_window_size))
        self.normalize = normalize if normalize not in ("", "none") else None
        self.preemph = preemph
        self.nfilt = nfilt
        self.log = log
        self.log_zero_guard_type = log_zero_guard_type
        self.log_zero_guard_value = log_zero_guard_value
        self.dither = dither
        self.pad_to = pad_to
        self.pad_value = pad_value
        self.mag_power = mag_power
        self.generation = check_generation(generation)
        self.batch_invariant = batch_invariant
        self.register_buffer("window", _WINDOWS[window](n_window_size, periodic=False))
        fb = slaney_mel_filterbank(
            sample_rate, self.n_fft, nfilt, lowfreq, highfreq or sample_rate / 2
        )
        self.register_buffer("fb", fb.unsqueeze(0))

    def get_seq_len(self, num_samples: torch.Tensor) -> torch.Tensor:
        """Valid frames for ``num_samples`` [B]: ``len // hop`` (2.5) or ``len // hop + 1`` (2.4)."""
        frames = torch.div(num_samples, self.hop_length, rounding_mode="floor").long()
        if self.generation == "2.4":
            frames = torch.where(num_samples == 0, torch.zeros_like(frames), frames + 1)
        return frames

    def _guard(self, x: torch.Tensor) -> float:
        value = self.log_zero_guard_value
        if value == "tiny":
            return torch.finfo(x.dtype).tiny
        if value == "eps":
            return torch.finfo(x.dtype).eps
        return float(value)

    def _frames(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Pre-emphasis and STFT. x: [B, S] -> complex [B, n_fft//2+1, 1 + S//hop]."""
        if self.preemph is not None:
            x = torch.cat([x[:, :1], x[:, 1:] - self.preemph * x[:, :-1]], dim=1)
            if self.generation == "2.5" or self.batch_invariant:
                x = x.masked_fill(~lengths_mask(lengths, x.shape[1]), 0.0)
        window = self.window.to(device=x.device, dtype=torch.float32)
        half = self.n_fft // 2
        if self.generation == "2.4" and self.batch_invariant:
            # Reflect at each utterance's own end, as a batch of one unpadded utterance would.
            n = torch.arange(-half, x.shape[1] + half, device=x.device)[None, :]
            last = (lengths - 1).clamp(min=0)[:, None]
            src = torch.where(n < 0, -n, torch.where(n > last, 2 * last - n, n))
            src = torch.minimum(src.clamp(min=0), last)
            x = torch.gather(x, 1, src).masked_fill(n > last + half, 0.0)
            center, pad_mode = False, "constant"
        else:
            center, pad_mode = True, ("constant" if self.generation == "2.5" else "reflect")
        return torch.stft(
            x,
            n_fft=self.n_fft,
            hop_length=self.hop_length,
            win_length=self.win_length,
            window=window,
            center=center,
            pad_mode=pad_mode,
            return_complex=True,
        )

    @torch.no_grad()
    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wav: FloatTensor [B, S]; lengths: LongTensor [B] (samples).

        Returns:
            mel: FloatTensor [B, n_mels, T], T = frames rounded up to a multiple of ``pad_to``;
            mel_len: LongTensor [B], valid frames.
        """
        x = wav.float()
        lengths = lengths.to(x.device).long()
        mel_len = self.get_seq_len(lengths)
        if self.training and self.dither > 0:
            x = x + self.dither * torch.randn_like(x)
        with torch.autocast(x.device.type, enabled=False):
            spec = self._frames(x, lengths)
            ri = torch.view_as_real(spec)  # [B, F, T, 2]
            # NeMo's view_as_real(spec).pow(2).sum(-1), the same bits without a reduction over a
            # dimension of 2 (10x slower than the rest of this line on CPUs)
            mag = (ri[..., 0] * ri[..., 0] + ri[..., 1] * ri[..., 1]).sqrt()
            if self.mag_power != 1.0:
                mag = mag.pow(self.mag_power)
            mel = torch.matmul(self.fb.to(mag.dtype), mag)
        if self.log:
            guard = self._guard(mel)
            mel = torch.log(
                mel + guard if self.log_zero_guard_type == "add" else mel.clamp(min=guard)
            )
        valid = lengths_mask(mel_len, mel.shape[-1])[:, None, :]  # [B, 1, T]
        if self.normalize == "per_feature":
            mel = normalize_per_feature(mel, valid)
        mel = mel.masked_fill(~valid, self.pad_value)
        if self.pad_to > 0 and mel.shape[-1] % self.pad_to:
            mel = nn.functional.pad(
                mel, (0, self.pad_to - mel.shape[-1] % self.pad_to), value=self.pad_value
            )
        return mel, mel_len


def normalize_per_feature(x: torch.Tensor, valid: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Standardise each feature over the valid frames.

    x: [B, F, T]; valid: BoolTensor [B, 1, T]. Mean and unbiased std (0 where a single frame is
    valid, NeMo >= 2.5) plus ``eps`` are taken over the valid frames only.
    """
    count = valid.sum(-1, keepdim=True)  # [B, 1, 1]
    mean = torch.where(valid, x, 0.0).sum(-1, keepdim=True) / count
    sq = torch.where(valid, x - mean, 0.0).pow(2).sum(-1, keepdim=True)
    std = torch.sqrt(sq / (count - 1.0))
    std = std.masked_fill(std.isnan(), 0.0) + eps
    return (x - mean) / std


class MelPreprocessor(nn.Module):
    """NeMo's ``AudioToMelSpectrogramPreprocessor`` (eval-exact), holding ``featurizer``.

    State-dict keys: ``featurizer.window`` [400] and ``featurizer.fb`` [1, 80, 257].
    ``generation`` ("2.4" or "2.5") selects the preprocessing generation (module docstring).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        n_window_size: int = 400,
        n_window_stride: int = 160,
        features: int = 80,
        n_fft: int = 512,
        generation: str = "2.5",
        batch_invariant: bool = False,
        **kwargs,
    ):
        super().__init__()
        self.featurizer = FilterbankFeatures(
            sample_rate=sample_rate,
            n_window_size=n_window_size,
            n_window_stride=n_window_stride,
            nfilt=features,
            n_fft=n_fft,
            generation=generation,
            batch_invariant=batch_invariant,
            **kwargs,
        )

    @property
    def generation(self) -> str:
        return self.featurizer.generation

    @generation.setter
    def generation(self, value: str) -> None:
        self.featurizer.generation = check_generation(value)

    @property
    def batch_invariant(self) -> bool:
        return self.featurizer.batch_invariant

    @batch_invariant.setter
    def batch_invariant(self, value: bool) -> None:
        self.featurizer.batch_invariant = bool(value)

    @property
    def hop_length(self) -> int:
        return self.featurizer.hop_length

    @property
    def pad_to(self) -> int:
        return self.featurizer.pad_to

    @property
    def n_mels(self) -> int:
        return self.featurizer.nfilt

    @classmethod
    def from_nemo(
        cls, cfg: dict, generation: str = "2.5", batch_invariant: bool = False
    ) -> MelPreprocessor:
        """Build from the ``preprocessor:`` section of a NeMo model config.

        Unknown keys such as ``_target_`` are ignored; settings NEST never uses and that this
        implementation does not reproduce raise ValueError.
        """
        cfg = dict(cfg)
        target = str(cfg.get("_target_", "AudioToMelSpectrogramPreprocessor"))
        if not target.endswith("AudioToMelSpectrogramPreprocessor"):
            raise ValueError(f"unsupported preprocessor {target!r}")
        unsupported = {
            "use_torchaudio": (False, None),
            "frame_splicing": (1, None),
            "exact_pad": (False, None),
            "stft_exact_pad": (False, None),
            "stft_conv": (False, None),
            "nb_augmentation_prob": (0, 0.0, None),
            "mel_norm": ("slaney",),
        }
        for key, allowed in unsupported.items():
            if key in cfg and cfg[key] not in allowed:
                raise ValueError(f"unsupported preprocessor setting {key}={cfg[key]!r}")
        sr = int(cfg.get("sample_rate", 16000))
        win = cfg.get("n_window_size") or int(cfg.get("window_size", 0.02) * sr)
        hop = cfg.get("n_window_stride") or int(cfg.get("window_stride", 0.01) * sr)
        passthrough = (
            "window",
            "normalize",
            "preemph",
            "lowfreq",
            "highfreq",
            "log",
            "log_zero_guard_type",
            "log_zero_guard_value",
            "dither",
            "pad_to",
            "pad_value",
            "mag_power",
        )
        kwargs = {k: cfg[k] for k in passthrough if k in cfg}
        return cls(
            sample_rate=sr,
            n_window_size=int(win),
            n_window_stride=int(hop),
            features=int(cfg.get("features", 64)),
            n_fft=cfg.get("n_fft"),
            generation=generation,
            batch_invariant=batch_invariant,
            **kwargs,
        )

    def to_nemo(self) -> dict:
        """The ``preprocessor:`` section of a NeMo config for this module."""
        f = self.featurizer
        return {
            "_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
            "sample_rate": f.sample_rate,
            "normalize": f.normalize,
            "window_size": f.win_length / f.sample_rate,
            "window_stride": f.hop_length / f.sample_rate,
            "window": f.window_type,
            "features": f.nfilt,
            "n_fft": f.n_fft,
            "log": f.log,
            "frame_splicing": 1,
            "dither": f.dither,
            "pad_to": f.pad_to,
            "pad_value": f.pad_value,
        }

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """wav: [B, S], lengths: [B] -> (mel [B, n_mels, T], mel_len [B]); see FilterbankFeatures."""
        return self.featurizer(wav, lengths)
