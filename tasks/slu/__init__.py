"""Spoken language understanding: intent classification and slot filling (CTC over subword
units with slot tags), scored with SLURP's metrics."""

from nestbench.tasks.slu.task import SLUTask

__all__ = ["SLUTask"]
