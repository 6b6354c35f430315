"""Step 11, ``train_deeplab``: DeepLabV2-ResNet-101 (MSC) trained on the pseudo masks (docs/design.md §3, §5).

Reads: the images of ``dataset.train_split`` and their pseudo masks ``sem_seg/<id>.png`` (step
``make_sem_seg``; or ``deeplab.label_dir``).
Writes: ``deeplab/model.pth`` (a ``DeepLabV2MSC`` state dict); resumable via ``checkpoints/train_deeplab.pth``.
Recipe (deeplab-pytorch, the paper's DeepLab stage): random scale {0.5, 0.75, 1, 1.25, 1.5}, pad with
the mean / label 255, crop 321, flip; batch 5, 30k iterations, SGD momentum 0.9, lr 2.5e-4 (ASPP
weights 10×, biases 20× without weight decay), wd 5e-4, poly 0.9; BN frozen; a cross-entropy
(label 255 ignored) on each of the 1.0 / 0.75 / 0.5 / max outputs of MSC, labels shrunk by nearest.
``deeplab.arch: v1_wr38`` swaps in DeepLabV1-LargeFOV on the wide ResNet-38 (docs/deeplab-wr38.md; recipe in
configs/voc12_wr38.yaml): the same data, loss (one term, ``ce_1.0``), lr groups, resume and evaluation.
"""
from __future__ import annotations

import logging

import torch

