"""The dataset interface every dataset (``voc12/``, ``coco14/``, ...) implements, and its error type.

Steps never import a dataset package: they get a description object from
``tool.data.registry.build_dataset`` and use only what :class:`ImageLevelDataset` names.
"""
from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np


class DatasetError(RuntimeError):
    """A dataset file or folder is missing or malformed; the message names it."""


@runtime_checkable
class ImageLevelDataset(Protocol):
    """Images with image-level labels, and (optionally, for evaluation) per-pixel GT masks."""

    name: str                          # the ``dataset.name`` it answers to
    class_names: tuple[str, ...]       # foreground classes in label order (background is not one)
    num_classes: int

    def ids(self, split: str) -> list[str]:
        """The image ids of ``split``, in list order; ``DatasetError`` naming the list if it is missing."""

    def image_path(self, image_id: str) -> Path: ...

    def labels(self, ids: list[str]) -> np.ndarray:
        """[N, num_classes] float32 0/1 image-level labels of ``ids``."""

    def gt_path(self, image_id: str) -> Path: ...

    def has_gt(self, image_id: str) -> bool: ...

    def load_gt(self, image_id: str) -> np.ndarray:
        """[H, W] uint8 class indices (0 background, 255 ignore)."""
