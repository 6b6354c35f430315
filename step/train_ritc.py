"""Step 4, ``train_ritc``: Region Image-Text Contrastive training of the CAM net (paper §3.3, Eq. 1–11).

Reads: ``cam_baseline/model.pth`` (or ``ritc.init``: the authors' ``res50_cam.pth``), ``qape/texts.json``
and ``qape/text_feats.<clip-id>.safetensors`` (step ``text_feats``), the CLIP of ``clip.*``, and the
images and labels of ``dataset.train_split``.
Writes: ``ritc/model.pth`` (a ``CAMNet`` state dict: ``make_cam`` with ``source: ritc`` exports it);
resumable via ``checkpoints/train_ritc.pth``.

One step (docs/design.md §4, §7): P = sigmoid(Wᵀ Z) (Eq. 2) → resized to the CLIP input → FAT (Eq. 9) →
FG and BG region images of every positive pair (Eq. 10) → ONE frozen-CLIP forward for FG and BG →
FRC (Eq. 5–6) + BRC (Eq. 7–8) against the pair's texts gathered from an on-device bank, + REG
(Eq. 11) → L = α·FRC + β·BRC + γ·REG (Eq. 1). No Python loop over samples or pairs.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from safetensors.torch import load_file

from net.clip import ClipModel, encode_texts, load_clip
from net.clip_mask import load_ovseg_mask_prompt
from net.resnet50_cam import CAMNet, map_official_cam_state
from net.ritc import TextBank, build_region_images, ritc_losses, total
from net.weights import load_state_dict_strict
from tool.data.cam_data import ClassificationCrops, collate_skip_none
from tool.data.imutils import IMAGENET_MEAN, IMAGENET_STD, normalize_on_device
from tool.data.registry import build_dataset, read_identity
from tool.engine import dist
from tool.engine.checkpoint import load_model_file
from tool.engine.config import ClipConfig, Config
from tool.engine.events import EventWriter
from tool.engine.io import read_json
from tool.engine.lr import sgd
from tool.engine.runtime import Context, autocast
from tool.engine.train_loop import fit

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "qape", "clip", "cam", "ritc", "seed")
INPUTS = ("train_cam", "text_feats")
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("clip.model", "clip.pretrained", "clip.mask_prompt_checkpoint", "ritc.init")


def needs(cfg: Config) -> tuple[str, ...]:
    """The steps of ``INPUTS`` whose outputs this config reads (``--check``; the digest follows all of
    ``INPUTS``): the texts, and the CAM classifier unless ``ritc.init`` names another file."""
    return ("train_cam", "text_feats") if cfg.ritc.init == "baseline" else ("text_feats",)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of ``dataset.train_split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.dataset.train_split: ("labels",)})


def load_region_clip(c: ClipConfig, device: torch.device) -> tuple[ClipModel, Callable, bool]:
    """The frozen CLIP and its image encoder ``encode(images [B,3,S,S], patch_mask [B,P] | None) -> [B, E]``.

    With ``clip.mask_prompt_checkpoint`` the ViT is wrapped with the ovseg mask prompts (docs/design.md §4
    item 5) and the third value is True; otherwise the plain ``encode_image`` sees X·R (Eq. 10).
    """
    clip = load_clip(c.model, c.pretrained, device=device, config_key="clip", quick_gelu=c.quick_gelu)
    if c.grad_checkpointing:
        clip.model.set_grad_checkpointing(True)
    if c.mask_prompt_checkpoint is None:
        return clip, lambda images, patch_mask: clip.model.encode_image(images), False
    visual = load_ovseg_mask_prompt(clip.model, c.mask_prompt_checkpoint, mask_prompt_depth=c.mask_prompt_depth)
    visual = visual.to(device).eval()
    return clip, visual, True


def load_text_bank(cfg: Config, ctx: Context, clip: ClipModel, ids: list[str], class_names: tuple[str, ...],
                   labels: np.ndarray) -> TextBank:
    """The on-device text bank of the training images, built once from the ``text_feats`` artefacts.

    Answer features come from the file (encoded by the ``clip.*`` CLIP); the class-name prompts are
    encoded here by the training CLIP, as the official code does (with the mask-prompt checkpoint its
    text tower may differ from the plain one).
    """
    texts_path = ctx.paths.texts_json
    feats_path = ctx.paths.text_feats(clip.id)
    for p in (texts_path, feats_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist: run the qape and text_feats steps first "
                                    f"(with clip.model={cfg.clip.model!r}, clip.pretrained={cfg.clip.pretrained!r})")
    meta = read_json(texts_path)
    feats = load_file(str(feats_path))["feats"].float()                      # [T, D]
    class_feats = encode_texts(clip.model, clip.tokenizer, [meta["prompt"].format(n) for n in class_names],
                               device=ctx.device, batch_size=cfg.clip.text_batch_size)   # [K, D]
    index = {image_id: i for i, image_id in enumerate(ids)}
    pairs = [p for p in meta["pairs"] if p["image"] in index]
    bank = TextBank.from_indexed(feats, class_feats.cpu(), [index[p["image"]] for p in pairs],
                                 [int(p["class"]) for p in pairs], [p["fg"] for p in pairs], [p["bg"] for p in pairs],
                                 num_images=len(ids), device=ctx.device)
    bank.check_coverage(torch.from_numpy(labels))
    no_bg = sum(1 for p in pairs if not p["bg"])
    log.info("text bank: %d pairs, %d unique texts, %d pair(s) without BG text (skipped in FRC/BRC)",
             len(pairs), feats.shape[0], no_bg)
    return bank


def to_clip_pixels(x: torch.Tensor, normalization: str, clip: ClipModel) -> torch.Tensor:
    """The pixels CLIP sees: the CAM net's ImageNet-normalised input (official, docs/design.md §4 item 4) or
    the same image re-normalised with CLIP's mean/std."""
    if normalization == "imagenet":
        return x
    m_in = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    s_in = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    m_c = torch.tensor(clip.mean, device=x.device).view(1, 3, 1, 1)
    s_c = torch.tensor(clip.std, device=x.device).view(1, 3, 1, 1)
    return (x * s_in + m_in - m_c) / s_c


