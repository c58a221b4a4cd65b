"""nestbench: evaluate self-supervised speech encoders (NEST and others) on downstream tasks."""

from nestbench.audio import AudioError, load_audio
from nestbench.encoders import (
    Encoder,
    EncoderOutput,
    EncoderSpecError,
    available_encoders,
    load_encoder,
    register_encoder,
)

__version__ = "0.1.0"

__all__ = [
    "AudioError",
    "Encoder",
    "EncoderOutput",
    "EncoderSpecError",
    "available_encoders",
    "load_audio",
    "load_encoder",
    "register_encoder",
]
