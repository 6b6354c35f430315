"""Image reading and the IRN augmentations, on uint8 arrays (normalisation happens on the device).

IRN resizes with PIL bicubic, flips, normalises, then crops with zero padding in normalised space.
We crop the uint8 image and return a validity mask instead; ``normalize_on_device`` multiplies the
normalised image by it, which reproduces IRN's zero padding exactly while moving 4× fewer bytes
(docs/design.md §7, loader).
"""
from __future__ import annotations

import logging
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from net.resnet50 import IMAGENET_MEAN, IMAGENET_STD


class BadImageError(RuntimeError):
    """An image file could not be decoded; the message names it."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Decode an image file to uint8 RGB [H, W, 3]; a corrupt or missing file raises BadImageError."""
    try:
        with Image.open(path) as img:
            img.load()
            _note_exif_orientation(img, path)
            return np.array(img.convert("RGB"), dtype=np.uint8)   # writable (pydensecrf needs it)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise BadImageError(f"{path}: cannot decode image ({e}); fix or remove it, "
                            "or set dataset.skip_bad_images: true to skip such images") from e


_EXIF_NOTED: list[bool] = []


def _note_exif_orientation(img: Image.Image, path) -> None:
    """Say once per process that EXIF orientation tags are ignored, on the first image that has one.

    On purpose: VOC's and COCO's masks follow the stored pixels, so turning the image upright would
    misalign it with its mask (and with every published number)."""
    if _EXIF_NOTED:
        return
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:       # noqa: BLE001 - a broken EXIF block is not our concern here
        return
    if orientation not in (None, 1):
        _EXIF_NOTED.append(True)
        logging.getLogger(__name__).info(
            "%s has EXIF orientation %s: ignored, as for every image (masks follow the stored pixels, as VOC's "
            "and COCO's do)", path, orientation)


def pil_rescale(img: np.ndarray, scale: float, order: int = 3) -> np.ndarray:
    """Rescale an [H, W(, C)] uint8 array by ``scale`` with PIL (order 3 bicubic, 0 nearest), as IRN."""
    h, w = img.shape[:2]
    size = (int(np.round(h * scale)), int(np.round(w * scale)))
    return pil_resize(img, size, order)


def pil_resize(img: np.ndarray, size: tuple[int, int], order: int = 3) -> np.ndarray:
    """Resize to ``size`` = (H, W) with PIL bicubic (order 3) or nearest (order 0)."""
    if size == img.shape[:2]:
        return img
    resample = {3: Image.Resampling.BICUBIC, 0: Image.Resampling.NEAREST}[order]
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), resample))


def random_resize_long(img: np.ndarray, min_long: int, max_long: int, rng: np.random.Generator) -> np.ndarray:
    """Rescale so the long side is a random integer in [min_long, max_long] (IRN)."""
    target = int(rng.integers(min_long, max_long + 1))
    h, w = img.shape[:2]
    return pil_rescale(img, target / max(h, w))


def random_crop_box(size: tuple[int, int], crop: int, rng: np.random.Generator) -> tuple[int, ...]:
    """IRN's crop box: (dst y0, y1, x0, x1, src y0, y1, x0, x1) placing a random window in a crop×crop canvas."""
    h, w = size
    ch, cw = min(crop, h), min(crop, w)
    w_space, h_space = w - crop, h - crop
    if w_space > 0:
        cont_left, img_left = 0, int(rng.integers(w_space + 1))
    else:
        cont_left, img_left = int(rng.integers(-w_space + 1)), 0
    if h_space > 0:
        cont_top, img_top = 0, int(rng.integers(h_space + 1))
    else:
        cont_top, img_top = int(rng.integers(-h_space + 1)), 0
    return (cont_top, cont_top + ch, cont_left, cont_left + cw, img_top, img_top + ch, img_left, img_left + cw)


def crop_with_box(img: np.ndarray, box: tuple[int, ...], crop: int, fill: int = 0) -> np.ndarray:
    """Place ``img[box src]`` into a crop×crop canvas filled with ``fill`` at ``box dst``."""
    out = np.full((crop, crop, *img.shape[2:]), fill, dtype=img.dtype)
    out[box[0]:box[1], box[2]:box[3]] = img[box[4]:box[5], box[6]:box[7]]
    return out




def crop_image(img: np.ndarray, box: tuple[int, ...], crop: int) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 image crop [C, C, 3] zero-padded, validity mask [C, C] uint8: 1 where the image is)."""
    return crop_with_box(img, box, crop), crop_with_box(np.ones(img.shape[:2], np.uint8), box, crop)


def to_chw_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> uint8 tensor [3, H, W] (contiguous)."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def normalize_on_device(img: torch.Tensor, valid: torch.Tensor | None = None,
                        mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 ``(x/255 - mean) / std``, zeroed where ``valid`` [N, H, W] is 0."""
    m = torch.tensor(mean, device=img.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=img.device).view(1, 3, 1, 1)
    x = (img.float() / 255.0 - m) / s
    if valid is not None:
        x = x * valid.unsqueeze(1).to(x.dtype)
    return x


def strided_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """ceil(size / stride): the size of a stride-``stride`` feature map of an image of ``size``."""
    return ((size[0] + stride - 1) // stride, (size[1] + stride - 1) // stride)


def strided_up_size(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """ceil(size / stride) * stride (IRN's upsampling target before cropping to the image)."""
    h, w = strided_size(size, stride)
    return (h * stride, w * stride)


