"""Importers: real corpora in their own layouts -> nestbench manifests (one module per corpus).

Each ``prepare_*`` function reads a corpus where it lies (the audio is not copied), validates it,
and writes NeMo-style manifests (paths relative to the manifest) plus the task's reference files
into an output folder, returning the paths it wrote.
"""

from .librispeech import prepare_librispeech
from .rttm import prepare_rttm
from .slurp import prepare_slurp
from .voxceleb import prepare_voxceleb

__all__ = ["prepare_librispeech", "prepare_voxceleb", "prepare_slurp", "prepare_rttm"]
