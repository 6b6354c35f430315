"""The folder dataset (dataset.name: folder): label formats, class list, question names, every error, splits."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tool.data.base import DatasetError
from tool.data.folder import FolderDataset, draw_splits
from tool.data.palette import save_label_png
from tool.data.registry import build_dataset
from tool.engine.config import DatasetConfig

CLASSES = ("cat", "dog", "tv monitor")


def make_folder(root: Path, labels_name: str = "labels.csv", labels_text: str | None = None) -> Path:
    """images/a.jpg, images/sub/b.png, images/c.webp; classes.txt; masks for a and sub/b."""
    (root / "images" / "sub").mkdir(parents=True)
    Image.new("RGB", (6, 4), (10, 20, 30)).save(root / "images" / "a.jpg")
    Image.new("L", (5, 3), 7).save(root / "images" / "sub" / "b.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(root / "images" / "c.webp")
    (root / "classes.txt").write_text("# index order\ncat\ndog\n\ntv monitor\n")
    if labels_text is None:
        labels_text = "image,labels\na.jpg,cat;dog\nsub/b,tv monitor\nc, dog | cat \n"
    (root / labels_name).write_text(labels_text)
    save_label_png(root / "masks" / "a.png", np.array([[0, 1, 2, 255, 0, 0]] * 4, np.uint8))
    save_label_png(root / "masks" / "sub" / "b.png", np.full((3, 5), 3, np.uint8))
    return root


def cfg(root: Path, **kw) -> DatasetConfig:
    return dataclasses.replace(DatasetConfig(name="folder", root=str(root)), **kw)


def test_csv_names_form(tmp_path):
    ds = FolderDataset(cfg(make_folder(tmp_path)))
    assert ds.name == "folder" and ds.num_classes == 3 and ds.class_names == CLASSES
    assert ds.ids("all") == ["a", "sub/b", "c"]
    np.testing.assert_array_equal(ds.labels(["a", "sub/b", "c"]), [[1, 1, 0], [0, 0, 1], [1, 1, 0]])
    assert ds.image_path("sub/b") == tmp_path / "images" / "sub" / "b.png"
    assert ds.image_path("c") == tmp_path / "images" / "c.webp"
    assert ds.has_gt("a") and ds.has_gt("sub/b") and not ds.has_gt("c")
    np.testing.assert_array_equal(ds.load_gt("a")[0], [0, 1, 2, 255, 0, 0])
    with pytest.raises(DatasetError, match=r"no ground-truth mask at .*c\.png"):
        ds.load_gt("c")


def test_csv_one_hot_form_and_json_give_the_same_labels(tmp_path):
    one_hot = "image,dog,tv monitor,cat\na,1,0,1\nsub/b.png,0,1,0\nc.webp,1,0,1\n"
    a = FolderDataset(cfg(make_folder(tmp_path / "a", labels_text=one_hot)))
    js = json.dumps({"a": ["cat", "dog"], "sub/b": ["tv monitor"], "c": ["dog", "cat"]}, indent=1)
    b = FolderDataset(cfg(make_folder(tmp_path / "b", "labels.json", js), labels="labels.json"))
    want = [[1, 1, 0], [0, 0, 1], [1, 1, 0]]
    for ds in (a, b):
        assert ds.ids("all") == ["a", "sub/b", "c"]
        np.testing.assert_array_equal(ds.labels(ds.ids("all")), want)


def test_class_list_from_config_and_question_names(tmp_path):
    root = make_folder(tmp_path)
    ds = FolderDataset(cfg(root, classes=("dog", "cat", "tv monitor"), question_names={"tv monitor": "television"}))
    assert ds.label_names == ("dog", "cat", "tv monitor") and ds.class_names == ("dog", "cat", "television")
    np.testing.assert_array_equal(ds.labels(["a", "sub/b"]), [[1, 1, 0], [0, 0, 1]])   # index order of the config
    with pytest.raises(DatasetError, match="dataset.question_names: 'bird' is not a class"):
        FolderDataset(cfg(root, question_names={"bird": "a bird"}))
    with pytest.raises(DatasetError, match="'background'; leave it out"):
        FolderDataset(cfg(root, classes=("background", "cat")))
    with pytest.raises(DatasetError, match="class 'cat' is listed twice"):
        FolderDataset(cfg(root, classes=("cat", "dog", "cat")))


@pytest.mark.parametrize("text, match", [
    ("image,labels\na,cat\nmissing.jpg,dog\n", r"labels\.csv:3: image 'missing\.jpg' does not exist"),
    ("image,labels\na,cat\nnope,dog\n", r"labels\.csv:3: image 'nope' does not exist"),
    ("image,labels\na,cat;bird\n", r"labels\.csv:2: class 'bird' of image 'a' is not in the class list"),
    ("image,labels\na,cat\nc,\n", r"labels\.csv:3: image 'c' has no class"),
    ("image,labels\na,cat\nc,dog\na.jpg,dog\n", r"labels\.csv:4: image 'a\.jpg' is already listed on line 2"),
    ("file,labels\na,cat\n", r"labels\.csv:1: the header must be 'image,labels'"),
    ("image,cat,bird\na,1,0\n", r"labels\.csv:1: column 'bird' is not a class"),
    ("image,cat,dog\na,1,2\n", r"labels\.csv:2: column 'dog' must be 0 or 1"),
    ("image,labels\n../a,cat\n", r"labels\.csv:2: image '\.\./a' must be a path inside"),
])
def test_label_errors_name_file_and_line(tmp_path, text, match):
    with pytest.raises(DatasetError, match=match):
        FolderDataset(cfg(make_folder(tmp_path, labels_text=text)))


def test_json_errors_name_the_line(tmp_path):
    js = '{\n "a": ["cat"],\n "c": ["dog"],\n "a": ["dog"]\n}\n'
    with pytest.raises(DatasetError, match=r"labels\.json:2: image 'a' is listed twice"):
        FolderDataset(cfg(make_folder(tmp_path / "d", "labels.json", js), labels="labels.json"))
    js = '{\n "a": ["cat"],\n "c": ["horse"]\n}\n'
    with pytest.raises(DatasetError, match=r"labels\.json:3: class 'horse' of image 'c'"):
        FolderDataset(cfg(make_folder(tmp_path / "e", "labels.json", js), labels="labels.json"))


def test_ambiguous_name_without_extension(tmp_path):
    root = make_folder(tmp_path, labels_text="image,labels\na,cat\n")
    Image.new("RGB", (6, 4)).save(root / "images" / "a.png")
    with pytest.raises(DatasetError, match=r"labels\.csv:2: image 'a' is ambiguous \(a\.jpg, a\.png\)"):
        FolderDataset(cfg(root))


def test_list_file_splits(tmp_path):
    root = make_folder(tmp_path)
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("c.webp\nsub/b\n")
    ds = FolderDataset(cfg(root))
    assert ds.ids("train") == ["c", "sub/b"]
    (root / "splits" / "bad.txt").write_text("a\nzzz\n")
    with pytest.raises(DatasetError, match=r"bad\.txt: entry 2 \('zzz'\) has no labels"):
        ds.ids("bad")
    with pytest.raises(DatasetError, match=r"split 'val': no list .*val\.txt"):
        ds.ids("val")


def test_drawn_splits_hand_worked():
    # 10 ids, seed 0: numpy's default_rng(0).permutation(10) is [4 6 2 7 3 5 9 0 8 1] (read off numpy once);
    # train takes positions 0..7 of the sorted ids, val 8..9 -> ids 8 and 1
    ids = [f"im{k}" for k in range(10)]
    assert np.random.default_rng(0).permutation(10).tolist() == [4, 6, 2, 7, 3, 5, 9, 0, 8, 1]
    got = draw_splits(list(reversed(ids)), {"train": 0.8, "val": 0.2}, 0)     # input order does not matter
    assert got["val"] == ["im1", "im8"] and len(got["train"]) == 8 and set(got["train"]) | set(got["val"]) == set(ids)
    with pytest.raises(DatasetError, match="sum to 0.9, not 1"):
        draw_splits(ids, {"train": 0.7, "val": 0.2}, 0)
    with pytest.raises(DatasetError, match="'val' gets no image of 10"):
        draw_splits(ids, {"train": 0.99, "val": 0.01}, 0)


def test_splits_made_once_in_the_work_dir_and_reused(tmp_path):
    root = make_folder(tmp_path / "data")
    work = tmp_path / "work"
    c = cfg(root, split={"train": 0.67, "val": 0.33, "seed": 0.0})
    ds = build_dataset(c, work / "cache")
    train, val = ds.ids("train"), ds.ids("val")
    assert len(train) == 2 and len(val) == 1 and sorted(train + val) == ["a", "c", "sub/b"]
    assert (work / "splits" / "train.txt").read_text().split() == train
    # a later stage reads the kept files, not a new draw: edit them and the edit is what it sees
    (work / "splits" / "train.txt").write_text("a\n")
    assert build_dataset(c, work / "cache").ids("train") == ["a"]
    with pytest.raises(DatasetError, match="delete .*splits to draw new ones"):
        build_dataset(cfg(root, split={"train": 0.5, "val": 0.5, "seed": 0.0}), work / "cache").ids("train")


def test_folder_keys_stay_out_of_other_datasets_digests():
    """A VOC run's digests ignore the folder-only keys (so runs made before they existed stay done); a
    folder run's do not. The VOC digest is the one the code before these keys computed (read off it once)."""
    from tool.engine.config import Config, section_digest

    voc = Config()
    assert section_digest(voc, ("dataset",)) == "2b5b28d5275a8832"
    changed = dataclasses.replace(voc, dataset=dataclasses.replace(voc.dataset, masks="gt", split={"train": 1.0}))
    assert section_digest(changed, ("dataset",)) == section_digest(voc, ("dataset",))
    folder = dataclasses.replace(voc, dataset=dataclasses.replace(voc.dataset, name="folder"))
    folder_changed = dataclasses.replace(folder, dataset=dataclasses.replace(folder.dataset, masks="gt"))
    assert section_digest(folder_changed, ("dataset",)) != section_digest(folder, ("dataset",))
