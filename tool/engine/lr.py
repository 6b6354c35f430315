"""Learning-rate schedule as a pure function of the step, and the SGD setup."""
from __future__ import annotations

import torch


def poly_lr(step: int, base: float, max_step: int, power: float) -> float:
    """Polynomial decay ``base * (1 - step / max_step) ** power`` (IRN's PolyOptimizer).

    The official optimiser only updates the lr while ``step < max_step``; past it the last value
    stays. We return that last value (step = max_step - 1) for the same behaviour.
    """
    if max_step <= 0:
        raise ValueError(f"max_step must be positive, got {max_step}")
    step = min(step, max_step - 1)
    return base * (1.0 - step / max_step) ** power


def warmup_poly_lr(step: int, base: float, max_step: int, warmup: int, power: float = 0.9) -> float:
    """:func:`poly_lr` times a linear warm-up over the first ``warmup`` steps (the toy model trainers)."""
    return poly_lr(step, base, max_step, power) * min(1.0, (step + 1) / max(1, warmup))


def set_poly_lr(optimizer: torch.optim.Optimizer, step: int, max_step: int, power: float) -> None:
    """Set every param group's lr from its ``initial_lr`` for ``step``."""
    for group in optimizer.param_groups:
        group["lr"] = poly_lr(step, group["initial_lr"], max_step, power)


def sgd(groups: list[dict], momentum: float, weight_decay: float, nesterov: bool = False) -> torch.optim.SGD:
    """SGD over ``groups`` (each with ``params`` and ``lr``); stores each group's ``initial_lr``.

    Groups may carry their own ``weight_decay`` (e.g. 0 for biases); otherwise ``weight_decay``.
    """
    for g in groups:
        g.setdefault("weight_decay", weight_decay)
        g["initial_lr"] = g["lr"]
    return torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov)
