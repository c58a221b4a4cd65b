"""Speech recognition: CTC over sentencepiece units on the featurizer output, WER/CER with jiwer."""

from nestbench.tasks.asr.task import ASRTask

__all__ = ["ASRTask"]
