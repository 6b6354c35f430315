"""The dataset interface every dataset (``voc12/``, ``coco14/``, ...) implements, and its error type.

Steps never import a dataset package: they get a description object from
``tool.data.registry.build_dataset`` and use only what :class:`ImageLevelDataset` names.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, TypeAlias, runtime_checkable

import numpy as np
from torch.utils.data import Dataset

from tool.data.imutils import BadImageError, read_image
from tool.engine.skipped import SkipList

log = logging.getLogger(__name__)

# What the image readers take as ``skip_bad``: off / on, or the run's skip list (on when enabled; records too).
SkipBad: TypeAlias = bool | SkipList


class DatasetError(RuntimeError):
    """A dataset file or folder is missing or malformed; the message names it. ``key``: the config key that
    points at it (``dataset.labels`` for a folder dataset's label file), when the raiser knows it."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@runtime_checkable
class ImageLevelDataset(Protocol):
    """Images with image-level labels, and (optionally, for evaluation) per-pixel GT masks."""

    name: str                          # the ``dataset.name`` it answers to
    class_names: tuple[str, ...]       # foreground classes in label order (background is not one)
    num_classes: int

    @classmethod
    def from_config(cls, cfg, cache_dir: Path | None) -> ImageLevelDataset:
        """Made from the ``dataset`` config section; ``cache_dir`` = ``<work_dir>/cache`` (None: no cache)."""

    def ids(self, split: str) -> list[str]:
        """The image ids of ``split``, in list order; ``DatasetError`` naming the list if it is missing."""

    def image_path(self, image_id: str) -> Path: ...

    def labels(self, ids: list[str]) -> np.ndarray:
        """[N, num_classes] float32 0/1 image-level labels of ``ids``."""

    def gt_path(self, image_id: str) -> Path: ...

    def has_gt(self, image_id: str) -> bool: ...

    def load_gt(self, image_id: str) -> np.ndarray:
        """[H, W] uint8 class indices (0 background, 255 ignore)."""


def load_or_skip(ds, image_id: str, skip_bad: SkipBad) -> np.ndarray | None:
    """Read an image; a bad one raises, or (``skip_bad`` truthy) is logged by name and returns None.

    ``skip_bad`` is a bool or the run's ``tool.engine.skipped.SkipList``, which also records the image so that
    every later step leaves it out."""
    try:
        return read_image(ds.image_path(image_id))
    except BadImageError as e:
        if not skip_bad:
            raise
        log.warning("skipping unreadable image %s (dataset.skip_bad_images: true): %s", image_id, e)
        if isinstance(skip_bad, SkipList):
            skip_bad.record(image_id, ds.image_path(image_id), str(e))
        return None


class ImageItems(Dataset):
    """The base of the torch Datasets over a dataset description ``ds``: the image ids, reading an image
    (a bad one raises, or with ``skip_bad`` is recorded and gives a None item), and per-item randomness from a
    generator seeded by (seed, epoch, index), so a resumed epoch sees the same crops (``set_epoch``)."""

    def __init__(self, ds, ids: list[str], *, seed: int = 0, skip_bad: SkipBad = False):
        self.ds, self.ids, self.seed, self.epoch, self.skip_bad = ds, list(ids), seed, 0, skip_bad

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.ids)

    def image(self, i: int) -> np.ndarray | None:
        """uint8 [H, W, 3] RGB of item ``i``, or None for a skipped bad image."""
        return load_or_skip(self.ds, self.ids[i], self.skip_bad)

    def rng(self, i: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, i))
