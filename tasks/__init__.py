"""Downstream tasks (one sub-package per task), installed as ``nestbench.tasks``."""
