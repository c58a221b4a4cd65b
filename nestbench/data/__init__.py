"""Speech data for nestbench: NeMo-style manifests, the formats of the field's corpora (RTTM,
UEM, VoxCeleb trials, SLURP), importers for real corpora, a checker, and the embedded corpus
synthesised with eSpeak NG.

Public API::

    read_manifest, write_manifest, ManifestError          # manifest.py
    read_rttm, write_rttm, read_uem, write_uem, Segment    # rttm.py
    read_trials, write_trials, Trial, TrialResolver        # trials.py
    read_slurp, write_slurp, parse_annotation              # slurp.py
    manifest_path, trials_path, find_manifest, find_trials, task_folder   # layout.py
    synthesize_corpus, SIZES                               # synth.py
    ensure_embedded_corpus                                 # embedded.py (cached corpus)
    prepare_librispeech, prepare_voxceleb, prepare_slurp, prepare_rttm   # importers/
    check_path                                             # check.py

The command line is :data:`nestbench.data.cli.data` (``nestbench data synth|prepare|check``).
"""

from .check import Problem, Report, check_path
from .embedded import ensure_embedded_corpus
from .importers import prepare_librispeech, prepare_rttm, prepare_slurp, prepare_voxceleb
from .layout import LayoutError, find_manifest, find_trials, manifest_path, task_folder, trials_path
from .manifest import ManifestError, read_manifest, write_manifest
from .rttm import Segment, UEMRegion, overlap_ratio, read_rttm, read_uem, write_rttm, write_uem
from .slurp import annotation_problems, parse_annotation, read_slurp, record_entities, write_slurp
from .synth import SIZES, CorpusExistsError, synthesize_corpus
from .trials import Trial, TrialResolver, read_trials, write_trials

__all__ = [
    "ManifestError", "read_manifest", "write_manifest",
    "Segment", "UEMRegion", "read_rttm", "write_rttm", "read_uem", "write_uem", "overlap_ratio",
    "Trial", "TrialResolver", "read_trials", "write_trials",
    "read_slurp", "write_slurp", "parse_annotation", "record_entities", "annotation_problems",
    "SIZES", "CorpusExistsError", "synthesize_corpus", "ensure_embedded_corpus",
    "LayoutError", "manifest_path", "trials_path", "find_manifest", "find_trials", "task_folder",
    "prepare_librispeech", "prepare_voxceleb", "prepare_slurp", "prepare_rttm",
    "Problem", "Report", "check_path",
]  # fmt: skip
