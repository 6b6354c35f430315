"""MS COCO 2014: category map, labels from the instances JSON, GT mask rendering, subsets, errors, the
COCO-layout toy world, and the existing steps end to end on it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import coco14.dataset as cd
import run_sample
from coco14.dataset import CATEGORY_IDS, CATEGORY_TO_INDEX, CLASS_NAMES, COCO14, VOC_TO_COCO, category_index
from coco14.make_coco_masks import main as masks_main
from coco14.make_coco_masks import make_masks, render_semantic_mask
from coco14.make_coco_subset import main as subset_main
from coco14.make_coco_subset import select_subset
from tool.data.palette import load_label_png
from tool.data.registry import build_dataset
from tool.engine.config import DatasetConfig
from tool.engine.io import read_json
from tool.toy.coco_layout import uncompressed_rle, write_coco_layout
from tool.toy.world import generate_toy_world
from voc12.dataset import XML_NAMES, DatasetError

# pycocotools' Cython masks predate numpy 2's __array__(copy=...): a harmless warning of the reference COCO API
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
# Columns (0-based) worked out by counting down the COCO list: person 0 ... dog 16, chair 56, couch 57, tv 62.
PERSON, DOG, COUCH, TV = 0, 16, 57, 62


# ---- the category map ------------------------------------------------------------------------------

def test_category_map():
    assert len(CATEGORY_IDS) == 80 and len(CLASS_NAMES) == 80 and COCO14.num_classes == 80
    assert set(range(1, 91)) - set(CATEGORY_IDS) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
    assert sorted(CATEGORY_TO_INDEX.values()) == list(range(1, 81))
    # entries of the official QA-CLIMS category_map (mscoco/dataloader.py)
    for cid, k in ((1, 1), (11, 11), (13, 12), (25, 24), (27, 25), (44, 40), (46, 41), (67, 61), (70, 62),
                   (72, 63), (84, 74), (90, 80)):
        assert CATEGORY_TO_INDEX[cid] == k == category_index(cid)
    for cid, name in ((72, "tv"), (63, "couch"), (67, "dining table"), (64, "potted plant"), (89, "hair drier"),
                      (4, "motorcycle"), (5, "airplane")):
        assert CLASS_NAMES[CATEGORY_TO_INDEX[cid] - 1] == name
    assert CLASS_NAMES[PERSON] == "person" and CLASS_NAMES[DOG] == "dog" and CLASS_NAMES[COUCH] == "couch"
    assert CLASS_NAMES[TV] == "tv"
    assert set(VOC_TO_COCO) == set(XML_NAMES)
    assert (VOC_TO_COCO["aeroplane"], VOC_TO_COCO["motorbike"], VOC_TO_COCO["sofa"], VOC_TO_COCO["tvmonitor"],
            VOC_TO_COCO["diningtable"], VOC_TO_COCO["pottedplant"], VOC_TO_COCO["person"]) == (5, 4, 63, 72, 67, 64, 1)
    # every other VOC class has a COCO category of the same name
    same = [n for n in XML_NAMES if n not in ("aeroplane", "motorbike", "sofa", "tvmonitor", "diningtable",
                                              "pottedplant")]
    assert all(CLASS_NAMES[CATEGORY_TO_INDEX[VOC_TO_COCO[n]] - 1] == n for n in same)
    for bad in (12, 0, 91, "x"):
        with pytest.raises(DatasetError, match="not one of the 80"):
            category_index(bad, "here")


# ---- a small hand-written COCO ----------------------------------------------------------------------

def rle(counts: list[int], h: int = 3, w: int = 4) -> dict:
    return {"size": [h, w], "counts": counts}


def instances(anns: list[dict], images: list[dict]) -> dict:
    return {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": n, "supercategory": s} for c, n, s in cd.CATEGORIES]}


def image(i: int, base: str = "train2014", h: int = 3, w: int = 4) -> dict:
    return {"id": i, "file_name": f"COCO_{base}_{i:012d}.jpg", "height": h, "width": w}


def stem(i: int, base: str = "train2014") -> str:
    return f"COCO_{base}_{i:012d}"


# Image 10: dog (id 1, top two rows) under person (id 2, columns 0-1), and a crowd of cats (id 3, bottom row).
# Image 30: two couches and a tv. Image 20: no annotation. Listed out of id order on purpose.
TRAIN_ANNS = [
    {"id": 2, "image_id": 10, "category_id": 1, "iscrowd": 0, "segmentation": rle([0, 6, 6])},
    {"id": 7, "image_id": 30, "category_id": 63, "iscrowd": 0, "segmentation": [[0.0, 0.0, 2.0, 0.0, 2.0, 2.0]]},
    {"id": 1, "image_id": 10, "category_id": 18, "iscrowd": 0, "segmentation": rle([0, 2, 1, 2, 1, 2, 1, 2, 1])},
    {"id": 3, "image_id": 10, "category_id": 17, "iscrowd": 1, "segmentation": rle([2, 1, 2, 1, 2, 1, 2, 1])},
    {"id": 8, "image_id": 30, "category_id": 63, "iscrowd": 0, "segmentation": [[1.0, 1.0, 3.0, 1.0, 3.0, 3.0]]},
    {"id": 9, "image_id": 30, "category_id": 72, "iscrowd": 1, "segmentation": rle([12])},
]
# by hand: person (class 1) in columns 0-1, dog (class 17 = column 16 + 1) rows 0-1 of columns 2-3, the
# crowd's row 2 of columns 2-3 background (or 255)
IMAGE10 = np.array([[1, 1, 17, 17], [1, 1, 17, 17], [1, 1, 0, 0]], np.uint8)


def write_coco(root: Path, train: dict, val: dict | None = None, jpgs: bool = True) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for base, data in (("train2014", train), ("val2014", val)):
        if data is None:
            continue
        (root / "annotations" / f"instances_{base}.json").write_text(json.dumps(data))
        if jpgs:
            (root / base).mkdir(exist_ok=True)
            for im in data["images"]:
                (root / base / im["file_name"]).write_bytes(b"\xff\xd8")
    return root


@pytest.fixture
def small(tmp_path) -> Path:
    return write_coco(tmp_path / "COCO", instances(TRAIN_ANNS, [image(30), image(10), image(20)]),
                      instances([{"id": 11, "image_id": 5, "category_id": 90, "iscrowd": 0,
                                  "segmentation": rle([12])}], [image(5, "val2014")]))


def test_splits_and_labels(small, tmp_path):
    ds = COCO14(small, cache_dir=tmp_path / "cache")
    assert ds.ids("train") == [stem(10), stem(30)]                 # sorted by COCO id, 20 has no annotation
    assert ds.ids("train_all") == [stem(10), stem(20), stem(30)]
    assert ds.ids("val") == ds.ids("val_all") == [stem(5, "val2014")]
    lab = ds.labels([stem(30), stem(10), stem(5, "val2014")])
    assert lab.dtype == np.float32 and lab.shape == (3, 80)
    # crowd annotations count for labels (the tv crowd of image 30, the cat crowd of image 10)
    assert set(np.nonzero(lab[0])[0]) == {COUCH, TV}
    assert set(np.nonzero(lab[1])[0]) == {PERSON, DOG, 15}
    assert set(np.nonzero(lab[2])[0]) == {79}                       # toothbrush, the last class
    with pytest.raises(DatasetError, match="no annotation.*'train'"):
        ds.labels([stem(20)])
    assert ds.image_path(stem(10)) == small / "train2014" / f"{stem(10)}.jpg"
    assert ds.gt_path(stem(10)) == small / "mask" / "train2014" / "10.png"
    assert ds.gt_path(stem(5, "val2014")) == small / "mask" / "val2014" / "5.png"
    assert ds.coco_id(stem(30)) == 30 and ds.image_size(stem(30)) == (3, 4) and not ds.has_gt(stem(10))
    assert (tmp_path / "cache" / "coco14_train2014.npz").is_file()


def test_label_cache_is_used_and_rebuilt(small, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = COCO14(small, cache_dir=cache).labels([stem(10), stem(30)])

    def no_parse(*a, **k):
        raise AssertionError("the JSON was parsed although the cache matches")

    monkeypatch.setattr(cd.json, "load", no_parse)
    assert (COCO14(small, cache_dir=cache).labels([stem(10), stem(30)]) == first).all()
    monkeypatch.undo()
    # a changed annotation file invalidates the cache: image 20 gains a bus
    anns = [*TRAIN_ANNS, {"id": 20, "image_id": 20, "category_id": 6, "iscrowd": 0, "segmentation": rle([12])}]
    write_coco(small, instances(anns, [image(30), image(10), image(20)]))
    ds = COCO14(small, cache_dir=cache)
    assert ds.ids("train") == [stem(10), stem(20), stem(30)]
    assert np.nonzero(ds.labels([stem(20)])[0])[0].tolist() == [5]


def test_concurrent_readers_parse_once(small, tmp_path, monkeypatch):
    # DDP ranks sharing a cache: one parses the JSON and writes the cache, the other waits and reads it
    import threading
    import time

    real_load, parses = cd.json.load, []

    def slow_load(f):
        parses.append(1)
        time.sleep(0.3)      # without the lock, the second reader finds no cache and parses too
        return real_load(f)

    monkeypatch.setattr(cd.json, "load", slow_load)
    got = {}

    def read(name):
        got[name] = COCO14(small, cache_dir=tmp_path / "cache").labels([stem(10), stem(30)])

    threads = [threading.Thread(target=read, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(parses) == 1 and (got["a"] == got["b"]).all() and got["a"].shape == (2, 80)


def test_list_files(small):
    (small / "lists").mkdir()
    # CLIMS-style zero-padded ids, stems, comments and blank lines
    (small / "lists" / "mine.txt").write_text("# a subset\n000000000030\n\nCOCO_val2014_000000000005  # val too\n10\n")
    ds = COCO14(small)
    assert ds.ids("mine") == [stem(30), stem(5, "val2014"), stem(10)]
    assert ds.ids(str(small / "lists" / "mine.txt")) == ds.ids("mine")
    (small / "lists" / "dup.txt").write_text(f"{stem(10)}\n10\n")
    with pytest.raises(DatasetError, match="twice"):
        ds.ids("dup")
    (small / "lists" / "bad.txt").write_text("12345\n")
    with pytest.raises(DatasetError, match="bad.txt.*12345"):
        ds.ids("bad")
    msg = r"list .*nope.txt does not exist.*\['bad', 'dup', 'mine'\].*make_coco_subset"
    with pytest.raises(DatasetError, match=msg):
        ds.ids("nope")


def test_bad_annotation_files(tmp_path):
    root = write_coco(tmp_path / "a", instances([{"id": 1, "image_id": 1, "category_id": 12, "iscrowd": 0,
                                                  "segmentation": rle([12])}], [image(1)]))
    with pytest.raises(DatasetError, match="annotation 1: category_id 12"):
        COCO14(root).ids("train")
    data = instances([], [image(1)])
    data["categories"][0]["name"] = "human"
    root = write_coco(tmp_path / "b", data)
    with pytest.raises(DatasetError, match="category id 1 is named 'human'"):
        COCO14(root).ids("train_all")
    root = write_coco(tmp_path / "c", instances([{"id": 1, "image_id": 2, "category_id": 1, "iscrowd": 0,
                                                  "segmentation": rle([12])}], [image(1)]))
    with pytest.raises(DatasetError, match="refers to image 2"):
        COCO14(root).ids("train")


def test_missing_files_are_named(tmp_path, small):
    with pytest.raises(DatasetError, match="COCO 2014 folder .*nowhere does not exist"):
        COCO14(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="has no annotations/ folder"):
        COCO14(tmp_path / "empty")
    root = write_coco(tmp_path / "trainonly", instances(TRAIN_ANNS, [image(10), image(30), image(20)]))
    with pytest.raises(DatasetError, match="instances_val2014.json does not exist"):
        COCO14(root).ids("val")
    with pytest.raises(DatasetError, match="not a built-in split"):
        COCO14(root).ids("valid")
    noimg = write_coco(tmp_path / "noimg", instances(TRAIN_ANNS, [image(10), image(30)]), jpgs=False)
    with pytest.raises(DatasetError, match=r"2 of 2 image\(s\) missing .*train2014 does not exist"):
        COCO14(noimg).ids("train")
    with pytest.raises(DatasetError, match="no ground-truth mask at .*10.png.*make_coco_masks"):
        COCO14(small).load_gt(stem(10))
    ds = build_dataset(DatasetConfig(name="coco14", root=str(small)), None)
    assert isinstance(ds, COCO14) and ds.name == "coco14"


# ---- GT masks ----------------------------------------------------------------------------------------

def test_render_overlap_and_crowd_by_hand():
    anns = [a for a in TRAIN_ANNS if a["image_id"] == 10]          # ids 2, 1, 3 in this order
    assert (render_semantic_mask(anns, 3, 4) == IMAGE10).all()
    ignore = IMAGE10.copy()
    ignore[2, 2:] = 255                                             # crowd pixels no instance covers
    assert (render_semantic_mask(anns, 3, 4, crowd="ignore") == ignore).all()
    # annotation-id order decides, not file order: swapping the ids puts the dog on top
    swapped = [{**a, "id": {2: 1, 1: 2}.get(a["id"], a["id"])} for a in anns]
    top = IMAGE10.copy()
    top[:2, :] = 17
    assert (render_semantic_mask(swapped, 3, 4) == top).all()


def test_make_masks_matches_coco_api_and_resumes(small, tmp_path):
    from pycocotools.coco import COCO

    summary = make_masks(small, progress=False)
    assert summary == {"train2014": {"images": 3, "rendered": 3, "skipped": 0},
                       "val2014": {"images": 1, "rendered": 1, "skipped": 0}}
    coco = COCO(str(small / "annotations" / "instances_train2014.json"))
    for img_id in (10, 20, 30):
        # the straightforward reference: annToMask of the non-crowd annotations in id order, later overwrite
        ref = np.zeros((3, 4), np.uint8)
        for ann in sorted(coco.loadAnns(coco.getAnnIds(imgIds=img_id, iscrowd=False)), key=lambda a: a["id"]):
            ref[coco.annToMask(ann) > 0] = CATEGORY_TO_INDEX[ann["category_id"]]
        path = small / "mask" / "train2014" / f"{img_id}.png"
        with Image.open(path) as im:
            assert im.mode == "L"
        assert (load_label_png(path) == ref).all(), img_id
    assert (load_label_png(small / "mask" / "train2014" / "10.png") == IMAGE10).all()
    assert not load_label_png(small / "mask" / "train2014" / "20.png").any()
    assert (COCO14(small).load_gt(stem(10)) == IMAGE10).all()
    # resume: nothing left to do
    assert make_masks(small, progress=False)["train2014"]["rendered"] == 0
    # another crowd mode into the same folder needs --force
    with pytest.raises(FileExistsError, match="made with --crowd background"):
        make_masks(small, crowd="ignore", progress=False)
    assert masks_main(["--root", str(small), "--crowd", "ignore", "--splits", "train2014"]) == 2
    assert masks_main(["--root", str(small), "--crowd", "ignore", "--splits", "train2014", "--force"]) == 0
    assert (load_label_png(small / "mask" / "train2014" / "10.png")[2, 2:] == 255).all()
    # folders of foreign masks are not mixed with ours
    foreign = tmp_path / "foreign"
    (foreign / "val2014").mkdir(parents=True)
    (foreign / "val2014" / "5.png").write_bytes(b"")
    with pytest.raises(FileExistsError, match="not made by this tool"):
        make_masks(small, splits=["val2014"], out_dir=foreign, progress=False)


def test_make_masks_only_and_workers(small, tmp_path):
    lst = tmp_path / "only.txt"
    lst.write_text(f"000000000030\n{stem(5, 'val2014')}\n")
    assert masks_main(["--root", str(small), "--only", str(lst), "--out", str(tmp_path / "m"), "--workers", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "m").rglob("*.png")) == ["30.png", "5.png"]
    lst.write_text("77\n")
    assert masks_main(["--root", str(small), "--only", str(lst), "--out", str(tmp_path / "m")]) == 2


# ---- subsets -----------------------------------------------------------------------------------------

def test_select_subset():
    ids = [f"i{k:02d}" for k in range(50)]
    assert select_subset(ids, first=3) == ["i00", "i01", "i02"]
    a = select_subset(ids, random=10, seed=0)
    assert a == select_subset(ids, random=10, seed=0) and a != select_subset(ids, random=10, seed=1)
    assert len(set(a)) == 10 and set(a) <= set(ids) and a == sorted(a, key=ids.index)   # split order kept
    for bad in ({"first": 0}, {"random": 51}, {}, {"first": 1, "random": 1}):
        with pytest.raises(ValueError):
            select_subset(ids, **bad)


def test_subset_cli_is_deterministic(small, tmp_path):
    args = ["--root", str(small), "--split", "train_all", "--random", "2", "--seed", "3"]
    assert subset_main([*args, "--name", "r2"]) == 0
    assert subset_main([*args, "--out", str(tmp_path / "again.txt")]) == 0
    made = (small / "lists" / "r2.txt").read_bytes()
    assert made == (tmp_path / "again.txt").read_bytes()
    assert made.decode().startswith("# python -m coco14.make_coco_subset --split train_all --random 2 --seed 3\n")
    ids = COCO14(small).ids("r2")
    assert len(ids) == 2 and ids == sorted(ids)
    assert subset_main([*args, "--name", "r2"]) == 0                         # same list: fine
    assert subset_main(["--root", str(small), "--split", "train", "--first", "1", "--name", "r2"]) == 2
    assert subset_main(["--root", str(small), "--split", "train", "--first", "1", "--name", "r2", "--force"]) == 0
    assert COCO14(small).ids("r2") == [stem(10)]
    assert subset_main(["--root", str(small), "--split", "train", "--first", "5", "--name", "big"]) == 2


# ---- the toy world in COCO layout --------------------------------------------------------------------

TOY = {"seed": 1, "num_train": 4, "num_val": 3, "num_extra_aug": 2, "image_size": (64, 80), "max_objects": 3}


def test_toy_world_coco_layout(tmp_path):
    from pycocotools.coco import COCO

    voc = tmp_path / "voc"
    generate_toy_world(voc, **TOY)
    root = tmp_path / "coco"
    summary = generate_toy_world(root, layout="coco", **TOY)
    assert summary["params"]["layout"] == "coco" and summary["counts"]["crowd"] == 2
    ds = COCO14(root)
    train, val = ds.ids("train"), ds.ids("val")
    assert [ds.coco_id(i) for i in train] == [1, 2, 3, 4, 8, 9] and [ds.coco_id(i) for i in val] == [5, 6, 7]
    # one image without annotations per split, kept out of train / val
    assert set(ds.ids("train_all")) - set(train) == {stem(10)} and set(ds.ids("val_all")) - set(val) == {
        stem(11, "val2014")}
    lut = np.zeros(256, np.uint8)                                 # VOC class index -> COCO class index
    lut[255] = 255
    for k, n in enumerate(XML_NAMES):
        lut[k + 1] = CATEGORY_TO_INDEX[VOC_TO_COCO[n]]
    for base in ("train2014", "val2014"):
        coco = COCO(str(root / "annotations" / f"instances_{base}.json"))
        crowds = coco.loadAnns(coco.getAnnIds(iscrowd=True))
        assert len(crowds) == 1 and isinstance(crowds[0]["segmentation"]["counts"], list)
        for img_id in coco.getImgIds():
            image_id = stem(img_id, base)
            meta = read_json(root / "ToyMeta" / f"{image_id}.json")
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            gt = ds.load_gt(image_id)
            if img_id > 9:                     # the scenes without objects come after the 9 drawings
                assert not anns and not meta["objects"] and not gt.any()
                continue
            # the same drawing as the VOC layout's toy_<id>, byte for byte
            assert ds.image_path(image_id).read_bytes() == (voc / "JPEGImages" / f"toy_{img_id:06d}.jpg").read_bytes()
            assert [a["category_id"] for a in anns] == [o["category_id"] for o in meta["objects"]]
            assert all(VOC_TO_COCO[o["class"]] == o["category_id"] for o in meta["objects"])
            voc_png = voc / "SegmentationClass" / f"toy_{img_id:06d}.png"
            if not voc_png.is_file():          # extra and empty images have no VOC mask
                continue
            want = lut[load_label_png(voc_png)]
            keep = want != 255                 # VOC's void border has no counterpart in COCO
            for a in anns:
                if a["iscrowd"]:               # crowd regions are background in the default masks
                    keep &= coco.annToMask(a) == 0
            assert (gt[keep] == want[keep]).all(), image_id
            for a in anns:                     # area and box agree with the rendered annotation
                m = coco.annToMask(a)
                ys, xs = np.nonzero(m)
                assert m.sum() == a["area"] > 0
                assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()]


def test_uncompressed_rle_round_trip():
    from pycocotools import mask as mask_utils

    m = np.zeros((5, 7), bool)
    m[1:4, 2:5] = True
    m[0, 0] = True
    r = uncompressed_rle(m)
    assert r["counts"][:2] == [0, 1] and sum(r["counts"]) == 35
    assert (mask_utils.decode(mask_utils.frPyObjects(r, 5, 7)) == m).all()


def test_toy_world_coco_cli_and_rerun(tmp_path):
    from tool.toy.world import main

    out = tmp_path / "cli"
    args = ["--out", str(out), "--layout", "coco", "--num-train", "2", "--num-val", "1", "--num-extra-aug", "0",
            "--size", "48", "64", "--num-empty", "0", "--max-objects", "1"]
    assert main(args) == 0
    stored = read_json(out / "toy_world.json")
    assert stored["counts"]["crowd"] == 2 and stored["counts"]["train_all"] == 2    # fallback crowd, no empty
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert write_coco_layout(out, num_train=2, num_val=1, num_extra_aug=0, image_size=(48, 64), num_empty=0,
                             max_objects=1) == stored
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main([*args[:-2], "--max-objects", "2"]) == 2                          # other parameters: refused


# ---- the existing steps on a COCO-layout toy world ---------------------------------------------------

@pytest.mark.slow
def test_pipeline_on_coco_layout(tmp_path):
    root = tmp_path / "COCO"
    common = ["--config", SMOKE, "--set", f"work_dir={tmp_path / 'work'}", "--set", f"dataset.root={root}",
              "--set", "dataset.name=coco14", "--set", "toy.layout=coco", "--set", "dataset.train_split=train",
              "--set", "dataset.eval_split=first3", "--set", "dataset.val_split=val",
              "--set", "toy.num_train=4", "--set", "toy.num_val=2", "--set", "toy.num_extra_aug=0",
              "--set", "cam.train.max_steps=1", "--set", "cam.train.batch_size=2", "--set", "make_cam.scales=[1.0]",
              "--set", "make_cam.source=baseline", "--set", "toy.random_models_dir=null"]
    out = run_sample.main([*common, "--steps", "train_cam"])            # generates the COCO-layout world
    assert out["train_cam"]["num_images"] == 4
    assert (root / "annotations" / "instances_train2014.json").is_file() and (root / "mask" / "val2014").is_dir()
    assert subset_main(["--root", str(root), "--split", "train", "--first", "3", "--name", "first3"]) == 0
    out = run_sample.main([*common, "--steps", "make_cam,eval_cam"])
    ds = COCO14(root)
    train = ds.ids("train")
    cams = sorted((tmp_path / "work" / "cam_baseline" / "cam").glob("*.npz"))
    assert [c.stem for c in cams] == train                               # the empty image is not in 'train'
    labels = ds.labels(train)
    for c, lab in zip(cams, labels):
        with np.load(c) as f:
            assert f["keys"].tolist() == np.nonzero(lab)[0].tolist()
            assert f["high_res"].shape[1:] == ds.image_size(c.stem)
    ev = read_json(tmp_path / "work" / "cam_baseline" / "eval_cam.json")
    assert ev["split"] == "first3" and ev["num_images"] == 3 and len(ev["classes"]) == 81
    assert ev["classes"][1] == "person" and 0 <= ev["miou"] <= 100 and out["eval_cam"]["num_images"] == 3
    assert (tmp_path / "work" / "cache" / "coco14_train2014.npz").is_file()


@pytest.mark.slow
def test_every_step_on_coco_layout(tmp_path):
    """The whole smoke pipeline (QAPE through DeepLab and the report) on the COCO-layout toy world."""
    root, models, work = tmp_path / "COCO", tmp_path / "models", tmp_path / "work"
    out = run_sample.main([
        "--config", SMOKE, "--set", f"work_dir={work}", "--set", f"dataset.root={root}",
        "--set", "dataset.name=coco14", "--set", "toy.layout=coco", "--set", "dataset.train_split=train",
        "--set", "dataset.eval_split=train", "--set", "dataset.val_split=val",
        "--set", f"toy.random_models_dir={models}", "--set", f"qape.vqa_model={models / 'blip'}",
        "--set", f"clip.model={models / 'clip'}"])
    assert list(out) == list(run_sample.STEPS)
    ds = COCO14(root)
    train = ds.ids("train")
    labels = ds.labels(train)
    corpus = [json.loads(x) for x in (work / "qape" / "corpus.jsonl").read_text().splitlines()]
    assert len(corpus) == int(labels.sum())
    assert {r["class"] for r in corpus} <= set(ds.class_names)
    for name, ext in (("cam", "npz"), ("ir_label", "png"), ("sem_seg", "png")):
        assert sorted(p.stem for p in (work / name).glob(f"*.{ext}")) == sorted(train), name
    for f in ("eval_cam.json", "eval_sem_seg.json", "eval_deeplab.json"):
        rec = read_json(work / f)
        assert len(rec["classes"]) == 81 and 0 <= rec["miou"] <= 100, f
    assert read_json(work / "eval_deeplab.json")["num_images"] == len(ds.ids("val"))