from net.deeplab import (
    IGNORE,
    build_model,
    init_aspp_from_classifier,
    load_pretrained,
    masked_cross_entropy,
    normalize_input,
    optimizer_groups,
    resize_labels,
)
from net.resnet50_cam import map_official_cam_state
from net.weights import load_state_dict_strict
from net.wr38 import DeepLabV1, load_wr38_pretrained
from tool.data.cam_data import collate_skip_none
from tool.data.palette import load_label_png
from tool.data.registry import build_dataset, read_identity
from tool.data.seg_data import SegCrops, SegImages, check_labels, label_path
from tool.engine import dist
from tool.engine.checkpoint import load_model_file
from tool.engine.config import Config
from tool.engine.events import EventWriter
from tool.engine.lr import sgd
from tool.engine.runtime import Context, autocast, memory_format
from tool.engine.train_loop import fit

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "deeplab", "seed")
INPUTS = ("make_sem_seg", "train_cam")
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("deeplab.pretrained",)


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): the pseudo masks of make_sem_seg (unless ``deeplab.label_dir``), the CAM classifier for
    ``deeplab.pretrained: cam_baseline``."""
    c = cfg.deeplab
    return tuple(s for s, needed in (("make_sem_seg", c.label_dir is None),
                                      ("train_cam", c.pretrained == "cam_baseline")) if needed)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the list of ``dataset.train_split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.dataset.train_split: ("ids",)})


def init_from_cam_classifier(base, cfg: Config, ctx: Context) -> str:
    """Backbone from the trained CAM classifier (``deeplab.pretrained: cam_baseline``): offline runs,
    where no ImageNet weights exist, get a backbone that has at least seen the training images.
    Needs ResNet-50 blocks (3, 4, 6, 3) and the torchvision input convention."""
    c = cfg.deeplab
    if tuple(c.blocks) != (3, 4, 6, 3) or c.pretrained_format != "torchvision":
        raise ValueError("deeplab.pretrained: cam_baseline needs deeplab.blocks [3, 4, 6, 3] (ResNet-50) and "
                         f"pretrained_format torchvision, got {list(c.blocks)} / {c.pretrained_format}")
    path = ctx.paths.cam_baseline_model
    state = map_official_cam_state(load_model_file(path, "deeplab.pretrained=cam_baseline (step train_cam)",
                                                   producer="train_cam"))
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    load_state_dict_strict(base.backbone, backbone, source=f"{path} (backbone)")
    init_aspp_from_classifier(base.aspp, state["classifier.weight"])
    return f"the CAM classifier's backbone and, in the ASPP's centre taps, its classifier ({path})"


PRIOR_IMAGES = 64     # training images, evenly spread, that set the background prior (deeplab.init_bg_prior)


@torch.no_grad()
def init_background_prior(model, ds, ids: list[str], label_dir, c, device: torch.device, skips) -> dict:
    """Set the background logit's bias so that the initial model calls background the share of cells its
    training labels do (``deeplab.init_bg_prior``).

    The bias added is the ``q``-quantile of the margin ``max_c l_c − l_bg`` over the labelled cells of up to
    ``PRIOR_IMAGES`` training images (whole images at scale 1, labels shrunk as in training), where ``q`` is their
    background share. A head that starts as the CAM classifier has ``l_bg = 0`` everywhere while some class logit
    is positive almost everywhere: without this it calls nearly every cell foreground. Returns what was set."""
    base = model.base
    was_training = base.training
    base.eval()
    pick = ids[:: max(1, len(ids) // PRIOR_IMAGES)][:PRIOR_IMAGES]
    margins, bg, labelled = [], 0, 0
    images = SegImages(ds, pick, skip_bad=skips)
    for item in (images[i] for i in range(len(images))):
        if item is None:
            continue
        x = normalize_input(torch.from_numpy(item["img"]).permute(2, 0, 1)[None].to(device), None,
                            c.pretrained_format)                                     # [1, 3, H, W]
        logits = base(x)[0].float()                                                  # [K, h, w]
        label = torch.from_numpy(load_label_png(label_path(label_dir, item["name"])))[None]
        label = resize_labels(label, tuple(logits.shape[-2:]))[0].to(device)          # [h, w]
        keep = label != IGNORE
        margins.append((logits[1:].amax(0) - logits[0])[keep].cpu())
        bg += int((label[keep] == 0).sum())
        labelled += int(keep.sum())
    base.train(was_training)
    if not labelled:
        raise ValueError(f"deeplab.init_bg_prior: the labels of {len(pick)} training images in {label_dir} have no "
                         "labelled pixel; check the pseudo masks or set deeplab.init_bg_prior: false")
    share = bg / labelled
    bias = float(torch.quantile(torch.cat(margins).double(), share))
    head = base.head_convs()[0]
    head.bias[0] += bias
    log.info("train_deeplab: background bias %+.3f, the label prior (%.1f %% background cells on %d images)",
             bias, 100 * share, len(pick))
    return {"bg_bias": round(bias, 4), "bg_share": round(share, 4)}


def run(cfg: Config, ctx: Context) -> dict:
    c = cfg.deeplab
    if c.accum_steps < 1 or c.train.batch_size % c.accum_steps:
        raise ValueError(f"deeplab.accum_steps: {c.accum_steps} must be >= 1 and divide deeplab.train.batch_size "
                         f"{c.train.batch_size}")
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    skips = ctx.skips()
    ids = skips.filter(ds.ids(cfg.dataset.train_split), ds)
    label_dir = c.label_dir or ctx.paths.sem_seg_dir
    check_labels(label_dir, ids, "deeplab.label_dir", "make_sem_seg", ours=c.label_dir is None)
    data = SegCrops(ds, ids, label_dir, crop=c.train.crop_size, scales=c.scales, hflip=c.train.hflip, seed=ctx.seed,
                    skip_bad=skips)

    model = build_model(c, ds.num_classes + 1)
    base = model.base
    if isinstance(base, DeepLabV1):                           # deeplab.arch v1_wr38
        if c.pretrained_format != "torchvision":
            raise ValueError("deeplab.pretrained_format: v1_wr38 takes ImageNet mean/std RGB inputs (torchvision), "
                             f"got {c.pretrained_format!r}")
        source = f"{load_wr38_pretrained(base.backbone, c.pretrained)}; LargeFOV new"
    elif c.pretrained == "cam_baseline":
        source = init_from_cam_classifier(base, cfg, ctx)
    else:
        source = load_pretrained(base, c.pretrained, c.pretrained_format)
    aspp = "" if c.pretrained == "cam_baseline" else "; ASPP N(0, 0.01)"
    log.info("train_deeplab: backbone initialised from %s%s", source, aspp)
    # (a resumed run recomputes the same prior, then its checkpoint's weights replace the model's)
    prior = init_background_prior(model.to(ctx.device), ds, ids, label_dir, c, ctx.device, skips) \
        if c.init_bg_prior else {}
    fmt = memory_format(c.channels_last)
    model.to(ctx.device, memory_format=fmt)  # type: ignore[call-overload]  # torch's stub omits memory_format here
    model = dist.sync_batchnorm(model, ctx.device, c.bn == "batch")
    groups = optimizer_groups(model.base, c.train.lr, c.train.weight_decay, c.aspp_weight_lr_mult,
                              c.aspp_bias_lr_mult)
    wrapped = dist.wrap_ddp(model, ctx.device)               # DDP under torchrun, else model itself
    optimizer = sgd(groups, momentum=c.train.momentum, weight_decay=c.train.weight_decay)

    def loss_fn(batch: dict) -> dict[str, torch.Tensor]:
        x = normalize_input(batch["img"].to(ctx.device, non_blocking=True),
                            batch["valid"].to(ctx.device, non_blocking=True), c.pretrained_format)  # [N, 3, C, C]
        x = x.contiguous(memory_format=fmt)
        labels = batch["label"].to(ctx.device, non_blocking=True)                                  # [N, C, C]
        with autocast(c.precision, ctx.device, key="deeplab.precision"):
            outs = wrapped(x)                     # [1.0, *msc_scales, max] logits, each [N, K, h_s, w_s]
        names = ["ce_1.0", *(f"ce_{s:g}" for s in c.msc_scales), "ce_max"] if len(outs) > 1 else ["ce_1.0"]
        terms = {n: masked_cross_entropy(o.float(), resize_labels(labels, tuple(o.shape[-2:])))
                 for n, o in zip(names, outs)}
        return {"loss": sum(terms.values(), torch.zeros((), device=ctx.device)), **terms}

    log.info("train_deeplab: %d images of %s with labels from %s, batch %d (%d micro-batch(es)) per rank, "
             "%s iterations", len(ids), cfg.dataset.train_split, label_dir, c.train.batch_size, c.accum_steps,
             c.train.max_steps)
    metrics = fit(ctx, c.train, model=wrapped, dataset=data, optimizer=optimizer, loss_fn=loss_fn,
                  final_path=ctx.paths.deeplab_model, num_workers=cfg.num_workers, collate_fn=collate_skip_none,
                  accum_steps=c.accum_steps, events=EventWriter.for_step(cfg, ctx, ctx.step))
    log.info("train_deeplab: %s training images/s (all ranks, loading included)", metrics["images_per_s"])
    metrics.update({"num_images": len(ids), "init": source, **prior})
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step train_deeplab --config <yaml> [--set k=v] [--force]")
