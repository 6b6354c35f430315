"""The toy CLIP: an open_clip model trained contrastively on region images as RITC builds them."""
from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tool.engine.events import EventWriter
from tool.engine.lr import warmup_poly_lr
from tool.engine.train_loop import optimizer_step
from tool.toy.tiny_models import save_open_clip
from tool.toy.vlp.params import WARMUP, ToyVlpParams
from tool.toy.vlp.records import ToyRecord, background_mask, normalize_clip, object_masks
from tool.toy.vlp.texts import ClipTexts, clip_texts
from tool.toy.vocab import SUBTYPES
from voc12.dataset import XML_NAMES

log = logging.getLogger(__name__)


def toy_clip_config(p: ToyVlpParams) -> dict:
    """open_clip architecture config (``model_cfg`` of ``open_clip_config.json``) of the toy CLIP."""
    if p.clip_tower not in ("vit", "resnet"):
        raise ValueError(f"toy CLIP: clip_tower must be 'vit' or 'resnet', got {p.clip_tower!r}")
    vision: dict[str, int | list[int]]
    if p.clip_tower == "vit":
        vision = {"image_size": p.clip_image_size, "layers": p.clip_layers, "width": p.clip_width,
                  "head_width": 16, "patch_size": p.clip_patch_size}
    else:   # ModifiedResNet: stem /4, then stages at strides 1, 2, 2, 2; features width * 32 wide
        vision = {"image_size": p.clip_image_size, "layers": [1] * 4, "width": p.clip_width, "head_width": 32}
    return {
        "embed_dim": p.clip_embed_dim,
        "vision_cfg": vision,
        "text_cfg": {"context_length": p.clip_context_length, "vocab_size": 49408, "width": p.clip_text_width,
                     "heads": max(1, p.clip_text_width // 16), "layers": p.clip_text_layers},
    }


def _blob(mask: torch.Tensor, stride: int = 16) -> torch.Tensor:
    """A CAM-like soft version of masks [B, 1, H, W]: area-pooled to output stride 16, upsampled bilinearly."""
    H, W = mask.shape[-2:]
    small = F.adaptive_avg_pool2d(mask, (max(1, math.ceil(H / stride)), max(1, math.ceil(W / stride))))
    return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)


def _crop_grids(centers: torch.Tensor, scales: torch.Tensor, flips: torch.Tensor, H: int, W: int,
                size: int) -> torch.Tensor:
    """Sampling grids [B, size, size, 2] of square crops (side ``scales`` x H pixels around ``centers``
    (x, y) in pixels; a scale <= 0 means the whole image squashed to a square), mirrored where ``flips``."""
    B = centers.shape[0]
    whole = scales <= 0
    side = scales.clamp(min=1e-3) * H
    half_x = torch.where(whole, torch.full_like(side, 1.0), (side / W).clamp(max=1.0))   # half-width, [-1, 1] units
    half_y = torch.where(whole, torch.full_like(side, 1.0), (side / H).clamp(max=1.0))
    cx = torch.where(whole, torch.zeros_like(side), (centers[:, 0] / (W - 1)) * 2 - 1)
    cy = torch.where(whole, torch.zeros_like(side), (centers[:, 1] / (H - 1)) * 2 - 1)
    cx = cx.clamp(-1 + half_x, 1 - half_x)   # keep the crop inside the image
    cy = cy.clamp(-1 + half_y, 1 - half_y)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = half_x * torch.where(flips, -1.0, 1.0)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = half_y
    theta[:, 1, 2] = cy
    return F.affine_grid(theta, [B, 1, size, size], align_corners=True)


class _ClipData:
    """The CLIP training regions held in memory, and batches of them as RITC would build them.

    A region is an image times a mask, of three kinds:

    - an object (its exact mask, or a CAM-like blob of it, times a gain < 1 as a sigmoid CAM is)
      -> the class, sub-type and alias texts;
    - the background (exact: objects blacked out; or one minus the blob of the objects) -> the scene
      and things texts;
    - the context ring around an object (background pixels within ~0.1 H of it) -> the scene and
      things texts too: rails next to a train are rails, so a CAM spilling onto them looks less like
      "train" to the CLIP — the gradient RITC's FRC needs.

    Each is cropped (square crops as RITC's loader makes, or the whole image squashed), mirrored at
    random and resized to S with bilinear interpolation (as ``net.ritc.build_region_images``).
    """

    KINDS = (("object", 0.55), ("background", 0.25), ("ring", 0.2))   # kind, share of a batch

    def __init__(self, records: Sequence[ToyRecord], texts: ClipTexts, size: int):
        import cv2

        self.size = size
        self.x = normalize_clip(np.stack([r.image for r in records]))          # [N, 3, H, W]
        self.H, self.W = self.x.shape[-2:]
        radius = max(2, round(0.1 * self.H))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        no_ign = np.zeros(len(texts.texts), bool)
        # kind -> [(image, exact mask, blob mask or None, positives, ignored, centre or None), ...]
        kinds: dict[str, list[tuple]] = {k: [] for k, _ in self.KINDS}
        for n, rec in enumerate(records):
            masks = object_masks(rec)
            bg = background_mask(rec)
            bg_pos = texts.bg_pos(rec.meta["scene"], rec.meta["things"])
            union = np.any(masks, axis=0) if masks else np.zeros((self.H, self.W), bool)
            kinds["background"].append((n, bg, 1 - _blob(torch.from_numpy(union)[None, None].float())[0, 0].numpy(),
                                        bg_pos, no_ign, None))
            for o, m in zip(rec.meta["objects"], masks):
                if m.sum() < 16:      # hidden behind later objects
                    continue
                k = XML_NAMES.index(o["class"])
                s = [t.name for t in SUBTYPES[o["class"]]].index(o["subtype"])
                ys, xs = np.nonzero(m)
                centre = (float(xs.mean()), float(ys.mean()))
                blob = _blob(torch.from_numpy(m)[None, None].float())[0, 0].numpy()
                kinds["object"].append((n, m, blob, texts.fg_pos[k][s], texts.fg_ignore[k][s], centre))
                ring = (cv2.dilate(m.astype(np.uint8), disk) > 0) & bg
                if ring.sum() >= 16:
                    kinds["ring"].append((n, ring, None, bg_pos, no_ign, centre))
        # One table of regions, kind by kind; masks as uint8 0..255 rows of a bank [B, 1, H, W].
        bank, self.ranges = [], {}
        img: list[int] = []                                 # the training image of each region row
        rows, pos, ign, centres = [], [], [], []
        for kind, _ in self.KINDS:
            start = len(img)
            for n, exact, blob, p, i, c in kinds[kind]:
                bank.append(exact.astype(np.float32))
                e = len(bank) - 1
                if blob is not None:
                    bank.append(blob.astype(np.float32))
                rows.append((e, len(bank) - 1))     # (exact, blob); the same row twice without a blob
                img.append(n)
                pos.append(p)
                ign.append(i)
                centres.append(c if c is not None else (float("nan"), float("nan")))
            self.ranges[kind] = (start, len(img))
        self.masks = (torch.from_numpy(np.stack(bank))[:, None] * 255).round().to(torch.uint8)   # [B, 1, H, W]
        self.img = torch.tensor(img)
        self.rows = torch.tensor(rows)                                                   # [R, 2]
        self.pos = torch.from_numpy(np.stack(pos))                                       # [R, T]
        self.ign = torch.from_numpy(np.stack(ign))
        self.centre = torch.tensor(centres, dtype=torch.float32)                         # [R, 2] x, y (nan: anywhere)
        self.is_object = torch.zeros(len(img), dtype=torch.bool)
        self.is_object[slice(*self.ranges["object"])] = True

    @property
    def num_regions(self) -> int:
        return int(self.img.numel())

    def batch(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images [n, 3, S, S], positives [n, T] bool, ignored [n, T] bool."""
        picks, left = [], n
        for j, (kind, share) in enumerate(self.KINDS):
            lo, hi = self.ranges[kind]
            count = left if j == len(self.KINDS) - 1 else round(share * n)
            left -= count
            if hi > lo and count > 0:
                picks.append(lo + torch.randint(hi - lo, (count,), generator=g))
        r = torch.cat(picks)                                                         # [n'] region rows
        m = r.numel()
        blob = (torch.rand(m, generator=g) < 0.5).long()
        mask_row = self.rows[r].gather(1, blob[:, None])[:, 0]
        # Crops centre near the region's object; background crops anywhere.
        centres = self.centre[r]
        anywhere = torch.rand(m, 2, generator=g) * torch.tensor([self.W - 1.0, self.H - 1.0])
        centres = torch.where(torch.isnan(centres), anywhere, centres)
        centres = centres + (torch.rand(m, 2, generator=g) - 0.5) * 0.3 * self.H
        scales = torch.where(torch.rand(m, generator=g) < 0.3, torch.zeros(m), 0.6 + 0.4 * torch.rand(m, generator=g))
        flips = torch.rand(m, generator=g) < 0.5
        grid = _crop_grids(centres, scales, flips, self.H, self.W, self.size)       # [m, S, S, 2]
        gain = torch.where(self.is_object[r], 0.5 + 0.5 * torch.rand(m, generator=g), torch.ones(m))  # CAM < 1
        gain = gain * (0.9 + 0.3 * torch.rand(m, generator=g))                      # contrast jitter
        mask = F.grid_sample(self.masks[mask_row].float() / 255, grid, mode="bilinear", align_corners=True)
        images = F.grid_sample(self.x[self.img[r]], grid, mode="bilinear", align_corners=True)   # [m, 3, S, S]
        return images * mask * gain.view(m, 1, 1, 1), self.pos[r], self.ign[r]


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor,
                     ign: torch.Tensor) -> torch.Tensor:
    """Multi-positive image<->text InfoNCE over the whole text table.

    img: [B, D], txt: [T, D] (L2-normalised); pos / ign: bool [B, T]. Image->text: cross-entropy
    against the uniform distribution over the image's positives, ignored texts left out of the
    softmax. Text->image: the same over the batch's images, for texts with a positive in the batch.
    """
    logits = scale * img @ txt.t()                                            # [B, T]
    logits = logits.masked_fill(ign, float("-inf"))
    w = pos.float()
    i2t = -(w * F.log_softmax(logits, dim=1).masked_fill(ign, 0)).sum(1) / w.sum(1).clamp(min=1)
    has = w.sum(0) > 0
    t2i = -(w * F.log_softmax(logits, dim=0).masked_fill(ign, 0)).sum(0)[has] / w.sum(0)[has]
    return 0.5 * (i2t.mean() + t2i.mean())


def train_toy_clip(records: Sequence[ToyRecord], out_dir: str | os.PathLike, p: ToyVlpParams) -> dict:
    """Train the toy CLIP on ``records`` and write it to ``out_dir`` (open_clip hf-hub layout); metrics."""
    import open_clip

    texts = clip_texts()
    data = _ClipData(records, texts, p.clip_image_size)
    model_cfg = toy_clip_config(p)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        model = open_clip.CLIP(**model_cfg).train()
    tokenizer = open_clip.SimpleTokenizer(context_length=p.clip_context_length)
    tokens = tokenizer(texts.texts)                                               # [T, C]
    opt = torch.optim.AdamW(model.parameters(), lr=p.clip_lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(p.seed)
    t0, c0, losses = time.time(), time.process_time(), []
    events = EventWriter(Path(out_dir).parent / "events" / "toy_clip.jsonl", "toy_clip")   # (docs/tracking.md)
    events.start(0, resumed=False)
    for step in range(p.clip_steps):
        for group in opt.param_groups:
            group["lr"] = warmup_poly_lr(step, p.clip_lr, p.clip_steps, WARMUP)
        images, pos, ign = data.batch(p.clip_batch, g)
        img = F.normalize(model.encode_image(images), dim=-1)                    # [B, D]
        txt = F.normalize(model.encode_text(tokens), dim=-1)                     # [T, D]
        loss = contrastive_loss(img, txt, model.logit_scale.exp().clamp(max=100), pos, ign)
        losses.append(optimizer_step(opt, loss, "toy CLIP", step))
        events.step_done({"loss": losses[-1]}, p.clip_batch)
        if step % 100 == 0 or step == p.clip_steps - 1:
            events.record(step + 1, 0, opt)
            log.info("toy CLIP step %d/%d loss %.3f", step + 1, p.clip_steps, float(np.mean(losses[-50:])))
    save_clip(model.eval(), model_cfg, out_dir)
    return {"clip_regions": data.num_regions, "clip_texts": len(texts.texts),
            "clip_final_loss": round(float(np.mean(losses[-50:])), 4), "clip_seconds": round(time.time() - t0, 1),
            "clip_cpu_seconds": round(time.process_time() - c0, 1)}


def save_clip(model: torch.nn.Module, model_cfg: dict, out_dir: str | os.PathLike) -> Path:
    """Write the toy CLIP where ``net.clip.load_clip`` reads it (bilinear squash, as it was trained)."""
    return save_open_clip(model, model_cfg, out_dir, interpolation="bilinear", resize_mode="squash")

