"""The encoders nestbench ships, registered by name (``nestbench encoders list``)."""

from __future__ import annotations

from functools import partial

from nestbench.encoders.registry import register_encoder


def _nest(size: str, seed: int = 0, **kwargs):
    """Random init from a fixed seed, so the same name always means the same weights."""
    import torch

    from nestbench.encoders.nest import NestEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NestEncoder.from_size(size, **kwargs)


def _nest_embedded(**kwargs):
    from nestbench.weights import embedded_nest

    return embedded_nest(**kwargs)


def _shipped_weights() -> dict[str, str]:
    # a new shipped model makes new nest-embedded runs. (nest-embedded-random reads only the
    # file's architecture, and its weights come from a fixed seed: its runs stay valid.)
    from nestbench.fingerprint import file_digest
    from nestbench.weights import weights_path

    return {"shipped": file_digest(weights_path())}


def _nest_embedded_random(**kwargs):
    from nestbench.weights import embedded_nest_random

    return embedded_nest_random(**kwargs)


def _fbank(**kwargs):
    from nestbench.encoders.fbank import FbankEncoder

    return FbankEncoder(**kwargs)


def _torchaudio(arch: str, weights=None):
    from nestbench.encoders.torchaudio_ssl import TorchaudioSSLEncoder

    return TorchaudioSSLEncoder(arch, weights=weights)


for _size, _desc in (
    ("small", "NEST-S FastConformer, d176, 16 layers, random init"),
    ("medium", "NEST-M FastConformer, d256, 16 layers, random init"),
    ("large", "NEST-L FastConformer, d512, 18 layers, random init (ssl_en_nest_large_v1.0 layout)"),
    ("xlarge", "NEST-XL FastConformer, d1024, 24 layers, random init"),
):
    register_encoder(f"nest-{_size}", partial(_nest, _size), description=_desc)

register_encoder(
    "nest-embedded",
    _nest_embedded,
    description="NEST d144, 6 layers, pretrained by nestbench on the embedded corpus's train "
    "splits (shipped; the default encoder)",
    inputs=_shipped_weights,
)
register_encoder(
    "nest-embedded-random",
    _nest_embedded_random,
    description="nest-embedded's architecture with random weights (seed=0): its untrained baseline",
)
register_encoder(
    "fbank",
    _fbank,
    description="normalised 80-dim log-mel (NeMo's preprocessor), one layer, 10 ms frames",
)
for _arch in ("wav2vec2-base", "hubert-base", "wavlm-base"):
    register_encoder(
        _arch,
        partial(_torchaudio, _arch),
        description=f"torchaudio {_arch.replace('-', '_')}, 12 layers, 20 ms frames; weights=PATH "
        "for pretrained weights (random init otherwise)",
    )
