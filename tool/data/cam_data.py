"""torch Datasets over any dataset description (voc12/coco14): classification crops, multi-scale
inference images. They return uint8 tensors; steps normalise on the device."""
from __future__ import annotations

import logging

import numpy as np
import torch

from tool.data.base import ImageItems, SkipBad
from tool.data.imutils import crop_image, crop_with_box, pil_rescale, random_crop_box, random_resize_long, to_chw_tensor

log = logging.getLogger(__name__)


class ClassificationCrops(ImageItems):
    """IRN training crops: random resize-long, flip, random crop (uint8, with a validity mask).

    Items: ``{"name", "img": uint8 [3, C, C], "valid": uint8 [C, C], "label": float32 [K]}``, or None for a
    skipped bad image (``collate_skip_none`` drops those). Randomness comes from a generator seeded by
    (seed, epoch, index), so a resumed epoch sees the same crops.
    """

    def __init__(self, ds, ids: list[str], labels: np.ndarray, *, crop: int, resize_long: tuple[int, int],
                 hflip: bool, seed: int, skip_bad: SkipBad = False):
        super().__init__(ds, ids, seed=seed, skip_bad=skip_bad)
        self.labels, self.crop, self.resize_long, self.hflip = labels, crop, resize_long, hflip

    def __getitem__(self, i: int) -> dict | None:
        img = self.image(i)
        if img is None:
            return None
        rng = self.rng(i)
        img = random_resize_long(img, *self.resize_long, rng)
        if self.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
        box = random_crop_box(img.shape[:2], self.crop, rng)
        img, valid = crop_image(img, box, self.crop)                              # [C, C, 3], [C, C] uint8
        return {"name": self.ids[i], "index": i,
                "img": to_chw_tensor(img),
                "valid": torch.from_numpy(valid), "label": torch.from_numpy(self.labels[i])}


class MultiScaleImages(ImageItems):
    """Inference images at several scales (PIL bicubic, as IRN).

    Items: ``{"name", "size", "label", "imgs": [uint8 [3, h_s, w_s] per scale]}``.
    """

    def __init__(self, ds, ids: list[str], labels: np.ndarray, scales: tuple[float, ...], skip_bad: SkipBad = False):
        super().__init__(ds, ids, skip_bad=skip_bad)
        self.labels, self.scales = labels, scales

    def __getitem__(self, i: int) -> dict | None:
        img = self.image(i)
        if img is None:
            return None
        imgs = [img if s == 1.0 else pil_rescale(img, s) for s in self.scales]
        return {"name": self.ids[i], "size": img.shape[:2], "label": torch.from_numpy(self.labels[i]),
                "imgs": [to_chw_tensor(x) for x in imgs]}


def collate_skip_none(batch: list) -> dict | None:
    """Default collation after dropping skipped (None) items; None when nothing is left."""
    batch = [b for b in batch if b is not None]
    if not batch:
        return None
    return torch.utils.data.default_collate(batch)


def first_item(batch: list) -> dict | None:
    """Collation for batch size 1 that keeps variable-size items as they are."""
    return batch[0]


class AffinityCrops(ImageItems):
    """IRN training samples: image and IR label, random rescale + flip + crop, affinity labels.

    Items: ``{"name", "img": uint8 [3, C, C], "valid": uint8 [C, C], "bg_pos", "fg_pos", "neg": uint8
    [n_dirs, n_src]}`` (affinity labels of the crop's IR label at stride 4, made by
    ``net.path_index.affinity_labels``; uint8 to keep worker → main-process transfers small).
    The label is padded with 255 (uncertain) outside the image, as IRN.
    """

    def __init__(self, ds, ids: list[str], label_dir, path_index, *, crop: int, rescale: tuple[float, float],
                 hflip: bool, seed: int, skip_bad: SkipBad = False):
        super().__init__(ds, ids, seed=seed, skip_bad=skip_bad)
        self.label_dir, self.path_index = label_dir, path_index
        self.crop, self.rescale, self.hflip = crop, rescale, hflip

    def __getitem__(self, i: int) -> dict | None:
        from net.path_index import affinity_labels, reduce_label
        from tool.data.palette import load_label_png

        img = self.image(i)
        if img is None:
            return None
        label = load_label_png(self.label_dir / f"{self.ids[i]}.png")
        if label.shape != img.shape[:2]:
            raise ValueError(f"{self.label_dir / (self.ids[i] + '.png')}: size {label.shape} differs from the image "
                             f"{img.shape[:2]}; rerun cam_to_ir_label")
        rng = self.rng(i)
        scale = rng.uniform(*self.rescale)                                       # IRN: random_scale
        img, label = pil_rescale(img, scale, order=3), pil_rescale(label, scale, order=0)
        if self.hflip and rng.random() < 0.5:
            img, label = img[:, ::-1], label[:, ::-1]
        box = random_crop_box(img.shape[:2], self.crop, rng)
        img, valid = crop_image(img, box, self.crop)                              # [C, C, 3], [C, C]
        label = crop_with_box(label, box, self.crop, fill=255)                    # [C, C]
        bg_pos, fg_pos, neg = affinity_labels(reduce_label(label, 4), self.path_index)   # [n_dirs, n_src] each
        return {"name": self.ids[i], "img": to_chw_tensor(img),
                "valid": torch.from_numpy(valid), "bg_pos": bg_pos.to(torch.uint8), "fg_pos": fg_pos.to(torch.uint8),
                "neg": neg.to(torch.uint8)}
