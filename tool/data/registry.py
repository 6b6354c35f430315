"""The dataset factory: the one place that maps ``dataset.name`` to its description class.

The table names each class by module path and is imported only when asked for, so the data layer
does not import the dataset packages that sit above it (``voc12/``, ``coco14/`` use this layer).
"""
from __future__ import annotations

import importlib
from pathlib import Path

from tool.data.base import ImageLevelDataset
from tool.engine.config import DatasetConfig

DATASETS = {"voc12": "voc12.dataset:VOC12", "coco14": "coco14.dataset:COCO14",
            "folder": "tool.data.folder:FolderDataset"}


def dataset_class(name: str) -> type:
    if name not in DATASETS:
        raise ValueError(f"dataset.name: unknown dataset {name!r}; expected one of {tuple(DATASETS)}")
    module, cls = DATASETS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def build_dataset(cfg: DatasetConfig, cache_dir: str | Path | None) -> ImageLevelDataset:
    """The dataset description named by ``dataset.name``, made by its ``from_config``.

    ``cache_dir`` is ``<work_dir>/cache`` (``tool.engine.paths.WorkPaths``); a folder dataset keeps the splits
    it draws in ``<work_dir>/splits`` next to it."""
    return dataset_class(cfg.name).from_config(cfg, Path(cache_dir) if cache_dir is not None else None)


def missing_gt(cfg: DatasetConfig, cache_dir: str | Path | None, key: str) -> str | None:
    """Why an evaluation of split ``dataset.<key>`` cannot run, or None: none of its images has a GT mask
    (a folder dataset without ``masks/``). The evaluation steps return it as their ``skip_reason``."""
    ds = build_dataset(cfg, cache_dir)
    split = getattr(cfg, key)
    ids = ds.ids(split)
    if any(ds.has_gt(i) for i in ids):
        return None
    return (f"no GT mask for any image of dataset.{key} {split!r} (e.g. {ds.gt_path(ids[0])}): "
            f"nothing to evaluate against, step skipped")


def class_names_with_bg(ds: ImageLevelDataset) -> list[str]:
    return ["background", *ds.class_names]
