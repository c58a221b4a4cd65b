"""Test-wide settings.

The models in the default suite are small: one intra-op thread keeps them fast and keeps their
timing stable when the machine is shared (OpenMP threads spinning on a busy core can slow small
ops down by orders of magnitude).
"""

import torch

torch.set_num_threads(1)
