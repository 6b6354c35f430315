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
from tool import dist
from tool.checkpoint import load_model_file, load_state_dict_strict
from tool.config import Config
from tool.data import ClassificationCrops, collate_skip_none
from tool.datasets import build_dataset
from tool.events import EventWriter
from tool.imutils import normalize_on_device
from tool.lr import sgd
from tool.runner import skips_of, step_digest
from tool.runtime import Context
from tool.train_loop import fit

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "cam", "seed")
INPUTS: tuple[str, ...] = ()
# local weights whose change reruns the step (tool.runner.step_digest)
FILES = ("cam.pretrained", "cam.init_checkpoint")


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.cam
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    skips = skips_of("train_cam", cfg, ctx)
    ids = skips.filter(ds.ids(cfg.dataset.train_split), ds)
    labels = ds.labels(ids)
    data = ClassificationCrops(ds, ids, labels, crop=c.crop_size, resize_long=c.resize_long, hflip=c.hflip,
                               seed=ctx.seed, skip_bad=skips)

    model = CAMNet(ds.num_classes, pretrained=c.pretrained if c.init_checkpoint is None else None, bn=c.bn)
    if c.init_checkpoint is not None:
        state = map_official_cam_state(load_model_file(c.init_checkpoint, "cam.init_checkpoint"))
        load_state_dict_strict(model, state, source=c.init_checkpoint)
        log.info("CAM net initialised from %s", c.init_checkpoint)
    net = dist.sync_batchnorm(model.to(ctx.device), ctx.device, c.bn == "batch")
    backbone, head = net.param_groups()
    model = dist.wrap_ddp(net, ctx.device)
    optimizer = sgd([{"params": backbone, "lr": c.lr}, {"params": head, "lr": c.lr * c.classifier_lr_mult}],
                    momentum=c.momentum, weight_decay=c.weight_decay)

    def loss_fn(batch: dict) -> dict[str, torch.Tensor]:
        x = normalize_on_device(batch["img"].to(ctx.device, non_blocking=True),
                                batch["valid"].to(ctx.device, non_blocking=True))   # [N, 3, C, C]
        logits = model(x)                                                           # [N, K]
        loss = F.multilabel_soft_margin_loss(logits, batch["label"].to(ctx.device))
        return {"loss": loss}

    log.info("train_cam: %d images of %s, batch %d, %d epoch(s)", len(ids), cfg.dataset.train_split,
             c.batch_size, c.epochs)
    metrics = fit(name="train_cam", model=model, dataset=data, optimizer=optimizer, loss_fn=loss_fn,
                  batch_size=c.batch_size, epochs=c.epochs, max_steps=c.max_steps, poly_power=c.poly_power,
                  ckpt_path=ctx.paths.checkpoint("train_cam"), final_path=ctx.paths.cam_baseline_model,
                  digest=step_digest("train_cam", cfg, ctx), seed=ctx.seed, num_workers=cfg.num_workers,
                  collate_fn=collate_skip_none, checkpoint_every=c.checkpoint_every, log_every=c.log_every,
                  events=EventWriter.for_step(cfg, ctx, "train_cam"))
    metrics["num_images"] = len(ids)
    return metrics


if __name__ == "__main__":
    from tool.runner import step_main
    step_main("train_cam")
