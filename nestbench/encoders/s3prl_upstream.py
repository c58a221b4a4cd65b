"""``s3prl:NAME`` encoders: an s3prl upstream (``wav2vec2_local``, ``hubert_local``,
``wavlm_local``, ``data2vec_local``, ... any function of an ``s3prl.upstream.<family>.hubconf``)
built from a local checkpoint file, ``encoder.kwargs.ckpt=PATH`` (s3prl's ``ckpt=``; nothing is
downloaded).

The upstream is found in its family's ``hubconf`` module directly rather than through
``s3prl.hub``, which imports every upstream and fails on upstreams that need what is not
installed (with torchaudio 2.9, ``byol_s`` calls the removed ``set_audio_backend``). Every hidden
state the upstream returns is a layer (s3prl's ``hidden_states``: for the wav2vec 2.0 family, the
input of each transformer layer and the encoder's output). Each utterance goes through the
upstream alone, so its features never depend on the batch (s3prl pads a batch, and the base
models' group norm sees the padding); the frame shift is measured on 1 s and 2 s of silence.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import torch

from nestbench.encoders.base import Encoder, EncoderOutput


class S3PRLEncoderError(ValueError):
    """An ``s3prl:`` spec that cannot be built (the message names what is missing)."""


def find_upstream(name: str):
    """The upstream function ``name`` of an ``s3prl.upstream.*.hubconf`` module."""
    try:
        import s3prl.upstream as upstreams
    except ImportError as e:
        raise S3PRLEncoderError(
            f"s3prl:{name} needs the s3prl package: pip install 's3prl' ({e})"
        ) from e
    family = name.removesuffix("_local").removesuffix("_url").split("_")[0]
    names = [m.name for m in pkgutil.iter_modules(upstreams.__path__)]
    order = sorted(names, key=lambda m: (m != family, m))  # its own family first
    for module in order:
        try:
            hubconf = importlib.import_module(f"s3prl.upstream.{module}.hubconf")
        except Exception:  # an upstream whose own dependencies are missing
            continue
        fn = getattr(hubconf, name, None)
        if callable(fn):
            return fn
    raise S3PRLEncoderError(
        f"s3prl:{name}: no upstream of that name in s3prl.upstream.*.hubconf "
        "(for example wav2vec2_local, hubert_local, wavlm_local, data2vec_local)"
    )


class S3PRLEncoder(Encoder):
    """An s3prl upstream as an nestbench encoder (see the module docstring).

    Args:
        upstream: the upstream's name (``wav2vec2_local``, ...).
        ckpt: the local checkpoint file the upstream loads (``weights``: the same, the name
            ``nestbench encoders check --weights`` passes).
        kwargs: passed to the upstream function.
    """

    def __init__(
        self,
        upstream: str,
        ckpt: str | Path | None = None,
        weights: str | Path | None = None,
        **kwargs,
    ):
        super().__init__()
        self.name = f"s3prl:{upstream}"
        ckpt = ckpt if ckpt is not None else weights  # `encoders check --weights PATH`
        if ckpt is None:
            raise S3PRLEncoderError(
                f"s3prl:{upstream} needs a local checkpoint: encoder.kwargs.ckpt=PATH "
                "(nothing is downloaded)"
            )
        path = Path(ckpt).expanduser()
        if not path.is_file():
            raise S3PRLEncoderError(f"s3prl:{upstream}: checkpoint file not found: {path}")
        fn = find_upstream(upstream)
        try:
            self.model = fn(ckpt=str(path), **kwargs)
        except Exception as e:
            raise S3PRLEncoderError(f"s3prl:{upstream}: cannot build it from {path} ({e})") from e
        self.model.eval()
        self.ckpt = str(path)
        with torch.inference_mode():  # 1 s and 2 s of silence: sizes and frame shift
            probe = self.model([torch.zeros(16000)])["hidden_states"]
            longer = self.model([torch.zeros(32000)])["hidden_states"]
        self.num_layers = len(probe) - 1
        self.hidden_size = int(probe[0].shape[-1])
        # measured, not get_downsample_rates (s3prl's wav2vec 2.0 family returns 320 whatever
        # its convolutions are)
        self.frame_shift = int(round(16000 / (longer[0].shape[1] - probe[0].shape[1])))

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        """wav [B, S], wav_lens [B] -> L+1 hidden states [B, T, D] and lengths [B]."""
        per = [self.model([wav[i, : int(n)]])["hidden_states"] for i, n in enumerate(wav_lens)]
        lengths = torch.tensor([int(h[0].shape[1]) for h in per], device=wav.device)
        t = int(lengths.max())
        states = tuple(
            torch.cat([torch.nn.functional.pad(h[k], (0, 0, 0, t - h[k].shape[1])) for h in per])
            for k in range(len(per[0]))
        )
        return EncoderOutput(states, lengths)
