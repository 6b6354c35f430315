"""The dataset factory: the one place that maps ``dataset.name`` to its description class."""
from __future__ import annotations

from pathlib import Path

from tool.config import DatasetConfig

DATASETS = ("voc12", "coco14", "folder")


def build_dataset(cfg: DatasetConfig, cache_dir: str | Path | None):
    """The dataset description named by ``dataset.name`` (voc12 | coco14 | folder).

    ``cache_dir`` is ``<work_dir>/cache`` (``tool.paths.WorkPaths``): a folder dataset keeps the splits it
    draws in ``<work_dir>/splits`` next to it."""
    if cfg.name == "voc12":
        from voc12.dataset import VOC12
        return VOC12(cfg.root, cache_dir=cache_dir if cfg.label_cache else None)
    if cfg.name == "coco14":
        from coco14.dataset import COCO14
        return COCO14(cfg.root, cache_dir=cache_dir if cfg.label_cache else None)
    if cfg.name == "folder":
        from tool.folder_dataset import FolderDataset
        return FolderDataset(cfg, split_dir=Path(cache_dir).parent / "splits" if cache_dir is not None else None)
    raise ValueError(f"dataset.name: unknown dataset {cfg.name!r}; expected one of {DATASETS}")


def class_names_with_bg(ds) -> list[str]:
    return ["background", *ds.class_names]
