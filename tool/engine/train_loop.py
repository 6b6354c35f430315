"""The one training loop shared by every training step.

``fit`` owns what all training steps have in common, in two visible parts: ``setup`` (the resumable,
rank-sharded sampler, the loader, the step count, resuming from the checkpoint) and ``train_step`` (the
poly lr set from the step counter, micro-batches, backward and step, the non-finite-loss stop); around
them, logging, tqdm and periodic atomic checkpoints. A step supplies its recipe (the ``train`` section of
its config: ``TrainRecipe``), the model, the dataset, the optimizer and
``loss_fn(batch) -> {"loss": total, <named terms>...}``.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import defaultdict
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from tool.engine import dist
from tool.engine.checkpoint import load_checkpoint, save_checkpoint, save_model
from tool.engine.config import TrainRecipe
from tool.engine.events import EventWriter
from tool.engine.lr import set_poly_lr
from tool.engine.runtime import Context

log = logging.getLogger(__name__)


class NonFiniteLoss(RuntimeError):
    """Training produced NaN/inf; the message names the step, the term and the iteration."""


def optimizer_step(optimizer: torch.optim.Optimizer, loss: torch.Tensor, name: str, step: int) -> float:
    """One plain step outside :func:`fit` (the toy model trainers): stop on a non-finite ``loss``, else
    zero the grads, backpropagate and step. Returns the loss value."""
    value = loss.item()
    if not math.isfinite(value):
        raise NonFiniteLoss(f"{name}: loss became {value} at step {step}; lower the lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


class ResumableSampler(Sampler[int]):
    """Per-epoch permutation from (seed, epoch), this rank's share, starting at a given position.

    Like DistributedSampler with drop_last, plus ``start`` so a resumed epoch skips the samples it
    already trained on without loading them.
    """

    def __init__(self, n: int, batch_size: int, seed: int, shuffle: bool = True):
        self.n, self.batch_size, self.seed, self.shuffle = n, batch_size, seed, shuffle
        self.epoch, self.start = 0, 0
        self.per_rank = (n // (batch_size * dist.world_size())) * batch_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        order = np.random.default_rng((self.seed, self.epoch)).permutation(self.n) if self.shuffle \
            else np.arange(self.n)
        mine = order[dist.rank()::dist.world_size()][: self.per_rank]
        return iter(mine[self.start:].tolist())

    def __len__(self) -> int:
        return self.per_rank - self.start


def _after_step(step: int) -> None:
    """Called after every optimiser step; tests replace it to simulate a crash."""


def _micro_batches(batch: dict, n: int) -> list[dict]:
    """``batch`` cut into ``n`` near-equal, non-empty micro-batches along dim 0 (tensors and lists).

    ``[batch]`` itself for n = 1. A batch shortened by skipped images may give fewer parts.
    """
    if n == 1:
        return [batch]
    size = len(next(iter(batch.values())))
    bounds = [round(i * size / n) for i in range(n + 1)]
    return [{k: v[a:b] for k, v in batch.items()} for a, b in itertools.pairwise(bounds) if b > a]


@dataclass
class Training:
    """One training run's state: what :func:`setup` made and :func:`train_step` advances."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    recipe: TrainRecipe
    sampler: ResumableSampler
    loader: DataLoader
    steps_per_epoch: int
    max_step: int
    ckpt_path: Path
    digest: str
    scaler: torch.amp.GradScaler | None = None
    accum_steps: int = 1
    step: int = 0
    summary: dict | None = None     # set when a checkpoint of the finished run was found (nothing left to train)
    # what the sessions before a resume counted (the checkpoint's ``extra``): the summary covers the whole run
    carried: dict | None = None


