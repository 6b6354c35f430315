"""The one training loop shared by every training step.

``fit`` owns what all training steps have in common: the resumable, rank-sharded sampler, the
poly lr set from the step counter, the backward/step, the non-finite-loss stop, logging, tqdm,
periodic atomic checkpoints and resuming from them. A step supplies the model, the dataset, the
optimizer and ``loss_fn(batch) -> {"loss": total, <named terms>...}``.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from tool import dist
from tool.checkpoint import load_checkpoint, save_checkpoint, save_model
from tool.events import EventWriter
from tool.lr import set_poly_lr

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


def fit(*, name: str, model: torch.nn.Module, dataset: Dataset, optimizer: torch.optim.Optimizer,
        loss_fn: Callable[[dict], dict[str, torch.Tensor]], batch_size: int, epochs: int,
        max_steps: int | None, poly_power: float, ckpt_path: Path, final_path: Path, digest: str,
        seed: int, num_workers: int, collate_fn: Callable | None = None, checkpoint_every: int = 500,
        log_every: int = 50, scaler: torch.amp.GradScaler | None = None, accum_steps: int = 1,
        events: EventWriter | None = None) -> dict:
    """Train ``model`` and save its state dict to ``final_path``; resume from ``ckpt_path`` if present.

    The number of optimiser steps is (len(dataset) // (batch_size · world_size)) · epochs, capped by
    ``max_steps``; the lr of every param group follows ``poly_lr`` of the global step.
    ``accum_steps`` > 1 splits each batch of ``batch_size`` into that many micro-batches whose
    gradients (of loss / accum_steps) are accumulated before the one optimiser step: the same step
    with less memory. The logged terms are the mean over the micro-batches.
    ``events`` records the scalars of every logged iteration (``tool.events``, docs/tracking.md).
    Returns {"steps", "epochs", "loss" (mean of the last epoch), "<term>": ..., "seconds"}.
    """
    if accum_steps < 1 or batch_size % accum_steps:
        raise ValueError(f"{name}: accum_steps {accum_steps} must be >= 1 and divide the batch size {batch_size}")
    sampler = ResumableSampler(len(dataset), batch_size, seed)
    steps_per_epoch = sampler.per_rank // batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{name}: {len(dataset)} training images are fewer than one batch of {batch_size} "
                         f"per rank × {dist.world_size()} rank(s); lower the batch size")
    max_step = steps_per_epoch * epochs if max_steps is None else min(max_steps, steps_per_epoch * epochs)
    loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_fn, drop_last=True, pin_memory=torch.cuda.is_available(),
                        persistent_workers=False)

    step = 0
    ckpt = load_checkpoint(ckpt_path, model=model, optimizer=optimizer, digest=digest, scaler=scaler)
    if ckpt is not None:
        step = int(ckpt["step"])
        log.info("%s: resumed from %s at step %d/%d", name, ckpt_path, step, max_step)
        if step >= max_step and ckpt.get("extra", {}).get("summary"):
            # Training had finished; the crash came after (a step's post-processing, the marker).
            model.train()
            save_model(model, final_path)
            dist.barrier()
            return dict(ckpt["extra"]["summary"])
    model.train()
    events = events if events is not None else EventWriter(None, name)
    events.start(step, resumed=ckpt is not None)
    t0 = time.time()
    sums: dict[str, float] = defaultdict(float)
    count = 0
    bar = tqdm(total=max_step, initial=step, desc=name, disable=not dist.is_main(), dynamic_ncols=True,
               mininterval=2.0)
    epoch = step // steps_per_epoch
    while step < max_step:
        sampler.set_epoch(epoch, start=(step - epoch * steps_per_epoch) * batch_size)
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        sums.clear()
        count = 0
        for batch in loader:
            if step >= max_step:
                break
            if batch is None:   # every image of the batch was unreadable and skipped
                continue
            events.batch_ready()
            set_poly_lr(optimizer, step, max_step, poly_power)
            optimizer.zero_grad(set_to_none=True)
            losses: dict[str, torch.Tensor] = {}
            parts = _micro_batches(batch, accum_steps)
            for i, part in enumerate(parts):
                # DDP: reduce gradients once, on the last micro-batch
                sync = i == len(parts) - 1 or not isinstance(model, torch.nn.parallel.DistributedDataParallel)
                with contextlib.nullcontext() if sync else model.no_sync():
                    terms = loss_fn(part)
                    loss = terms["loss"]
                    if not torch.isfinite(loss.detach()):
                        bad = {k: float(v) for k, v in terms.items()}
                        raise NonFiniteLoss(f"{name}: non-finite loss at step {step} (terms {bad}); lower the lr or "
                                            f"check the inputs; the last checkpoint is {ckpt_path}")
                    if len(parts) > 1:
                        loss = loss / len(parts)
                    (scaler.scale(loss) if scaler is not None else loss).backward()
                for k, v in terms.items():
                    losses[k] = losses.get(k, 0.0) + v.detach() / len(parts)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            step += 1
            values = {k: float(v.detach()) for k, v in losses.items()}
            for k, v in values.items():
                sums[k] += v
            events.step_done(values, batch_size * dist.world_size())
            count += 1
            bar.update(1)
            if step % log_every == 0 or step == max_step:
                lr = optimizer.param_groups[0]["lr"]
                log.info("%s step %d/%d epoch %d %s lr %.3g", name, step, max_step, epoch,
                         " ".join(f"{k} {sums[k] / count:.4f}" for k in sums), lr)
                events.record(step, epoch, optimizer)
            if step % checkpoint_every == 0 and step < max_step:
                save_checkpoint(ckpt_path, model=model, optimizer=optimizer, step=step, epoch=epoch,
                                digest=digest, scaler=scaler)
                events.checkpoint(step)
            _after_step(step)
        epoch += 1
    bar.close()
    events.close()
    out = {"steps": step, "epochs": epochs, "seconds_train": round(time.time() - t0, 2)}
    out.update({k: sums[k] / max(count, 1) for k in sums})
    if not all(math.isfinite(v) for v in out.values() if isinstance(v, float)):
        raise NonFiniteLoss(f"{name}: non-finite summary {out}")
    # The finished state stays on disk until the runner has written the step's marker (it deletes
    # it then): a crash in what follows training resumes here instead of retraining.
    save_checkpoint(ckpt_path, model=model, optimizer=optimizer, step=step, epoch=epoch, digest=digest,
                    scaler=scaler, extra={"summary": out})
    save_model(model, final_path)
    dist.barrier()
    return out
