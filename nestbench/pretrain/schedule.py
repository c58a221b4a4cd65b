"""NeMo's ``NoamAnnealing`` learning-rate schedule (``nemo/core/optim/lr_scheduler.py``).

``lr(step) = base_lr * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` with
``step = max(1, scheduler step)``; after warmup the rate never falls below ``min_lr``
(without warmup: ``base_lr * d_model^-0.5 * step^-0.5``). ``base_lr`` is a scale, not the peak:
the peak, at ``step == warmup``, is ``base_lr * (d_model * warmup)^-0.5``.
"""

from __future__ import annotations

import torch


def noam_lr(
    step: int, base_lr: float, d_model: int, warmup_steps: int = 0, min_lr: float = 0.0
) -> float:
    """The learning rate at scheduler step ``step`` (see the module docstring)."""
    step = max(1, step)
    norm = d_model**-0.5
    if warmup_steps > 0:
        lr = base_lr * norm * min(step**-0.5, step * warmup_steps**-1.5)
    else:
        lr = base_lr * norm * step**-0.5
    if step > warmup_steps:
        lr = max(lr, min_lr)
    return lr


class NoamAnnealing(torch.optim.lr_scheduler.LambdaLR):
    """Noam schedule as a LambdaLR over each group's initial lr (step it once per optimizer step).

    ``warmup_ratio`` (a fraction of ``max_steps``) may replace ``warmup_steps``, as in NeMo.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        d_model: int,
        warmup_steps: int | None = None,
        warmup_ratio: float | None = None,
        max_steps: int | None = None,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ):
        if warmup_steps is not None and warmup_ratio is not None:
            raise ValueError("NoamAnnealing: give warmup_steps or warmup_ratio, not both")
        if warmup_ratio is not None:
            if max_steps is None or max_steps <= 0:
                raise ValueError("NoamAnnealing: warmup_ratio needs max_steps")
            warmup_steps = int(warmup_ratio * max_steps)
        self.d_model = d_model
        self.warmup_steps = int(warmup_steps or 0)
        self.min_lr = float(min_lr)
        for group in optimizer.param_groups:
            base = group.get("initial_lr", group["lr"])
            if base < self.min_lr:
                raise ValueError(f"NoamAnnealing: lr {base} is below min_lr {self.min_lr}")
        lambdas = [
            self._factor(group.get("initial_lr", group["lr"])) for group in optimizer.param_groups
        ]
        super().__init__(optimizer, lambdas, last_epoch)

    def _factor(self, base_lr: float):
        def factor(step: int) -> float:
            if base_lr == 0:
                return 0.0
            return noam_lr(step, base_lr, self.d_model, self.warmup_steps, self.min_lr) / base_lr

        return factor