def setup(ctx: Context, recipe: TrainRecipe, *, model: torch.nn.Module, dataset: Dataset,
          optimizer: torch.optim.Optimizer, num_workers: int, collate_fn: Callable | None = None,
          scaler: torch.amp.GradScaler | None = None, accum_steps: int = 1) -> Training:
    """The sampler, loader and step count of ``recipe`` on ``dataset``, resumed from the step's checkpoint
    (``ctx.checkpoint``, kept under ``ctx.digest``) if there is one.

    The number of optimiser steps is (len(dataset) // (batch_size · world_size)) · epochs, capped by
    ``max_steps`` (``epochs`` null: ``max_steps`` alone)."""
    name, r = ctx.step, recipe
    if not isinstance(dataset, Sized):    # the sampler draws from its length
        raise TypeError(f"{name}: the training dataset ({type(dataset).__name__}) has no len()")
    if accum_steps < 1 or r.batch_size % accum_steps:
        raise ValueError(f"{name}: accum_steps {accum_steps} must be >= 1 and divide the batch size {r.batch_size}")
    sampler = ResumableSampler(len(dataset), r.batch_size, ctx.seed)
    steps_per_epoch = sampler.per_rank // r.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{name}: {len(dataset)} training images are fewer than one batch of {r.batch_size} "
                         f"per rank × {dist.world_size()} rank(s); lower the batch size")
    if r.epochs is None and r.max_steps is None:
        raise ValueError(f"{name}: the recipe needs epochs or max_steps (both are null)")
    by_epochs = steps_per_epoch * r.epochs if r.epochs is not None else None
    max_step = min(s for s in (by_epochs, r.max_steps) if s is not None)
    loader = DataLoader(dataset, batch_size=r.batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=True, pin_memory=torch.cuda.is_available(),
                        persistent_workers=False)
    t = Training(name, model, optimizer, r, sampler, loader, steps_per_epoch, max_step, ctx.checkpoint, ctx.digest,
                 scaler, accum_steps)
    ckpt = load_checkpoint(t.ckpt_path, model=model, optimizer=optimizer, digest=t.digest, scaler=scaler)
    if ckpt is not None:
        t.step = int(ckpt["step"])
        log.info("%s: resumed from %s at step %d/%d", name, t.ckpt_path, t.step, max_step)
        if t.step >= max_step and ckpt.get("extra", {}).get("summary"):
            t.summary = dict(ckpt["extra"]["summary"])
        t.carried = {**ckpt.get("extra", {}), "epoch": int(ckpt.get("epoch", -1))}
    model.train()
    return t


