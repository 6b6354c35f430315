"""The PASCAL VOC colour palette and paletted-PNG label I/O (0 background, 1..C classes, 255 ignore)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from tool.engine.io import DamagedFile, atomic_path


def voc_palette(n: int = 256) -> np.ndarray:
    """The VOC devkit colour map (``labelcolormap`` of VOCdevkit): [n, 3] uint8.

    Class c gets the colour whose bits are the bits of c spread over R, G, B from the MSB down;
    255 (ignore) comes out as (224, 224, 192), the cream border of SegmentationClass PNGs.
    """
    cmap = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    return cmap


def save_label_png(path: str | os.PathLike, label: np.ndarray, durable: bool = False) -> None:
    """Write a uint8 [H, W] label map as a VOC-paletted PNG, atomically (per-image files: no fsync by default)."""
    if label.dtype != np.uint8 or label.ndim != 2:
        raise ValueError(f"{path}: label must be a uint8 [H, W] array, got {label.dtype} {label.shape}")
    img = Image.fromarray(label, mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_path(path, durable=durable) as tmp:
        img.save(tmp, format="PNG")


def load_label_png(path: str | os.PathLike, producer: str | None = None) -> np.ndarray:
    """Read a label PNG as its raw indices (paletted or greyscale): uint8 [H, W].

    A file that does not decode raises ``DamagedFile`` naming it (and ``producer``, the step that
    writes it, so the runner can have it redone).
    """
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L"):
                raise ValueError(f"{path}: label PNG must be paletted (P) or greyscale (L), got mode {img.mode}")
            return np.asarray(img, dtype=np.uint8).copy()
    except (OSError, SyntaxError, EOFError) as e:    # PIL: truncated / not a PNG
        if isinstance(e, FileNotFoundError):
            raise
        redo = f"; step {producer} will redo it" if producer else ""
        raise DamagedFile(f"{path}: cannot read the label PNG ({e}){redo}", [Path(path)], producer) from e
