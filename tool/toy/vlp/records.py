"""The toy world's images, masks and sidecars, as the toy VLP's trainers and measurements read them."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tool.data.palette import load_label_png
from tool.toy.vlp.params import CLIP_MEAN, CLIP_STD
from voc12.dataset import XML_NAMES


@dataclass
class ToyRecord:
    """One toy image: RGB uint8 [H, W, 3], its sidecar, and label [H, W] uint8 (None without a PNG)."""

    image_id: str
    image: np.ndarray
    meta: dict
    label: np.ndarray | None


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Image ids of ``ImageSets/Segmentation/<split>.txt`` of a VOC-layout toy world."""
    path = Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {root} a VOC-layout toy world (tool.toy.world, "
                                "toy.layout: voc)?")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_records(root: str | os.PathLike, ids: Sequence[str]) -> list[ToyRecord]:
    """Read images, ``ToyMeta`` sidecars and (where present) ``SegmentationClass`` PNGs of ``ids``."""
    from tool.data.imutils import read_image
    from tool.toy.layout import read_toy_meta

    root = Path(root)
    out = []
    for image_id in ids:
        png = root / "SegmentationClass" / f"{image_id}.png"
        out.append(ToyRecord(image_id, read_image(root / "JPEGImages" / f"{image_id}.jpg"),
                             read_toy_meta(root, image_id), load_label_png(png) if png.is_file() else None))
    return out


def object_masks(rec: ToyRecord) -> list[np.ndarray]:
    """One bool [H, W] mask per sidecar object: its class's pixels inside its visible box (plus the void
    border around them), or the whole box for an image without a label PNG (SBD-like extra images)."""
    H, W = rec.image.shape[:2]
    out = []
    for o in rec.meta["objects"]:
        x0, y0, x1, y1 = o["bbox"]
        box = np.zeros((H, W), bool)
        box[y0:y1, x0:x1] = True
        if rec.label is None:
            out.append(box)
            continue
        k = XML_NAMES.index(o["class"]) + 1
        own = rec.label == k
        near = F.max_pool2d(torch.from_numpy(own)[None, None].float(), 5, 1, 2)[0, 0].numpy() > 0  # 2-px halo
        out.append(box & (own | (near & (rec.label == 255))))
    return out


def background_mask(rec: ToyRecord) -> np.ndarray:
    """bool [H, W]: background pixels (label 0), or outside every object box without a PNG."""
    if rec.label is not None:
        return rec.label == 0
    m = np.ones(rec.image.shape[:2], bool)
    for o in rec.meta["objects"]:
        x0, y0, x1, y1 = o["bbox"]
        m[y0:y1, x0:x1] = False
    return m


def normalize_clip(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] with CLIP's mean/std."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W] (a copy: decoded images are read-only)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std
