"""The toy world exported as a folder dataset (tool.toy.folder_layout) is its VOC-layout twin in another layout."""
from __future__ import annotations

import numpy as np
import pytest

from tool.data.folder import FolderDataset
from tool.engine.config import DatasetConfig
from tool.toy.folder_layout import export_folder_world
from tool.toy.world import generate_toy_world
from voc12.dataset import VOC12

QUESTION_NAMES = {"diningtable": "dining table", "pottedplant": "potted plant", "tvmonitor": "tv monitor"}


@pytest.fixture(scope="module")
def twins(module_tmp):
    tmp = module_tmp
    generate_toy_world(tmp / "VOC2012", seed=3, num_train=4, num_val=2, num_extra_aug=2, image_size=(48, 64))
    export_folder_world(tmp / "VOC2012", tmp / "folder")
    voc = VOC12(tmp / "VOC2012")
    folder = FolderDataset(DatasetConfig(name="folder", root=str(tmp / "folder"), question_names=QUESTION_NAMES))
    return tmp, voc, folder


def test_same_classes_splits_labels_images_and_masks(twins):
    tmp, voc, folder = twins
    assert folder.class_names == voc.class_names and folder.num_classes == 20
    for split in ("train", "val", "train_aug"):
        assert folder.ids(split) == voc.ids(split)
    ids = voc.ids("train_aug") + voc.ids("val")
    np.testing.assert_array_equal(folder.labels(ids), voc.labels(ids))
    for i in ids:
        assert folder.image_path(i).read_bytes() == voc.image_path(i).read_bytes()
        assert folder.has_gt(i) == voc.has_gt(i)
        if voc.has_gt(i):
            np.testing.assert_array_equal(folder.load_gt(i), voc.load_gt(i))
    assert sum(folder.has_gt(i) for i in ids) == 6        # train + val have masks, the 2 extra images none
    # one row by hand: the CSV names the XML classes of the image's objects
    first = (tmp / "folder" / "labels.csv").read_text().splitlines()[1]
    assert first.split(",")[0] == "toy_000001"
    assert set(first.split(",")[1].split(";")) == {n for n, v in zip(
        [line.strip() for line in (tmp / "folder" / "classes.txt").read_text().splitlines()],
        voc.labels(["toy_000001"])[0]) if v}


def test_export_is_idempotent_and_never_overwrites(twins, tmp_path):
    tmp, _, _ = twins
    before = (tmp / "folder" / "labels.csv").stat().st_mtime_ns
    export_folder_world(tmp / "VOC2012", tmp / "folder")
    assert (tmp / "folder" / "labels.csv").stat().st_mtime_ns == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not empty and holds no toy-world export"):
        export_folder_world(tmp / "VOC2012", tmp_path / "mine")
