"""Model files shipped inside nestbench, and the encoders built from them.

``nest_embedded.nemo``: a small NEST (d_model 144, 4 heads, 6 layers, 4 codebooks of 256
classes) that nestbench pretrained on clean speech of the embedded corpus's training speakers
(``configs/pretrain/embedded.yaml``, then ``embedded_cooldown.yaml`` and
``embedded_cooldown2.yaml``: ``make pretrain-embedded`` remakes it). It is a NeMo ``.nemo`` file: NeMo
restores it with ``EncDecDenoiseMaskedTokenPredModel.restore_from``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

EMBEDDED_NEST = "nest_embedded.nemo"


def weights_path(name: str = EMBEDDED_NEST) -> Path:
    """Path of a shipped model file. Raises FileNotFoundError naming how to remake it."""
    path = Path(str(resources.files("nestbench.weights"))) / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: shipped model missing; remake it with `make pretrain-embedded` (nestbench "
            f"pretrain --config embedded, then --config embedded_cooldown and --config "
            f"embedded_cooldown2, and copy runs/pretrain/embedded-cooldown2/last.nemo there)"
        )
    return path


def embedded_nest(name: str = "nest-embedded", **kwargs):
    """The shipped pretrained NEST as an Encoder (eval mode); kwargs go to
    :meth:`NestEncoder.from_checkpoint` (e.g. ``generation``)."""
    from nestbench.encoders.nest import NestEncoder

    return NestEncoder.from_checkpoint(weights_path(), name=name, **kwargs)


def embedded_nest_random(seed: int = 0, name: str = "nest-embedded-random"):
    """The architecture and preprocessing of :func:`embedded_nest` with random weights drawn
    from ``seed`` (the same name always means the same weights): its untrained baseline."""
    import torch

    from nestbench.encoders.checkpoint import read_checkpoint
    from nestbench.encoders.nest import NestEncoder, NestModel

    config = read_checkpoint(weights_path()).config
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = NestModel.from_config(config, encoder_only=True)
    return NestEncoder(model, name=name).eval()
