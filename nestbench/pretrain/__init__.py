"""NEST self-supervised pretraining (NeMo's ``EncDecDenoiseMaskedTokenPredModel`` recipe).

- :mod:`~nestbench.pretrain.augment`: speaker/noise augmentation of the encoder's input;
- :mod:`~nestbench.pretrain.data`: manifests to length-bucketed batches;
- :mod:`~nestbench.pretrain.schedule`: NeMo's Noam learning-rate schedule;
- :mod:`~nestbench.pretrain.module`: the LightningModule (training and validation steps, AdamW);
- :mod:`~nestbench.pretrain.config`: ``configs/pretrain/*.yaml`` resolution and the model;
- :mod:`~nestbench.pretrain.train`: :func:`pretrain`, the Trainer, checkpoints and .nemo export;
- :mod:`~nestbench.pretrain.evaluate`: masked-token accuracy against chance and majority.

The masking, quantizer, decoder and loss live in :mod:`nestbench.encoders.ssl_modules`, the
model in :mod:`nestbench.encoders.nest`, the .nemo writer in
:mod:`nestbench.encoders.nemo_writer`.
"""

from nestbench.pretrain.augment import AugmentConfig, SpeakerNoiseAugmentation, colored_noise
from nestbench.pretrain.config import build_model, resolve_pretrain_config
from nestbench.pretrain.schedule import NoamAnnealing, noam_lr

MultiSpeakerNoiseAugmentation = SpeakerNoiseAugmentation
"""NeMo's name for the augmentation (one segment, one extra speaker)."""


def pretrain(cfg):
    """Run NEST pretraining from a resolved config (see :func:`nestbench.pretrain.train.pretrain`)."""
    from nestbench.pretrain.train import pretrain as _pretrain

    return _pretrain(cfg)


__all__ = [
    "AugmentConfig",
    "MultiSpeakerNoiseAugmentation",
    "NoamAnnealing",
    "SpeakerNoiseAugmentation",
    "build_model",
    "colored_noise",
    "noam_lr",
    "pretrain",
    "resolve_pretrain_config",
]