class RitcLoss:
    """``batch -> {"loss", "frc", "brc", "reg"}`` for one RITC step (Eq. 1), batched over pairs.

    Args:
        model: the CAM net or its DDP wrapper (called as ``model(x, maps=True)`` so DDP syncs gradients).
        clip / encode / mask_clip: from ``load_region_clip``.
        bank: the text bank of the training images; cfg: the whole config (``ritc``, ``clip``).
    """

    def __init__(self, model: torch.nn.Module, clip: ClipModel, encode: Callable, mask_clip: bool, bank: TextBank,
                 cfg: Config, device: torch.device):
        r = cfg.ritc
        self.model, self.clip, self.encode, self.mask_clip, self.bank = model, clip, encode, mask_clip, bank
        self.r, self.normalization, self.device = r, cfg.clip.normalization, device
        visual = clip.model.visual
        self.patch = int(visual.patch_size[0]) if hasattr(visual, "patch_size") else 14
        self.weights = (r.alpha if r.frc else 0.0, r.beta if r.brc else 0.0, r.gamma if r.reg else 0.0)

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        r = self.r
        x = normalize_on_device(batch["img"].to(self.device, non_blocking=True),
                                batch["valid"].to(self.device, non_blocking=True))   # [N, 3, C, C]
        with autocast(r.precision, self.device, key="ritc.precision"):
            P = self.model(x, maps=True)                                             # [N, K, C/16, C/16]
            # Labels stay on the CPU so finding the positive pairs never waits for the GPU.
            region = build_region_images(to_clip_pixels(x, self.normalization, self.clip), P, batch["label"],
                                         size=self.clip.image_size, omega=r.omega, fat=r.fat,
                                         mask_clip=self.mask_clip, patch_size=self.patch, variant=r.variant)
            if region.num_pairs:
                feats = self.encode(region.images, region.patch_mask)                # [2Q, E]: FG rows, BG rows
            else:
                feats = P.new_zeros(0, self.clip.embed_dim)
        v_if, v_ib = region.split(feats)
        texts = self.bank.gather(batch["index"], region.pair_image, region.pair_class)
        losses = ritc_losses(P.float(), v_if.float(), v_ib.float(), texts, tau=r.tau, variant=r.variant,
                             reduction=r.reduction)
        return {"loss": total(losses, *self.weights), **losses}


def run(cfg: Config, ctx: Context) -> dict:
    r = cfg.ritc     # its allowed values (variant, reduction, precision, bn) were checked when the config loaded
    if not (r.frc or r.brc or r.reg):
        raise ValueError("ritc.frc, ritc.brc and ritc.reg are all off: nothing to train")
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    skips = ctx.skips()
    ids = skips.filter(ds.ids(cfg.dataset.train_split), ds)     # images qape skipped have no texts
    labels = ds.labels(ids)
    data = ClassificationCrops(ds, ids, labels, crop=r.train.crop_size, resize_long=r.resize_long, hflip=r.train.hflip,
                               seed=ctx.seed, skip_bad=skips)

    # The CAM net, initialised from the baseline classifier (official: strict load of res50_cam.pth).
    model = CAMNet(ds.num_classes, pretrained=None, bn=r.bn, frozen_stages=r.frozen_stages)
    init = ctx.paths.cam_baseline_model if r.init == "baseline" else r.init
    state = load_model_file(init, "ritc.init", producer="train_cam" if r.init == "baseline" else None)
    load_state_dict_strict(model, map_official_cam_state(state), source=str(init))
    log.info("RITC CAM net initialised from %s", init)
    net = dist.sync_batchnorm(model.to(ctx.device), ctx.device, r.bn == "batch")   # official DDP uses SyncBN
    backbone, head = net.param_groups()
    wrapped = dist.wrap_ddp(net, ctx.device)                # DDP under torchrun, else net itself
    optimizer = sgd([{"params": backbone, "lr": r.train.lr},
                     {"params": head, "lr": r.train.lr * r.classifier_lr_mult}],
                    momentum=r.train.momentum, weight_decay=r.train.weight_decay)

    clip, encode, mask_clip = load_region_clip(cfg.clip, ctx.device)
    bank = load_text_bank(cfg, ctx, clip, ids, ds.class_names, labels)
    loss_fn = RitcLoss(wrapped, clip, encode, mask_clip, bank, cfg, ctx.device)

    log.info("train_ritc: %d images of %s, batch %d, %d epoch(s), CLIP %s (%s, %s pixels), variant %s",
             len(ids), cfg.dataset.train_split, r.train.batch_size, r.train.epochs, clip.id,
             "mask-prompt" if mask_clip else "plain", cfg.clip.normalization, r.variant)
    metrics = fit(ctx, r.train, model=wrapped, dataset=data, optimizer=optimizer, loss_fn=loss_fn,
                  final_path=ctx.paths.ritc_model, num_workers=cfg.num_workers, collate_fn=collate_skip_none,
                  events=EventWriter.for_step(cfg, ctx, ctx.step))
    metrics["num_images"] = len(ids)
    return metrics


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step train_ritc --config <yaml> [--set k=v] [--force]")
