"""Small encoders for tests: a correct one, broken ones the validator must reject, and a counter."""

from __future__ import annotations

import torch
from torch import nn

from nestbench.encoders.base import Encoder, EncoderOutput


class FramesEncoder(Encoder):
    """Frames of 160 samples, a linear projection and L residual MLP layers (padding invariant)."""

    frame_shift = 160

    def __init__(self, num_layers: int = 2, hidden_size: int = 8, name: str = "toy-frames"):
        super().__init__()
        self.name, self.num_layers, self.hidden_size = name, num_layers, hidden_size
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(160, hidden_size)
        self.layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(num_layers))
        for p in self.parameters():
            nn.init.normal_(p, std=0.1, generator=g)
        self.calls = 0

    def frames(self, wav: torch.Tensor, wav_lens: torch.Tensor):
        T = wav.shape[1] // 160
        x = wav[:, : T * 160].reshape(wav.shape[0], T, 160)
        return x, wav_lens // 160

    def forward(self, wav, wav_lens) -> EncoderOutput:
        self.calls += wav.shape[0]
        x, lens = self.frames(wav, wav_lens)
        h = [self.proj(x)]
        for layer in self.layers:
            h.append(h[-1] + torch.tanh(layer(h[-1])))
        return EncoderOutput(tuple(h), lens)


class BatchNormalisedEncoder(FramesEncoder):
    """Broken: normalises with statistics over the padded batch, so padding leaks in."""

    def forward(self, wav, wav_lens):
        out = super().forward(wav, wav_lens)
        h = tuple((x - x.mean(dim=(0, 1))) / (x.std(dim=(0, 1)) + 1e-5) for x in out.hidden_states)
        return EncoderOutput(h, out.lengths)


class DropoutEncoder(FramesEncoder):
    """Broken: random in eval mode."""

    def forward(self, wav, wav_lens):
        out = super().forward(wav, wav_lens)
        return EncoderOutput(
            tuple(torch.nn.functional.dropout(x, 0.5, training=True) for x in out.hidden_states),
            out.lengths,
        )


class WrongLayerCountEncoder(FramesEncoder):
    """Broken: claims one more layer than it returns."""

    def __init__(self):
        super().__init__()
        self.num_layers = 3


class WrongFrameShiftEncoder(FramesEncoder):
    """Broken: declares 320-sample frames but gives 160-sample frames."""

    frame_shift = 320


def make_toy(num_layers: int = 2) -> FramesEncoder:
    """A module:callable factory for load_encoder tests."""
    return FramesEncoder(num_layers=num_layers)


def not_an_encoder() -> dict:
    """Broken factory: returns a dict."""
    return {"hidden_states": None}


def module_without_contract() -> nn.Module:
    """Broken factory: a module without the contract attributes."""
    return nn.Linear(2, 2)


class SpectralEncoder(Encoder):
    """Log-magnitude spectra of 320-sample frames (20 ms, 50 frames/s), a fixed random projection
    and L residual layers: energy and frequency are linearly readable, as in a real encoder's
    features (the raw-sample projection of FramesEncoder is blind to loudness). Padding
    invariant (frame by frame)."""

    frame_shift = 320

    def __init__(self, num_layers: int = 2, hidden_size: int = 16, name: str = "toy-spectral"):
        super().__init__()
        self.name, self.num_layers, self.hidden_size = name, num_layers, hidden_size
        g = torch.Generator().manual_seed(0)
        self.proj = nn.Linear(161, hidden_size)
        self.layers = nn.ModuleList(nn.Linear(hidden_size, hidden_size) for _ in range(num_layers))
        for p in self.parameters():
            nn.init.normal_(p, std=0.3, generator=g)

    def forward(self, wav, wav_lens) -> EncoderOutput:
        T = wav.shape[1] // 320
        frames = wav[:, : T * 320].reshape(wav.shape[0], T, 320)
        spec = torch.log1p(10 * torch.fft.rfft(frames, dim=-1).abs())  # [B, T, 161]
        lens = wav_lens // 320
        mask = (torch.arange(T, device=wav.device)[None] < lens[:, None]).unsqueeze(-1)
        h = [self.proj(spec) * mask]
        for layer in self.layers:
            h.append((h[-1] + torch.tanh(layer(h[-1]))) * mask)
        return EncoderOutput(tuple(h), lens)


class LongestInputEncoder(FramesEncoder):
    """FramesEncoder that records, across instances, the longest input it was given (samples)."""

    longest = 0

    def forward(self, wav, wav_lens):
        LongestInputEncoder.longest = max(LongestInputEncoder.longest, int(wav.shape[1]))
        return super().forward(wav, wav_lens)


def dies_on_load():
    """Broken factory that kills its process (a worker dying of out-of-memory or a crash)."""
    import os

    os._exit(3)
