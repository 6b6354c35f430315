"""What a step's digest follows (tool/engine/runner.py): edited labels, split lists and GT masks rerun the steps
that read them, a forced upstream rerun reruns its consumers, markers of older code stay done."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from tests.test_voc12 import XML, make_voc
from tool.data.palette import save_label_png
from tool.engine.config import load_config
from tool.engine.io import read_json
from tool.engine.runner import run_step, step_digest, step_module
from tool.engine.runtime import make_context

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
STEPS = ("qape", "train_cam", "make_cam", "eval_cam")


def _touch_later(path: Path) -> None:
    """Move the mtime on by a second: an edit within the file system's mtime granularity still shows."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


@pytest.fixture
def voc_run(tmp_path, monkeypatch):
    """A tiny VOC (images a, b with GT masks) and the steps of ``STEPS`` with their ``run`` replaced by a
    recorder: the runner's decisions (run or skip) are what is looked at."""
    root = make_voc(tmp_path, ids=("a", "b"))
    for i in ("a", "b"):
        save_label_png(root / "SegmentationClass" / f"{i}.png", np.zeros((2, 2), np.uint8))
    cfg = load_config(SMOKE, [f"work_dir={tmp_path / 'work'}", f"dataset.root={root}", "toy.generate=false",
                              "dataset.train_split=train", "dataset.eval_split=train", "dataset.val_split=train"])
    ctx = make_context(cfg)
    ran: list[str] = []
    for name in STEPS:
        monkeypatch.setattr(step_module(name), "run", lambda cfg, ctx, name=name: ran.append(name) or {})

    def run(*steps: str, force: bool = False) -> list[str]:
        ran.clear()
        for s in steps or STEPS:
            run_step(s, cfg, ctx, force=force)
        return list(ran)

    return root, cfg, ctx, run


def test_edited_voc_labels_lists_and_masks_rerun_their_readers(voc_run):
    root, _, _, run = voc_run
    assert run() == list(STEPS)
    assert run() == []                                          # nothing changed: all up to date
    xml = root / "Annotations" / "a.xml"
    xml.write_text(XML.replace("diningtable", "dog").format(id="a"))   # a: person + table -> person + dog
    _touch_later(xml)
    assert run() == list(STEPS)                                 # labels read by qape, train_cam, make_cam
    xml.write_text(XML.replace("diningtable", "dog").replace("<xmin>1<", "<xmin>2<").format(id="a"))
    _touch_later(xml)
    assert run() == []                                          # a box moved: the labels are the same
    lst = root / "ImageSets" / "Segmentation" / "train.txt"
    lst.write_text("a\n")
    assert run() == list(STEPS)                                 # the split list lost b
    assert run() == []
    gt = root / "SegmentationClass" / "a.png"
    save_label_png(gt, np.ones((2, 2), np.uint8))
    _touch_later(gt)
    assert run() == ["eval_cam"]                                # a GT mask is read by the evaluation alone


def test_forced_upstream_rerun_reruns_its_consumers(voc_run):
    """``--force --steps train_cam`` remakes the model: make_cam and eval_cam must not stay "up to date" on
    CAMs of the old one (their digests hold train_cam's run id, which a rerun renews; its config digest
    does not change)."""
    _, _, _, run = voc_run
    run()
    assert run("train_cam", force=True) == ["train_cam"]
    assert run("make_cam", "eval_cam") == ["make_cam", "eval_cam"]


def test_marker_of_older_code_stays_done_and_takes_the_data(voc_run):
    """A marker written before the data entered the digest (no ``data`` field, the digest without it) is not
    rerun by an upgrade; it is rewritten with today's digest, keeping its run id, so later edits count."""
    root, cfg, ctx, run = voc_run
    run()
    marker = ctx.paths.done_marker("qape")
    done = read_json(marker)
    old = {k: v for k, v in done.items() if k != "data"}
    old["digest"] = step_digest("qape", cfg, ctx, data=False)
    assert old["digest"] != done["digest"]
    marker.write_text(json.dumps(old))
    assert run("qape") == []
    now = read_json(marker)
    assert now["digest"] == step_digest("qape", cfg, ctx) and now["run_id"] == done["run_id"] and now["data"]
    xml = root / "Annotations" / "b.xml"
    xml.write_text(XML.replace("person", "cat").format(id="b"))
    _touch_later(xml)
    assert run("qape") == ["qape"]


