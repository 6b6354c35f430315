"""Tests of the toy-world generator (tool/toy/world.py): VOC layout, labels, XML, sidecars, determinism, safety."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tool.data.palette import load_label_png, voc_palette
from tool.toy.vocab import CLASS_SCENES, SCENE_THINGS, SCENES, SUBTYPES
from tool.toy.world import generate_toy_world, main
from voc12.dataset import CLASS_NAMES, XML_NAMES

SMALL = {"seed": 0, "num_train": 8, "num_val": 6, "num_extra_aug": 6, "image_size": (128, 160)}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("toy") / "VOC2012"
    return root, generate_toy_world(root, **SMALL)


def _lines(path: Path) -> list[str]:
    return path.read_text().split()


def _splits(root: Path) -> tuple[list[str], list[str], list[str]]:
    d = root / "ImageSets" / "Segmentation"
    return _lines(d / "train.txt"), _lines(d / "val.txt"), _lines(d / "train_aug.txt")


def _xml_objects(root: Path, image_id: str) -> tuple[ET.Element, list[ET.Element]]:
    ann = ET.parse(root / "Annotations" / f"{image_id}.xml").getroot()
    return ann, ann.findall("object")


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_and_splits(world: tuple[Path, dict]) -> None:
    root, summary = world
    train, val, train_aug = _splits(root)
    assert len(train) == 8 and len(val) == 6 and len(train_aug) == 8 + 6
    assert not set(train) & set(val)
    assert set(train) <= set(train_aug) and not set(val) & set(train_aug)
    extra = sorted(set(train_aug) - set(train))
    assert len(extra) == 6 and train_aug == sorted(train_aug)
    all_ids = train + val + extra
    assert all_ids == [f"toy_{i:06d}" for i in range(1, 21)]
    for i in all_ids:
        for sub, ext in (("JPEGImages", "jpg"), ("Annotations", "xml"), ("ToyMeta", "json")):
            assert (root / sub / f"{i}.{ext}").is_file(), (sub, i)
        with Image.open(root / "JPEGImages" / f"{i}.jpg") as im:
            assert im.format == "JPEG" and im.mode == "RGB" and im.size == (160, 128)
    # SBD-like extra images have no segmentation ground truth
    assert sorted(p.stem for p in (root / "SegmentationClass").glob("*.png")) == sorted(train + val)
    assert (root / "toy_world.json").is_file()
    # atomic writes leave no temp files, and the in-progress marker is gone
    assert not [p for p in root.rglob(".*")]
    assert summary["counts"] == {"train": 8, "val": 6, "extra_aug": 6, "train_aug": 14, "images": 20,
                                 "objects": summary["counts"]["objects"]}
    assert json.loads((root / "toy_world.json").read_text()) == summary


def test_label_png_palette_and_values(world: tuple[Path, dict]) -> None:
    root, _ = world
    train, val, _ = _splits(root)
    for i in train + val:
        with Image.open(root / "SegmentationClass" / f"{i}.png") as im:
            assert im.mode == "P"
            assert im.getpalette()[:768] == voc_palette().reshape(-1).tolist()
        lab = load_label_png(root / "SegmentationClass" / f"{i}.png")
        assert lab.shape == (128, 160)
        assert set(np.unique(lab).tolist()) <= {0, 255, *range(1, 21)}
        assert (lab == 255).any() and ((lab > 0) & (lab < 255)).any()


def test_void_border_separates_every_object(world: tuple[Path, dict]) -> None:
    # The default border is 2 px at 128 px (inside 1 px, outside 1 px), so a class pixel and a pixel of
    # any other label (background or another class) are never closer than 3 in L1 distance: growing each
    # label's region by 2 steps of 4-neighbours must only reach void (255) or the same label.
    root, summary = world
    assert summary["params"]["void_width"] == 2
    train, val, _ = _splits(root)
    for i in train + val:
        lab = load_label_png(root / "SegmentationClass" / f"{i}.png")
        for v in np.unique(lab):
            if v == 255:
                continue
            grown = lab == v
            for _ in range(2):
                g = grown.copy()
                g[1:] |= grown[:-1]
                g[:-1] |= grown[1:]
                g[:, 1:] |= grown[:, :-1]
                g[:, :-1] |= grown[:, 1:]
                grown = g
            reached = np.unique(lab[grown])
            assert set(reached.tolist()) <= {int(v), 255}, (i, int(v), reached)
        # and each object class does touch void: the border is drawn around it
        for v in np.unique(lab):
            if 0 < v < 255:
                m = lab == v
                ring = np.zeros_like(m)
                ring[1:] |= m[:-1]
                ring[:-1] |= m[1:]
                assert (lab[ring & ~m] == 255).any(), (i, int(v))


def test_xml_matches_mask_and_sidecar(world: tuple[Path, dict]) -> None:
    root, _ = world
    train, val, train_aug = _splits(root)
    segmented = set(train + val)
    for i in sorted(set(train_aug) | segmented):
        ann, objs = _xml_objects(root, i)
        assert ann.findtext("filename") == f"{i}.jpg" and ann.findtext("folder") == "VOC2012"
        size = ann.find("size")
        assert (size.findtext("width"), size.findtext("height"), size.findtext("depth")) == ("160", "128", "3")
        assert ann.findtext("segmented") == ("1" if i in segmented else "0")
        names = [o.findtext("name") for o in objs]  # direct children only: <part> names are not classes
        assert names and set(names) <= set(XML_NAMES)
        meta = json.loads((root / "ToyMeta" / f"{i}.json").read_text())
        assert [o["class"] for o in meta["objects"]] == names
        assert meta["scene"] in SCENES and set(meta["things"]) <= set(SCENE_THINGS[meta["scene"]])
        for o, x in zip(meta["objects"], objs):
            assert o["class_name"] == CLASS_NAMES[XML_NAMES.index(o["class"])]
            assert o["subtype"] in [s.name for s in SUBTYPES[o["class"]]]
            assert isinstance(o["color"], str) and o["color"]
            assert x.findtext("difficult") == "0" and x.findtext("truncated") in ("0", "1")
            bb = x.find("bndbox")
            box = [int(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            x0, y0, x1, y1 = o["bbox"]  # 0-based, end exclusive; XML is 1-based inclusive
            assert box == [x0 + 1, y0 + 1, x1, y1]
            assert 1 <= box[0] <= box[2] <= 160 and 1 <= box[1] <= box[3] <= 128
        if i in segmented:
            lab = load_label_png(root / "SegmentationClass" / f"{i}.png")
            in_mask = {XML_NAMES[v - 1] for v in np.unique(lab).tolist() if 0 < v < 255}
            assert in_mask == set(names), i
            # every class pixel lies inside a box of an object of that class
            for c in in_mask:
                inside = np.zeros_like(lab, dtype=bool)
                for o in meta["objects"]:
                    if o["class"] == c:
                        x0, y0, x1, y1 = o["bbox"]
                        inside[y0:y1, x0:x1] = True
                assert not ((lab == XML_NAMES.index(c) + 1) & ~inside).any(), (i, c)


def test_objects_cover_a_reasonable_fraction(world: tuple[Path, dict]) -> None:
    root, _ = world
    train, val, _ = _splits(root)
    fg = [float((load_label_png(root / "SegmentationClass" / f"{i}.png") != 0).mean()) for i in train + val]
    assert 0.05 < float(np.mean(fg)) < 0.6 and min(fg) > 0.02


def test_person_head_parts(tmp_path: Path) -> None:
    generate_toy_world(tmp_path / "w", seed=3, num_train=10, num_val=0, num_extra_aug=0, image_size=(96, 96),
                       classes=["person"], max_objects=2)
    parts = 0
    for p in sorted((tmp_path / "w" / "Annotations").glob("*.xml")):
        for o in ET.parse(p).getroot().findall("object"):
            assert o.findtext("name") == "person" and o.findtext("pose") == "Frontal"
            ob = [int(o.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
            for part in o.findall("part"):
                assert part.findtext("name") == "head"  # not a class: a parser must filter by class name
                hb = [int(part.find("bndbox").findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")]
                assert ob[0] <= hb[0] < hb[2] <= ob[2] and ob[1] <= hb[1] < hb[3] <= ob[3]
                parts += 1
    assert parts > 0


def test_deterministic_from_seed(tmp_path: Path) -> None:
    kw = {"num_train": 3, "num_val": 2, "num_extra_aug": 2, "image_size": (64, 80)}
    generate_toy_world(tmp_path / "a", seed=5, **kw)
    generate_toy_world(tmp_path / "b", seed=5, **kw)
    generate_toy_world(tmp_path / "c", seed=6, **kw)
    a, b, c = (_all_files(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    assert a["JPEGImages/toy_000001.jpg"] != c["JPEGImages/toy_000001.jpg"]


def test_rerun_is_idempotent(world: tuple[Path, dict]) -> None:
    root, summary = world
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert generate_toy_world(root, **SMALL) == summary
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_other_parameters_raise_and_touch_nothing(world: tuple[Path, dict]) -> None:
    root, _ = world
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    with pytest.raises(FileExistsError, match=r"seed.*pick another folder or delete"):
        generate_toy_world(root, **{**SMALL, "seed": 1})
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before


def test_foreign_or_unfinished_folder(tmp_path: Path) -> None:
    kw = {"seed": 0, "num_train": 2, "num_val": 1, "num_extra_aug": 0, "image_size": (64, 64)}
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_toy_world(user, **kw)
    assert [p.name for p in user.iterdir()] == ["notes.txt"]

    # A killed run leaves the in-progress marker: the same parameters redo it, the result is complete.
    root = tmp_path / "w"
    summary = generate_toy_world(root, **kw)
    reference = _all_files(root)
    (root / "toy_world.json").unlink()
    with pytest.raises(FileExistsError, match="not empty"):  # without the marker it is not provably ours
        generate_toy_world(root, **kw)
    (root / ".toy_world.partial.json").write_text(json.dumps({"params": summary["params"]}))
    (root / "JPEGImages" / "toy_000002.jpg").unlink()
    assert generate_toy_world(root, **kw) == summary
    assert _all_files(root) == reference


@pytest.mark.parametrize("bad", [["unicorn"], ["cow", "dining table"]])
def test_unknown_class_is_an_error(tmp_path: Path, bad: list[str]) -> None:
    with pytest.raises(ValueError, match=repr(bad[-1])):
        generate_toy_world(tmp_path / "w", num_train=1, num_val=0, num_extra_aug=0, classes=bad)
    assert not (tmp_path / "w").exists()


def test_class_subset_keeps_voc_indices(tmp_path: Path) -> None:
    s = generate_toy_world(tmp_path / "w", seed=1, num_train=6, num_val=0, num_extra_aug=0, image_size=(64, 80),
                           classes=["train", "cow"])
    assert s["params"]["classes"] == ["cow", "train"]  # XML order whatever order was given
    for p in sorted((tmp_path / "w" / "SegmentationClass").glob("*.png")):
        assert set(np.unique(load_label_png(p)).tolist()) <= {0, 10, 19, 255}  # cow = 10, train = 19


def _first_object_at_home(root: Path) -> float:
    metas = [json.loads(p.read_text()) for p in sorted((root / "ToyMeta").glob("*.json"))]
    return float(np.mean([m["scene"] in CLASS_SCENES[m["objects"][0]["class"]] for m in metas]))


def test_scene_correlation(tmp_path: Path) -> None:
    # Classes with one home scene each: P(scene is the first object's home) = p + (1 - p) / 6.
    kw = {"num_train": 100, "num_val": 0, "num_extra_aug": 0, "image_size": (48, 64), "max_objects": 1,
          "classes": ["aeroplane", "boat", "cow", "train"]}
    generate_toy_world(tmp_path / "p1", scene_correlation=1.0, **kw)
    assert _first_object_at_home(tmp_path / "p1") == 1.0
    generate_toy_world(tmp_path / "p85", scene_correlation=0.85, **kw)
    assert 0.75 <= _first_object_at_home(tmp_path / "p85") <= 0.97  # expected 0.875
    generate_toy_world(tmp_path / "p0", scene_correlation=0.0, **kw)
    assert 0.05 <= _first_object_at_home(tmp_path / "p0") <= 0.35  # expected 1/6


def test_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    assert main(["--out", os.fspath(out), "--seed", "2", "--num-train", "2", "--num-val", "1", "--num-extra-aug",
                 "1", "--size", "64", "96", "--classes", "boat,bird"]) == 0
    stored = json.loads((out / "toy_world.json").read_text())
    assert stored["params"]["image_size"] == [64, 96] and stored["params"]["classes"] == ["bird", "boat"]
    assert stored["counts"]["images"] == 4
    # other parameters on the same folder: a clear error and exit status 2, nothing overwritten
    assert main(["--out", os.fspath(out), "--seed", "3", "--size", "64", "96"]) == 2
    assert json.loads((out / "toy_world.json").read_text()) == stored
