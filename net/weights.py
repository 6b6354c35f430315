"""Loading weights into a network: a strict ``load_state_dict`` whose error says what does not match.

At the bottom of the import layers (``net``) so that the networks that load their own pretrained
weights (DeepLab, WR38) and the engine's checkpoints share it.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


class CheckpointMismatch(RuntimeError):
    """A state dict's keys do not match the model; the message lists missing and unexpected keys."""


def load_state_dict_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict ``load_state_dict`` whose error lists the missing and unexpected keys and the source."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointMismatch(
            f"{source} does not match {type(module).__name__}: "
            f"{len(missing)} missing key(s) {missing[:10]}, {len(unexpected)} unexpected key(s) {unexpected[:10]}")
    shapes = [(k, tuple(state[k].shape), tuple(v.shape)) for k, v in own.items()
              if tuple(state[k].shape) != tuple(v.shape)]
    if shapes:
        raise CheckpointMismatch(f"{source}: shape mismatch (key, file, model): {shapes[:10]}")
    module.load_state_dict(state, strict=True)
