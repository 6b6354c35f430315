"""Checkpoints: one dict, written atomically on rank 0, loaded strictly.

A training checkpoint holds ``model``, ``optimizer``, ``scaler``, ``step``, ``epoch``, ``digest`` (the
config digest of the step that wrote it) and ``rng`` (python, numpy, torch, cuda states). Every load
is ``weights_only`` (no code execution): the numpy RNG state's array types are the only extra globals
allowed, so a checkpoint carrying anything else is refused, never run. Final
models are plain state dicts (``model.pth``) so users and other code can load them directly.
"""
from __future__ import annotations

import io
import logging
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from net.weights import UnreadableWeights, load_state_dict_strict, read_weights, unsafe_global
from tool.engine import dist
from tool.engine.io import DamagedFile, UnsafeFile, write_bytes

log = logging.getLogger(__name__)


def _save(obj: Any, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


def save_model(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Save ``model``'s state dict (unwrapped from DDP) atomically, on rank 0 only."""
    if dist.is_main():
        _save(unwrap(model).state_dict(), path)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    step: int, epoch: int, digest: str, scaler: Any = None, extra: dict | None = None) -> None:
    """Write the resumable training state atomically (rank 0 only)."""
    if not dist.is_main():
        return
    _save({
        "model": unwrap(model).state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "epoch": epoch,
        "digest": digest,
        "rng": rng_state(),
        "extra": extra or {},
    }, path)


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    digest: str, scaler: Any = None) -> dict | None:
    """Restore a training checkpoint written for the same config ``digest``.

    Returns the checkpoint dict (with ``step``, ``epoch``), or None when there is none or it was
    written under another config (then training starts over and the log says why).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        ckpt = safe_load(path)
        if not isinstance(ckpt, dict) or not {"model", "optimizer", "step", "rng"} <= set(ckpt):
            raise ValueError("not a training checkpoint of this code (no model / optimizer / step / rng)")
    except Exception as e:    # noqa: BLE001 - torn (crash, full disk) or foreign: either way, start over
        if isinstance(e, pickle.UnpicklingError) and unsafe_global(e):   # it names code to run: never run it
            raise UnsafeFile(f"{path}: refusing to load this checkpoint: it holds objects outside tensors and RNG "
                             f"states ({unsafe_global(e)}); delete it to train from the start") from e
        aside = move_aside(path)
        log.warning("%s cannot be read (%s: %s); moved aside to %s, training starts over", path, type(e).__name__,
                    e, aside)
        return None
    if ckpt.get("digest") != digest:
        log.warning("ignoring %s: written under another configuration (digest %s, now %s); starting over",
                    path, ckpt.get("digest"), digest)
        return None
    load_state_dict_strict(unwrap(model), ckpt["model"], source=str(path))
    optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler") is not None:
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt


def _rng_globals() -> list:
    """What a numpy RNG state pickles to, beyond tensors: allow-listed for ``torch.load(weights_only=True)``."""
    core = getattr(np, "_core", None) or np.core
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def safe_load(path: str | os.PathLike) -> Any:
    """``torch.load`` without code execution: tensors, containers, numbers and numpy RNG states only
    (``weights_only=True`` with the numpy array types allow-listed). Anything else raises
    ``pickle.UnpicklingError`` naming the global it wanted."""
    with torch.serialization.safe_globals(_rng_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def move_aside(path: Path) -> Path:
    """Rename a damaged ``path`` to ``<name>.damaged`` (replacing an older one) and return the new path."""
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    return aside


def load_model_file(path: str | os.PathLike, key: str, producer: str | None = None) -> dict[str, torch.Tensor]:
    """Read a model state dict file, naming ``key`` (the config key or step that needs it) if absent.

    A file that does not load raises ``DamagedFile`` naming it; with ``producer`` (the step that
    writes it) the runner moves it aside and has that step rerun on the next run.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: model file {path} does not exist; run the step that writes it first")
    try:
        state = read_weights(path, key)
    except UnreadableWeights as e:
        if e.unsafe:
            raise UnsafeFile(str(e)) from e
        cause = e.__cause__
        redo = f"; step {producer} will retrain it on the next run" if producer else "; replace it"
        raise DamagedFile(f"{key}: {path} cannot be read ({type(cause).__name__}: "
                          f"{(str(cause).strip().splitlines() or [''])[0]}){redo}", [path], producer) from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a training checkpoint was given
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    return state
