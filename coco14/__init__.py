"""MS COCO 2014 dataset description: the 80 classes, split lists, labels from the instances JSON, GT masks.

The same interface as ``voc12/``; steps only see it through ``tool.data.registry.build_dataset``.
"""
from __future__ import annotations

from coco14.dataset import (
    CATEGORIES,
    CATEGORY_IDS,
    CATEGORY_TO_INDEX,
    CLASS_NAMES,
    COCO14,
    SPLITS,
    VOC_TO_COCO,
    CocoIndex,
    category_index,
    index_from_instances,
)

__all__ = ["CATEGORIES", "CATEGORY_IDS", "CATEGORY_TO_INDEX", "CLASS_NAMES", "COCO14", "SPLITS", "VOC_TO_COCO",
           "CocoIndex", "category_index", "index_from_instances"]
