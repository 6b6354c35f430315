"""Loading weights into a network: a strict ``load_state_dict`` whose error says what does not match.

At the bottom of the import layers (``net``) so that the networks that load their own pretrained
weights (DeepLab, WR38) and the engine's checkpoints share it.
"""
from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Any

import torch


class CheckpointMismatch(RuntimeError):
    """A state dict's keys do not match the model; the message lists missing and unexpected keys."""


class UnreadableWeights(ValueError):
    """A weights file that does not load: torn, not a torch file, or (``unsafe``: the global it names) a pickle
    that would run code. The message names the config key and the file."""

    def __init__(self, message: str, unsafe: str | None = None):
        super().__init__(message)
        self.unsafe = unsafe


def unsafe_global(e: BaseException) -> str | None:
    """The "Unsupported global ..." line of a weights-only refusal, or None for another error."""
    if not isinstance(e, pickle.UnpicklingError):
        return None
    return next((ln.strip() for ln in str(e).splitlines() if "unsupported global" in ln.lower()), None)


def read_weights(path: str | os.PathLike, key: str) -> Any:
    """``torch.load(weights_only=True)`` of a weights file named by config ``key`` (``cam.pretrained``, ...): the
    one way weight files are read. No code in the file runs; a file that does not load raises one line
    (``UnreadableWeights``) naming ``key`` and the file, never the unpickler's traceback."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:   # noqa: BLE001 - torn, foreign or unsafe: each named below
        unsafe = unsafe_global(e)
        if unsafe:
            raise UnreadableWeights(f"{key}: {path} is not a plain state dict: loading it would run code it names "
                                    f"({unsafe}). Only load weight files you trust", unsafe) from e
        first = (str(e).strip().splitlines() or [""])[0]
        raise UnreadableWeights(f"{key}: {path} cannot be read as torch weights ({type(e).__name__}: {first}); "
                                f"is it complete (download it again) and a torch.save file?") from e


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
