"""Encoders: the contract, the registry, NEST/FastConformer with NeMo checkpoint loading, baselines."""

from nestbench.encoders.base import Encoder, EncoderOutput
from nestbench.encoders.registry import (
    EncoderSpecError,
    available_encoders,
    load_encoder,
    register_encoder,
)

__all__ = [
    "Encoder",
    "EncoderOutput",
    "EncoderSpecError",
    "available_encoders",
    "load_encoder",
    "register_encoder",
]
