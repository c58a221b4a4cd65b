"""Speaker verification: ECAPA-TDNN on the featurizer output, AAM softmax, cosine trials."""

from nestbench.tasks.sv.task import SVTask

__all__ = ["SVTask"]