def test_coco_json_and_folder_labels_enter_the_digest(tmp_path):
    """The same for the other datasets, through the one interface: an edited COCO instances JSON (a label,
    not a polygon) and an edited labels.csv or classes.txt change the digest of the steps reading labels."""
    from tests.test_coco14 import TRAIN_ANNS, image, instances, write_coco
    from tests.test_folder_dataset import make_folder

    coco = write_coco(tmp_path / "COCO", instances(TRAIN_ANNS, [image(30), image(10), image(20)]))
    cfg = load_config(SMOKE, [f"work_dir={tmp_path / 'w1'}", "dataset.name=coco14", f"dataset.root={coco}",
                              "toy.generate=false", "dataset.train_split=train"])
    ctx = make_context(cfg)
    before = step_digest("train_cam", cfg, ctx)
    moved = [dict(a, segmentation=[[0.0, 0.0, 1.0, 0.0, 1.0, 1.0]]) if a["id"] == 7 else a for a in TRAIN_ANNS]
    write_coco(coco, instances(moved, [image(30), image(10), image(20)]), jpgs=False)
    _touch_later(coco / "annotations" / "instances_train2014.json")
    assert step_digest("train_cam", cfg, ctx) == before        # a polygon changed, not a label
    relabelled = [dict(a, category_id=3) if a["id"] == 7 else a for a in TRAIN_ANNS]   # a couch becomes a car
    write_coco(coco, instances(relabelled, [image(30), image(10), image(20)]), jpgs=False)
    _touch_later(coco / "annotations" / "instances_train2014.json")
    assert step_digest("train_cam", cfg, ctx) != before

    root = make_folder(tmp_path / "folder")
    cfg = load_config(SMOKE, [f"work_dir={tmp_path / 'w2'}", "dataset.name=folder", f"dataset.root={root}",
                              "toy.generate=false", "dataset.train_split=all"])
    ctx = make_context(cfg)
    before = step_digest("qape", cfg, ctx)
    (root / "labels.csv").write_text("image,labels\na.jpg,cat\nsub/b,tv monitor\nc, dog | cat \n")
    assert step_digest("qape", cfg, ctx) != before             # a lost its dog
    before = step_digest("qape", cfg, ctx)
    (root / "classes.txt").write_text("cat\ndog\ntv monitor\n")   # the same classes, comments gone
    assert step_digest("qape", cfg, ctx) == before
    (root / "classes.txt").write_text("cat\ndog\ntv\n")
    (root / "labels.csv").write_text("image,labels\na.jpg,cat\nsub/b,tv\nc, dog | cat \n")
    assert step_digest("qape", cfg, ctx) != before             # renamed: QAPE asks about a "tv" now


# ---- names a user mistyped -------------------------------------------------------------------------------

def test_unknown_voc_object_names_are_named_by_the_reader_and_by_check(tmp_path):
    """An image labelled dog + person whose dog is typed ``dgo`` is not read as person alone; an XML whose only
    object is ``Car`` names ``Car``. ``--check`` reports the same, fatal."""
    from tool.data.base import DatasetError
    from tool.preflight import preflight
    from voc12.dataset import VOC12

    root = make_voc(tmp_path, ids=("a", "b", "c"))
    (root / "Annotations" / "a.xml").write_text(XML.replace("diningtable", "dgo").format(id="a"))
    (root / "Annotations" / "b.xml").write_text("<annotation><object><name>Car</name></object></annotation>")
    with pytest.raises(DatasetError) as e:
        VOC12(root, tmp_path / "cache").labels(["a", "b", "c"])
    msg = str(e.value)
    assert f"{root / 'Annotations' / 'a.xml'}: object name 'dgo' is not a VOC class (did you mean 'dog'?)" in msg
    assert f"{root / 'Annotations' / 'b.xml'}: object name 'Car' is not a VOC class (did you mean 'car'?)" in msg
    assert "and 1 more" in msg
    # the good image is cached, the bad ones are not: fixed, they are read again
    (root / "Annotations" / "b.xml").write_text("<annotation><object><name>car</name></object></annotation>")
    (root / "Annotations" / "a.xml").write_text(XML.format(id="a"))
    assert VOC12(root, tmp_path / "cache").labels(["a", "b", "c"]).sum(axis=1).tolist() == [2, 1, 2]

    (root / "Annotations" / "c.xml").write_text(XML.replace("diningtable", "dgo").format(id="c"))
    _touch_later(root / "Annotations" / "c.xml")
    cfg = load_config(SMOKE, [f"work_dir={tmp_path / 'work'}", f"dataset.root={root}", "toy.generate=false",
                              "dataset.train_split=train"])
    found = [p for p in preflight(cfg, ["train_cam"]) if "dgo" in p.message]
    assert len(found) == 1 and found[0].fatal and found[0].key == "dataset.train_split"


