"""Speaker diarization: per-frame activity of up to max_speakers speakers, PIT / Sortformer
hybrid losses, windowed long-form inference, RTTM out, DER/JER with pyannote.metrics."""

from nestbench.tasks.diar.task import DiarTask

__all__ = ["DiarTask"]
