"""Step 3, ``train_cam``: the baseline ResNet-50 CAM classifier (IRN recipe; paper §3.1, docs/design.md §5).

Reads: images and image-level labels of ``dataset.train_split``.
Writes: ``cam_baseline/model.pth`` (a ``CAMNet`` state dict); resumable via ``checkpoints/train_cam.pth``.
Recipe: resize-long 320–640, flip, crop 512, batch 16, 5 epochs, SGD lr 0.1 (classifier 10×),
wd 1e-4, poly 0.9, multilabel soft-margin loss, FixedBatchNorm, frozen stem.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from net.resnet50_cam import CAMNet, map_official_cam_state
from net.weights import load_state_dict_strict
from tool.data.cam_data import ClassificationCrops, collate_skip_none
from tool.data.imutils import normalize_on_device
from tool.data.registry import build_dataset, read_identity
from tool.engine import dist
from tool.engine.checkpoint import load_model_file
from tool.engine.config import Config
from tool.engine.events import EventWriter
from tool.engine.lr import sgd
from tool.engine.runtime import Context, autocast
from tool.engine.train_loop import fit

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "cam", "seed")
INPUTS: tuple[str, ...] = ()
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("cam.pretrained", "cam.init_checkpoint")


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of ``dataset.train_split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.dataset.train_split: ("labels",)})


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.cam
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    skips = ctx.skips()
    ids = skips.filter(ds.ids(cfg.dataset.train_split), ds)
    labels = ds.labels(ids)
    data = ClassificationCrops(ds, ids, labels, crop=c.train.crop_size, resize_long=c.resize_long, hflip=c.train.hflip,
                               seed=ctx.seed, skip_bad=skips)

    model = CAMNet(ds.num_classes, pretrained=c.pretrained if c.init_checkpoint is None else None, bn=c.bn,
                   frozen_stages=c.frozen_stages)
    if c.init_checkpoint is not None:
        state = map_official_cam_state(load_model_file(c.init_checkpoint, "cam.init_checkpoint"))
        load_state_dict_strict(model, state, source=c.init_checkpoint)
        log.info("CAM net initialised from %s", c.init_checkpoint)
    net = dist.sync_batchnorm(model.to(ctx.device), ctx.device, c.bn == "batch")
    backbone, head = net.param_groups()
    wrapped = dist.wrap_ddp(net, ctx.device)                # DDP under torchrun, else net itself
    optimizer = sgd([{"params": backbone, "lr": c.train.lr},
                     {"params": head, "lr": c.train.lr * c.classifier_lr_mult}],
                    momentum=c.train.momentum, weight_decay=c.train.weight_decay)

    def loss_fn(batch: dict) -> dict[str, torch.Tensor]:
        x = normalize_on_device(batch["img"].to(ctx.device, non_blocking=True),
                                batch["valid"].to(ctx.device, non_blocking=True))   # [N, 3, C, C]
        with autocast(c.precision, ctx.device, key="cam.precision"):
            logits = wrapped(x)                                                     # [N, K]
        loss = F.multilabel_soft_margin_loss(logits.float(), batch["label"].to(ctx.device))
        return {"loss": loss}

    log.info("train_cam: %d images of %s, batch %d, %d epoch(s)", len(ids), cfg.dataset.train_split,
             c.train.batch_size, c.train.epochs)
    metrics = fit(ctx, c.train, model=wrapped, dataset=data, optimizer=optimizer, loss_fn=loss_fn,
                  final_path=ctx.paths.cam_baseline_model, num_workers=cfg.num_workers, collate_fn=collate_skip_none,
                  events=EventWriter.for_step(cfg, ctx, ctx.step))
    metrics["num_images"] = len(ids)
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step train_cam --config <yaml> [--set k=v] [--force]")
