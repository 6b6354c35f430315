"""The dataset factory: the one place that maps ``dataset.name`` to its description class.

The table names each class by module path and is imported only when asked for, so the data layer
does not import the dataset packages that sit above it (``voc12/``, ``coco14/`` use this layer).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from tool.data.base import ImageLevelDataset
from tool.engine.config import DatasetConfig

DATASETS = {"voc12": "voc12.dataset:VOC12", "coco14": "coco14.dataset:COCO14"}


def dataset_class(name: str) -> type:
    if name not in DATASETS:
        raise ValueError(f"dataset.name: unknown dataset {name!r}; expected one of {tuple(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_dataset(cfg: DatasetConfig, cache_dir: str | Path | None) -> ImageLevelDataset:
    """The dataset description named by ``dataset.name``."""
    return dataset_class(cfg.name)(cfg.root, cache_dir=cache_dir if cfg.label_cache else None)


def class_names_with_bg(ds: ImageLevelDataset) -> list[str]:
    return ["background", *ds.class_names]