def test_a_label_cache_of_older_code_is_rebuilt(tmp_path):
    """Caches written when unknown names were dropped hold the wrong labels under matching stamps: rebuilt."""
    from tool.data.base import DatasetError
    from voc12.dataset import VOC12, XML_NAMES

    root = make_voc(tmp_path, ids=("a",), xml=XML.replace("diningtable", "dgo"))
    xml = root / "Annotations" / "a.xml"
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "voc12_labels.json").write_text(json.dumps({
        "version": 2, "root": str(root.resolve()), "labels": {"a": [XML_NAMES.index("person")]},
        "stamps": {"a": [xml.stat().st_size, xml.stat().st_mtime_ns]}}))
    with pytest.raises(DatasetError, match="'dgo' is not a VOC class"):
        VOC12(root, tmp_path / "cache").labels(["a"])


def test_split_lists_of_another_format_are_refused_naming_the_line(tmp_path):
    from tool.data.base import DatasetError
    from voc12.dataset import VOC12

    root = make_voc(tmp_path)
    lst = root / "ImageSets" / "Segmentation" / "train.txt"
    lst.write_text("a  1\nb -1\n")                    # ImageSets/Main/dog_train.txt: b is a negative
    with pytest.raises(DatasetError, match=rf"{lst}:1: 'a  1' holds 2 words.*ImageSets/Main class list"):
        VOC12(root).ids("train")
    lst.write_text("a.jpg\nb\n")
    with pytest.raises(DatasetError, match=r"without folder or extension \('a', not 'a.jpg'\)"):
        VOC12(root).ids("train")


def test_coco_list_entry_with_its_extension_gets_a_hint(tmp_path):
    from coco14.dataset import COCO14
    from tests.test_coco14 import TRAIN_ANNS, image, instances, stem, write_coco
    from tool.data.base import DatasetError

    root = write_coco(tmp_path / "COCO", instances(TRAIN_ANNS, [image(30), image(10)]))
    (root / "lists").mkdir()
    (root / "lists" / "mine.txt").write_text(f"{stem(10)}\n{stem(30)}.jpg\n")
    with pytest.raises(DatasetError, match=rf"mine.txt: .*without folder or extension \('{stem(30)}', not"):
        COCO14(root).ids("mine")


def test_folder_split_list_entries_resolve_as_in_the_label_file_and_errors_name_their_key(tmp_path):
    from tests.test_folder_dataset import cfg as folder_cfg
    from tests.test_folder_dataset import make_folder
    from tool.data.folder import FolderDataset
    from tool.preflight import preflight

    root = make_folder(tmp_path / "f")
    (root / "splits").mkdir()
    (root / "splits" / "train.txt").write_text("./a.jpg\n.\\sub\\b.png\nc\n")
    assert FolderDataset(folder_cfg(root)).ids("train") == ["a", "sub/b", "c"]

    (root / "labels.csv").write_text("image,labels\na.jpg,cat;dgo\n")
    cfg = load_config(SMOKE, [f"work_dir={tmp_path / 'work'}", "dataset.name=folder", f"dataset.root={root}",
                              "toy.generate=false", "dataset.train_split=train"])
    found = [p for p in preflight(cfg, ["train_cam"]) if "dgo" in p.message]
    assert [(p.key, p.fatal) for p in found] == [("dataset.labels", True)]
