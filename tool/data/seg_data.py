"""torch Datasets for segmentation training and inference: images with label PNGs (pseudo masks).

``SegCrops`` is deeplab-pytorch's augmentation (``libs/datasets/base.py``) on uint8 arrays: a random
scale from a list (image bilinear with OpenCV, labels PIL nearest), padding on the bottom/right up
to the crop size with the mean pixel and label 255, a random crop, a random horizontal flip. Like
``tool.data.cam_data.ClassificationCrops`` it returns the uint8 crop and a validity mask; the step normalises
on the device and zeroes the padding, which *is* the mean pixel after mean subtraction.
"""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from tool.data.base import ImageItems, SkipBad
from tool.data.imutils import pil_resize
from tool.data.palette import load_label_png
from tool.engine.io import DamagedFile, png_complete

log = logging.getLogger(__name__)

IGNORE = 255


def label_path(label_dir: str | Path, image_id: str) -> Path:
    return Path(label_dir) / f"{image_id}.png"


def check_labels(label_dir: str | Path, ids: list[str], key: str, producer: str, ours: bool = True) -> None:
    """Fail early, naming the folder and examples, when label PNGs of ``ids`` are missing or torn.

    ``ours``: the folder is ``producer``'s output, so the runner may have torn files redone by it."""
    missing = [i for i in ids if not label_path(label_dir, i).is_file()]
    if missing:
        raise FileNotFoundError(f"{key}: {len(missing)} of {len(ids)} label PNG(s) missing from {label_dir}, e.g. "
                                f"{[m + '.png' for m in missing[:3]]}; run {producer} first or point {key} at them")
    torn = [label_path(label_dir, i) for i in ids if not png_complete(label_path(label_dir, i))]
    if torn:
        raise DamagedFile(f"{key}: {len(torn)} label PNG(s) in {label_dir} are torn (no PNG end), e.g. {torn[0]}",
                          torn, producer if ours else None)


def scale_crop_flip(img: np.ndarray, label: np.ndarray, *, scale: float, crop: int, hflip: bool,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One deeplab-pytorch training sample from img uint8 [H, W, 3] and label uint8 [H, W].

    Returns (img uint8 [crop, crop, 3], valid uint8 [crop, crop], label uint8 [crop, crop]); padding
    (bottom/right, when the scaled image is smaller than ``crop``) has valid 0, image 0 and label 255.
    """
    h, w = int(img.shape[0] * scale), int(img.shape[1] * scale)
    h, w = max(h, 1), max(w, 1)
    if (h, w) != img.shape[:2]:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        label = pil_resize(label, (h, w), order=0)
    ph, pw = max(h, crop), max(w, crop)                       # the padded canvas
    top, left = int(rng.integers(ph - crop + 1)), int(rng.integers(pw - crop + 1))
    out_img = np.zeros((crop, crop, 3), np.uint8)
    out_valid = np.zeros((crop, crop), np.uint8)
    out_label = np.full((crop, crop), IGNORE, np.uint8)
    # the part of the image inside the window [top, top+crop) × [left, left+crop)
    y1, x1 = min(h, top + crop), min(w, left + crop)
    out_img[:y1 - top, :x1 - left] = img[top:y1, left:x1]
    out_valid[:y1 - top, :x1 - left] = 1
    out_label[:y1 - top, :x1 - left] = label[top:y1, left:x1]
    if hflip and rng.random() < 0.5:
        out_img, out_valid, out_label = out_img[:, ::-1], out_valid[:, ::-1], out_label[:, ::-1]
    return np.ascontiguousarray(out_img), np.ascontiguousarray(out_valid), np.ascontiguousarray(out_label)


class SegCrops(ImageItems):
    """Training crops of images and their label PNGs (``<label_dir>/<id>.png``, 0..K, 255 ignored).

    Items: ``{"name", "img": uint8 [3, C, C], "valid": uint8 [C, C], "label": uint8 [C, C]}``, or None for
    a skipped bad image. Randomness comes from a generator seeded by (seed, epoch, index), so a
    resumed epoch sees the same crops.
    """

    def __init__(self, ds, ids: list[str], label_dir: str | Path, *, crop: int, scales: tuple[float, ...],
                 hflip: bool, seed: int, skip_bad: SkipBad = False):
        if not scales or min(scales) <= 0:
            raise ValueError(f"deeplab.scales: need positive scales, got {scales}")
        super().__init__(ds, ids, seed=seed, skip_bad=skip_bad)
        self.label_dir, self.crop, self.scales, self.hflip = Path(label_dir), crop, tuple(scales), hflip

    def __getitem__(self, i: int) -> dict | None:
        image_id = self.ids[i]
        img = self.image(i)
        if img is None:
            return None
        path = label_path(self.label_dir, image_id)
        label = load_label_png(path)
        if label.shape != img.shape[:2]:
            raise ValueError(f"{path}: label size {label.shape} differs from the image size {img.shape[:2]} of "
                             f"{image_id}; were these masks made for other images?")
        rng = self.rng(i)
        scale = self.scales[int(rng.integers(len(self.scales)))]
        img, valid, label = scale_crop_flip(img, label, scale=scale, crop=self.crop, hflip=self.hflip, rng=rng)
        return {"name": image_id, "img": torch.from_numpy(img.transpose(2, 0, 1).copy()),
                "valid": torch.from_numpy(valid), "label": torch.from_numpy(label)}


class SegImages(ImageItems):
    """Whole images for inference: ``{"name", "img": uint8 [H, W, 3] numpy}`` or None (skipped bad image)."""

    def __getitem__(self, i: int) -> dict | None:
        img = self.image(i)
        # a writable copy: PIL-backed arrays are read-only, which torch warns about and pydensecrf refuses
        return None if img is None else {"name": self.ids[i], "img": np.array(img, copy=True)}
