"""VOC 2012 description: labels from XML, lists, GT lookup, errors; the train_aug builder."""
from __future__ import annotations

import numpy as np
import pytest

from tool.data.palette import load_label_png, save_label_png, voc_palette
from voc12.dataset import CLASS_NAMES, VOC12, XML_NAMES, DatasetError, labels_from_xml
from voc12.make_train_aug import build_train_aug

XML = """<annotation><filename>{id}.jpg</filename>
<object><name>person</name><part><name>head</name></part><part><name>hand</name></part>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>
<object><name>diningtable</name></object>
<object><name>person</name></object>
</annotation>"""


def make_voc(tmp_path, ids=("a", "b"), xml=XML):
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for i in ids:
        (root / "JPEGImages" / f"{i}.jpg").write_bytes(b"\xff\xd8")
        (root / "Annotations" / f"{i}.xml").write_text(xml.format(id=i))
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return root


def test_class_names():
    assert len(XML_NAMES) == 20 and XML_NAMES[10] == "diningtable"
    assert CLASS_NAMES[10] == "dining table" and CLASS_NAMES[15] == "potted plant" and CLASS_NAMES[19] == "tv monitor"


def test_labels_from_xml_ignore_parts(tmp_path):
    p = tmp_path / "x.xml"
    p.write_text(XML.format(id="x"))
    lab = labels_from_xml(p)
    assert lab.dtype == np.float32 and lab.shape == (20,)
    assert set(np.nonzero(lab)[0]) == {XML_NAMES.index("person"), XML_NAMES.index("diningtable")}


def test_labels_cached_and_checked(tmp_path):
    root = make_voc(tmp_path)
    ds = VOC12(root, cache_dir=tmp_path / "cache")
    lab = ds.labels(ds.ids("train"))
    assert lab.shape == (2, 20) and lab.sum() == 4
    assert (tmp_path / "cache" / "voc12_labels.json").is_file()
    # the cache answers without the XML
    (root / "Annotations" / "a.xml").unlink()
    assert (VOC12(root, cache_dir=tmp_path / "cache").labels(["a"]) == lab[:1]).all()


def test_image_without_class_is_an_error(tmp_path):
    root = make_voc(tmp_path, ids=("c",), xml="<annotation><filename>c.jpg</filename></annotation>")
    with pytest.raises(DatasetError, match="names none of the 20 VOC classes"):
        VOC12(root).labels(["c"])


def test_missing_root_subfolder_split_and_image(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        VOC12(tmp_path / "nowhere")
    root = make_voc(tmp_path)
    with pytest.raises(DatasetError, match="train_aug.*make_train_aug"):
        VOC12(root).ids("train_aug")
    (root / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 listed image\(s\) of .*train.txt missing.*'b'"):
        VOC12(root).ids("train")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DatasetError, match="no JPEGImages/"):
        VOC12(tmp_path / "bare")


def test_gt_prefers_segmentationclass_then_aug(tmp_path):
    root = make_voc(tmp_path)
    ds = VOC12(root)
    assert not ds.has_gt("a")
    (root / "SegmentationClassAug").mkdir()
    save_label_png(root / "SegmentationClassAug" / "a.png", np.full((3, 4), 7, np.uint8))
    assert ds.load_gt("a")[0, 0] == 7
    lab = np.array([[0, 1], [255, 20]], np.uint8)
    save_label_png(root / "SegmentationClass" / "a.png", lab)
    assert (ds.load_gt("a") == lab).all()
    with pytest.raises(DatasetError, match="no ground-truth mask"):
        ds.load_gt("b")


def test_palette_and_png_round_trip(tmp_path):
    pal = voc_palette()
    assert tuple(pal[1]) == (128, 0, 0) and tuple(pal[15]) == (192, 128, 128) and tuple(pal[255]) == (224, 224, 192)
    lab = np.random.default_rng(0).integers(0, 21, (5, 6)).astype(np.uint8)
    save_label_png(tmp_path / "l.png", lab)
    assert (load_label_png(tmp_path / "l.png") == lab).all()


def test_train_aug_union_minus_val(tmp_path):
    root = make_voc(tmp_path, ids=("t1", "t2", "v1", "s1", "s2"))
    (root / "ImageSets/Segmentation/train.txt").write_text("t1\nt2\n")
    (root / "ImageSets/Segmentation/val.txt").write_text("v1\n")
    sbd = tmp_path / "sbd" / "dataset"
    sbd.mkdir(parents=True)
    (sbd / "train.txt").write_text("s1\nv1\nmissing\n")
    (sbd / "val.txt").write_text("s2\nt1\n")
    ids, dropped = build_train_aug(root, tmp_path / "sbd")
    assert ids == ["s1", "s2", "t1", "t2"] and dropped == 1
