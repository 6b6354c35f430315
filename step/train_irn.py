"""Step 8, ``train_irn``: IRNet's boundary and displacement branches from the IR labels (IRN recipe;
docs/design.md §5).

Reads: ``ir_label/<id>.png`` and the images of the IR-label split (``make_cam.split`` or
``dataset.train_split``).
Writes: ``irn/model.pth`` (IRNet state dict, mean shift included); resumable via
``checkpoints/train_irn.pth``.

Recipe: frozen ResNet-50 backbone (``irn.pretrained``), crop 512, batch 32, 3 epochs, rescale
0.5–1.5, flip; affinity labels along paths of radius 10; SGD poly lr 0.1 (boundary) / 1.0
(displacement); loss (pos_aff + neg_aff)/2 + (dp_fg + dp_bg)/2. Then one pass over top-left crops of
the training images estimates the displacement mean shift. ``irn.displacement: false`` trains the boundary
branch alone (loss (pos_aff + neg_aff)/2, no mean shift): nothing downstream reads the displacement, and the
boundary branch comes out the same (the branches share no trainable weight).
"""
from __future__ import annotations

import logging

import torch
from torch.utils.data import DataLoader

from net.path_index import PathIndex
from net.resnet50 import load_pretrained
from net.resnet50_cam import map_official_cam_state
from net.resnet50_irn import AffinityDisplacementLoss
from net.weights import load_state_dict_strict
from tool.data.base import ImageItems
from tool.data.cam_data import AffinityCrops, collate_skip_none
from tool.data.imutils import crop_image, normalize_on_device, to_chw_tensor
from tool.data.registry import build_dataset, read_identity
from tool.engine import dist
from tool.engine.checkpoint import load_model_file, save_model
from tool.engine.config import Config
from tool.engine.events import EventWriter
from tool.engine.io import DamagedFile, png_complete
from tool.engine.lr import sgd
from tool.engine.runtime import Context, autocast
from tool.engine.train_loop import fit

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "make_cam", "irn", "seed")
INPUTS = ("cam_to_ir_label", "train_cam")
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("irn.pretrained",)


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): the IR labels, and the CAM classifier for ``irn.pretrained: cam_baseline``."""
    return ("cam_to_ir_label", "train_cam") if cfg.irn.pretrained == "cam_baseline" else ("cam_to_ir_label",)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the list of the CAM split."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.cam_split: ("ids",)})


def init_backbone(model: AffinityDisplacementLoss, cfg: Config, ctx: Context) -> str:
    """Backbone weights: ImageNet / a state-dict path (``net.resnet50.load_pretrained``), or the trained
    CAM classifier's backbone (``cam_baseline``: useful offline, where ImageNet weights are missing)."""
    p = cfg.irn.pretrained
    if p != "cam_baseline":
        return load_pretrained(model.backbone, p, "irn.pretrained")
    state = map_official_cam_state(load_model_file(ctx.paths.cam_baseline_model, "irn.pretrained=cam_baseline",
                                                   producer="train_cam"))
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    load_state_dict_strict(model.backbone, backbone, source=f"{ctx.paths.cam_baseline_model} (backbone)")
    return f"the CAM classifier's backbone ({ctx.paths.cam_baseline_model})"


