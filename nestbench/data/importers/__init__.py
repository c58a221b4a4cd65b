"""Importers: real corpora in their own layouts -> nestbench manifests (one module per corpus).

Each ``prepare_*`` function reads a corpus where it lies (the audio is not copied), validates it,
and writes the train, dev and eval splits of the task it serves in the data layout of
:mod:`nestbench.data.layout` (``OUT/<task>/<split>_manifest.json``, paths relative to the
manifest, plus the task's reference files), returning the paths it wrote. Everything is read
before anything is written, and an existing split file is replaced only with ``force``.
"""

from .librispeech import prepare_librispeech
from .rttm import prepare_rttm
from .slurp import prepare_slurp
from .voxceleb import prepare_voxceleb

__all__ = ["prepare_librispeech", "prepare_voxceleb", "prepare_slurp", "prepare_rttm"]
