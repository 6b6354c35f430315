"""PASCAL VOC 2012 (+SBD) dataset description: class names, lists, labels from XML, GT masks.

``coco14/`` exposes the same interface; steps only see it through ``tool.data.registry.build_dataset``.
"""
from voc12.dataset import CLASS_NAMES, VOC12, XML_NAMES

__all__ = ["CLASS_NAMES", "VOC12", "XML_NAMES"]