def train_step(t: Training, batch: dict, loss_fn: Callable[[dict], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """One optimiser step on ``batch``: the poly lr of the step, the loss (cut into ``accum_steps``
    micro-batches whose gradients of loss / accum_steps add up to the step's), backward, the step.

    Stops on a non-finite loss, naming the term and the step. Returns the terms (detached; the mean over the
    micro-batches)."""
    set_poly_lr(t.optimizer, t.step, t.max_step, t.recipe.poly_power)
    t.optimizer.zero_grad(set_to_none=True)
    losses: dict[str, torch.Tensor] = {}
    parts = _micro_batches(batch, t.accum_steps)
    for i, part in enumerate(parts):
        # DDP: reduce gradients once, on the last micro-batch
        model, last = t.model, i == len(parts) - 1
        with model.no_sync() if isinstance(model, torch.nn.parallel.DistributedDataParallel) and not last \
                else contextlib.nullcontext():
            terms = loss_fn(part)
            loss = terms["loss"]
            low = sorted(k for k, v in terms.items() if v.dtype != torch.float32)
            if low:   # a loss under autocast must come from .float() outputs: bf16 keeps 8 bits of mantissa
                raise TypeError(f"{t.name}: loss term(s) {low} are {terms[low[0]].dtype}, not float32; compute the "
                                "loss from .float() outputs of the autocast region")
            if not torch.isfinite(loss.detach()):
                bad = {k: float(v) for k, v in terms.items()}
                raise NonFiniteLoss(f"{t.name}: non-finite loss at step {t.step} (terms {bad}); lower the lr or "
                                    f"check the inputs; the last checkpoint is {t.ckpt_path}")
            if len(parts) > 1:
                loss = loss / len(parts)
            (t.scaler.scale(loss) if t.scaler is not None else loss).backward()
        for k, v in terms.items():
            losses[k] = losses.get(k, 0.0) + v.detach() / len(parts)
    if t.scaler is not None:
        t.scaler.step(t.optimizer)
        t.scaler.update()
    else:
        t.optimizer.step()
    t.step += 1
    return losses


def snapshot_path(final_path: Path, step: int) -> Path:
    """Where ``recipe.snapshots`` keeps the model after ``step`` optimiser steps: ``<stem>.iter<step><suffix>``."""
    return final_path.with_name(f"{final_path.stem}.iter{step}{final_path.suffix}")


def fit(ctx: Context, recipe: TrainRecipe, *, model: torch.nn.Module, dataset: Dataset,
        optimizer: torch.optim.Optimizer, loss_fn: Callable[[dict], dict[str, torch.Tensor]], final_path: Path,
        num_workers: int, collate_fn: Callable | None = None, scaler: torch.amp.GradScaler | None = None,
        accum_steps: int = 1, events: EventWriter | None = None) -> dict:
    """Train ``model`` by ``recipe`` and save its state dict to ``final_path``; resume from the step's
    checkpoint if present (:func:`setup`), one :func:`train_step` per batch, logging every
    ``recipe.log_every`` and a resumable checkpoint every ``recipe.checkpoint_every`` steps. ``events``
    records the scalars of every logged iteration (``tool.engine.events``, docs/tracking.md).

    Returns {"steps", "epochs", "loss" (mean of the last epoch), "<term>": ..., "images" (trained, all ranks),
    "seconds_train", "images_per_s"}
    of the whole run: a resumed run carries the sums of its epoch, its seconds and images in the checkpoint,
    so its summary equals an uninterrupted run's (up to the time figures).
    """
    t = setup(ctx, recipe, model=model, dataset=dataset, optimizer=optimizer, num_workers=num_workers,
              collate_fn=collate_fn, scaler=scaler, accum_steps=accum_steps)
    if t.summary is not None:
        # Training had finished; the crash came after (a step's post-processing, the marker).
        save_model(model, final_path)
        dist.barrier()
        return t.summary
    events = events if events is not None else EventWriter(None, t.name)
    events.start(t.step, resumed=t.step > 0)
    if t.step == 0 and 0 in recipe.snapshots:
        save_model(model, snapshot_path(final_path, 0))
    t0 = time.time()
    sums: dict[str, float] = defaultdict(float)
    count = 0
    carried = t.carried or {}
    seconds_before, images = float(carried.get("seconds_train", 0.0)), int(carried.get("images", 0))

    def tally() -> dict:
        """What a checkpoint carries for the summary: the current epoch's sums, the time and images so far."""
        return {"epoch_sums": dict(sums), "epoch_count": count, "images": images,
                "seconds_train": seconds_before + time.time() - t0}

    bar = tqdm(total=t.max_step, initial=t.step, desc=t.name, disable=not dist.is_main(), dynamic_ncols=True,
               mininterval=2.0)
    epoch = t.step // t.steps_per_epoch
    while t.step < t.max_step:
        t.sampler.set_epoch(epoch, start=(t.step - epoch * t.steps_per_epoch) * recipe.batch_size)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        sums.clear()
        count = 0
        if carried.get("epoch") == epoch and "epoch_sums" in carried:   # resumed inside this epoch
            sums.update(carried["epoch_sums"])
            count = int(carried["epoch_count"])
        carried = {}
        for batch in t.loader:
            if t.step >= t.max_step:
                break
            if batch is None:   # every image of the batch was unreadable and skipped
                continue
            events.batch_ready()
            values = {k: float(v) for k, v in train_step(t, batch, loss_fn).items()}
            for k, v in values.items():
                sums[k] += v
            events.step_done(values, recipe.batch_size * dist.world_size())
            count += 1
            images += len(next(iter(batch.values()))) * dist.world_size()   # (a batch short of skipped images)
            bar.update(1)
            if t.step % recipe.log_every == 0 or t.step == t.max_step:
                log.info("%s step %d/%d epoch %d %s lr %.3g", t.name, t.step, t.max_step, epoch,
                         " ".join(f"{k} {sums[k] / count:.4f}" for k in sums), optimizer.param_groups[0]["lr"])
                events.record(t.step, epoch, optimizer)
            if t.step % recipe.checkpoint_every == 0 and t.step < t.max_step:
                save_checkpoint(t.ckpt_path, model=model, optimizer=optimizer, step=t.step, epoch=epoch,
                                digest=t.digest, scaler=scaler, extra=tally())
                events.checkpoint(t.step)
            if t.step in recipe.snapshots:
                save_model(model, snapshot_path(final_path, t.step))
            _after_step(t.step)
        epoch += 1
    bar.close()
    events.close()
    epochs = recipe.epochs if recipe.epochs is not None else math.ceil(t.max_step / t.steps_per_epoch)
    seconds = seconds_before + time.time() - t0
    out = {"steps": t.step, "epochs": epochs, "images": images, "seconds_train": round(seconds, 2),
           "images_per_s": round(images / seconds, 3) if seconds > 0 else None}
    out.update({k: sums[k] / max(count, 1) for k in sums})
    if not all(math.isfinite(v) for v in out.values() if isinstance(v, float)):
        raise NonFiniteLoss(f"{t.name}: non-finite summary {out}")
    # The finished state stays on disk until the runner has written the step's marker (it deletes
    # it then): a crash in what follows training resumes here instead of retraining.
    save_checkpoint(t.ckpt_path, model=model, optimizer=optimizer, step=t.step, epoch=epoch, digest=t.digest,
                    scaler=scaler, extra={"summary": out, **tally()})
    save_model(model, final_path)
    dist.barrier()
    return out