class _TopLeft(ImageItems):
    """IRN's mean-shift pass: images cropped at the top-left to crop×crop (zero padding), uint8 + mask."""

    def __init__(self, ds, ids: list[str], crop: int, skip_bad):
        super().__init__(ds, ids, skip_bad=skip_bad)
        self.crop = crop

    def __getitem__(self, i: int) -> dict | None:
        img = self.image(i)
        if img is None:
            return None
        h, w = min(self.crop, img.shape[0]), min(self.crop, img.shape[1])
        box = (0, h, 0, w, 0, h, 0, w)
        img, valid = crop_image(img, box, self.crop)
        return {"img": to_chw_tensor(img), "valid": torch.from_numpy(valid)}


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.irn
    if c.train.crop_size % 4:
        raise ValueError(f"irn.train.crop_size: {c.train.crop_size} must be a multiple of 4 (the output stride)")
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    skips = ctx.skips()
    ids = skips.filter(ds.ids(cfg.cam_split), ds)
    label_dir = ctx.paths.ir_label_dir
    missing = [i for i in ids if not (label_dir / f"{i}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} IR label(s) missing in {label_dir}, e.g. {missing[:3]}; run "
                                "cam_to_ir_label first")
    torn = [label_dir / f"{i}.png" for i in ids if not png_complete(label_dir / f"{i}.png")]
    if torn:
        raise DamagedFile(f"{len(torn)} IR label(s) in {label_dir} are torn (no PNG end), e.g. {torn[0]}", torn,
                          producer="cam_to_ir_label")
    path_index = PathIndex(c.radius_train, (c.train.crop_size // 4, c.train.crop_size // 4))
    data = AffinityCrops(ds, ids, label_dir, path_index, crop=c.train.crop_size, rescale=c.rescale, hflip=c.train.hflip,
                         seed=ctx.seed, skip_bad=skips)
    model = AffinityDisplacementLoss(path_index, displacement=c.displacement, trained_stages=c.trained_stages)
    log.info("IRN backbone (%s) initialised from %s",
             f"its first {c.trained_stages} stage(s) trained" if c.trained_stages else "frozen",
             init_backbone(model, cfg, ctx))
    model.to(ctx.device)
    groups = model.param_groups(c.train.lr, c.train.weight_decay)      # boundary lr, displacement 10× lr
    optimizer = sgd(groups, momentum=c.train.momentum, weight_decay=c.train.weight_decay)
    wrapped = dist.wrap_ddp(model, ctx.device)              # DDP under torchrun, else model itself

    def loss_fn(batch: dict) -> dict[str, torch.Tensor]:
        x = normalize_on_device(batch["img"].to(ctx.device, non_blocking=True),
                                batch["valid"].to(ctx.device, non_blocking=True))          # [N, 3, C, C]
        with autocast(c.precision, ctx.device, key="irn.precision"):   # the losses inside run in float32
            terms = wrapped(x, *(batch[k].to(ctx.device, non_blocking=True).float() for k in ("bg_pos", "fg_pos",
                                                                                          "neg")))
        return {"loss": terms["total"], **{k: v for k, v in terms.items() if k != "total"}}

    log.info("train_irn: %d images, batch %d, %d epoch(s), crop %d, path radius %d", len(ids),
             c.train.batch_size, c.train.epochs, c.train.crop_size, c.radius_train)
    final = ctx.paths.irn_model
    metrics = fit(ctx, c.train, model=wrapped, dataset=data, optimizer=optimizer, loss_fn=loss_fn, final_path=final,
                  num_workers=cfg.num_workers, collate_fn=collate_skip_none,
                  events=EventWriter.for_step(cfg, ctx, ctx.step))

    metrics["num_images"] = len(ids)
    if not c.displacement:
        log.info("train_irn: irn.displacement false: the displacement branch was not trained (no mean shift)")
        return metrics
    # The displacement mean shift over top-left crops of the training images (IRN), then save again.
    batch = c.train.batch_size
    loader = DataLoader(_TopLeft(ds, ids, c.train.crop_size, skips), batch_size=batch,
                        num_workers=cfg.num_workers, drop_last=len(ids) >= batch, collate_fn=collate_skip_none)
    batches = (normalize_on_device(b["img"].to(ctx.device), b["valid"].to(ctx.device)) for b in loader if b is not None)
    shift = model.estimate_mean_shift(batches)
    save_model(model, final)
    metrics["mean_shift"] = [round(float(v), 5) for v in shift]
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step train_irn --config <yaml> [--set k=v] [--force]")
