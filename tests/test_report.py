"""The run report (step.report): renders from a hand-made work dir with some artefacts present and some
missing; every picture it references exists and decodes; picture helpers by hand."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from step import report
from tool.data.imutils import read_image
from tool.data.palette import load_label_png, save_label_png, voc_palette
from tool.engine.config import load_config
from tool.engine.io import save_npz, write_json
from tool.engine.runtime import make_context
from tool.toy.world import generate_toy_world

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
CLASSES = ["background", *(f"c{i}" for i in range(1, 21))]


def eval_record(miou: float, split: str = "train", sweep: bool = True) -> dict:
    rec = {"split": split, "num_images": 3, "classes": CLASSES, "miou": miou,
           "iou": [miou] * 20 + [None]}      # an absent class is null (NaN) in the files
    if sweep:
        rec.update({"sweep": [{"threshold": 0.1, "miou": miou - 2}, {"threshold": 0.15, "miou": miou},
                              {"threshold": 0.2, "miou": miou + 1}],
                    "best": {"threshold": 0.2, "miou": miou + 1}, "configured": {"threshold": 0.15, "miou": miou}})
    return rec


@pytest.fixture(scope="module")
def world(module_tmp):
    tmp = module_tmp
    voc = tmp / "VOC2012"
    generate_toy_world(voc, seed=1, num_train=3, num_val=2, num_extra_aug=0, image_size=(48, 56), max_objects=2)
    train = (voc / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    val = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    return tmp, voc, train, val


def run_report(world, work: Path, *extra: str) -> dict:
    _, voc, _, _ = world
    cfg = load_config(SMOKE, [f"work_dir={work}", f"dataset.root={voc}", "toy.generate=false", "device=cpu",
                              "report.thumb_size=32", *extra])
    ctx = make_context(cfg)
    return report.run(cfg, ctx)


def referenced(page: str, work: Path) -> list[Path]:
    return [work / src for src in re.findall(r"<img src='([^']+)'", page)]


def test_partial_work_dir(world):
    tmp, voc, train, val = world
    work = tmp / "work_partial"
    # present: baseline CAM metrics + CAMs of two train images, RITC CAMs of one, a pseudo mask of one,
    # a DeepLab prediction of one val image, the QAPE corpus; missing: RITC, pseudo-mask and DeepLab metrics.
    write_json(work / "cam_baseline" / "eval_cam.json", eval_record(41.5))
    # a prediction-only record whose note holds markup: shown as text, not as HTML
    write_json(work / "eval_deeplab.json", {"split": "val", "miou": None, "note": "split <test> & no GT"})
    for i in train[:2]:
        h, w = load_label_png(voc / "SegmentationClass" / f"{i}.png").shape
        save_npz(work / "cam_baseline" / "cam" / f"{i}.npz", keys=np.array([3]),
                 high_res=np.linspace(0, 1, h * w, dtype=np.float16).reshape(1, h, w))
    h, w = load_label_png(voc / "SegmentationClass" / f"{train[0]}.png").shape
    save_npz(work / "cam" / f"{train[0]}.npz", keys=np.array([3]), high_res=np.zeros((1, h, w), np.float16))
    save_label_png(work / "sem_seg" / f"{train[0]}.png", np.full((h, w), 4, np.uint8))
    hv, wv = load_label_png(voc / "SegmentationClass" / f"{val[1]}.png").shape
    save_label_png(work / "deeplab_pred" / f"{val[1]}.png", np.zeros((hv, wv), np.uint8))
    (work / "qape").mkdir(parents=True)
    (work / "qape" / "corpus.jsonl").write_text(json.dumps(
        {"image": train[0], "class": "boat", "fg": [["What kind of boat is in the photo?", "canoe"]],
         "bg": [["what is under the boat?", "waves"], ["what scene is the boat in?", "water"]]}) + "\n")
    stale = work / "report" / "old_picture.png"
    stale.parent.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(stale)

    metrics = run_report(world, work)
    page = (work / "report.html").read_text()
    assert metrics["stages"] == {"cam_baseline": 41.5}
    assert metrics["missing"] == ["cam_ritc", "sem_seg", "deeplab"]
    assert "<b>41.5</b>" in page and "best 42.5 at 0.20" in page
    for name in ("eval_cam.json", "eval_sem_seg.json"):
        assert re.search(rf"<code>{name}</code>\s*missing", page), name
    assert "<code>eval_deeplab.json</code> split &lt;test&gt; &amp; no GT" in page and "<test>" not in page
    # images with the most artefacts first: train[0] has both CAMs and a pseudo mask
    assert metrics["images"] == 2 and train[0] in page and val[1] in page
    assert "canoe" in page and "waves, water" in page
    pictures = referenced(page, work)
    assert len(pictures) == 3 + 5 + 3            # three charts, one eval row (5 cells), one val row (3 cells)
    for p in pictures:
        with Image.open(p) as im:
            im.load()
            assert max(im.size) <= 32 or p.name in ("stages.png", "iou_per_class.png", "cam_sweep.png")
    # the stage chart's floors on the train split, by hand: all background scores only the background
    # (IoU = background pixels / all non-void pixels), every present class 0
    gts = [load_label_png(voc / "SegmentationClass" / f"{i}.png") for i in train]
    valid = np.concatenate([g[g != 255] for g in gts])
    present = set(np.unique(valid).tolist()) - {0}
    assert metrics["floors"]["train"]["all_background"] == pytest.approx(
        100 * (valid == 0).mean() / (1 + len(present)), abs=0.01)
    assert "alt='mIoU of every stage'" in page
    assert not stale.exists()                    # pictures no longer referenced are removed
    # each cell shows its own artefact (the helpers are checked by hand below): the shown eval image is
    # train[0], the val one val[1]; the baseline CAM is the ramp, the RITC CAM zero, the pseudo mask class 4
    image = read_image(voc / "JPEGImages" / f"{train[0]}.jpg")
    gt = load_label_png(voc / "SegmentationClass" / f"{train[0]}.png")
    ramp = np.linspace(0, 1, h * w, dtype=np.float16).reshape(1, h, w)
    expected = {
        "eval_0_image.png": report.thumbnail(image, 32),
        "eval_0_gt.png": report.thumbnail(report.label_rgb(gt), 32, nearest=True),
        "eval_0_cam_base.png": report.thumbnail(report.cam_overlay(image, ramp), 32),
        "eval_0_cam_ritc.png": report.thumbnail(report.cam_overlay(image, np.zeros((1, h, w), np.float16)), 32),
        "eval_0_sem_seg.png": report.thumbnail(report.label_rgb(np.full((h, w), 4, np.uint8)), 32, nearest=True),
        "val_0_image.png": report.thumbnail(read_image(voc / "JPEGImages" / f"{val[1]}.jpg"), 32),
        "val_0_gt.png": report.thumbnail(report.label_rgb(load_label_png(voc / "SegmentationClass" / f"{val[1]}.png")),
                                         32, nearest=True),
        "val_0_pred.png": report.thumbnail(report.label_rgb(np.zeros((hv, wv), np.uint8)), 32, nearest=True),
    }
    for name, want in expected.items():
        with Image.open(work / "report" / name) as im:
            np.testing.assert_array_equal(np.asarray(im.convert("RGB")), want, err_msg=name)
    assert not np.array_equal(expected["eval_0_cam_base.png"], expected["eval_0_cam_ritc.png"])
    assert sorted(p.name for p in (work / "report").glob("*.png")) == sorted(p.name for p in pictures)
    assert not list((work / "report").glob(".*tmp*"))


def test_empty_work_dir(world):
    tmp, *_ = world
    work = tmp / "work_empty"
    metrics = run_report(world, work, "report.num_images=2")
    page = (work / "report.html").read_text()
    assert metrics["stages"] == {} and len(metrics["missing"]) == 4
    assert "No metric files yet" in page and "No DeepLab predictions" in page
    # without CAMs the eval images are still shown (image and GT): an even spread of 2 of the 3
    for p in referenced(page, work):
        with Image.open(p) as im:
            im.load()
    assert metrics["images"] == 2


def test_pick_images():
    ids = [f"i{k}" for k in range(10)]
    have = {i: (2 if int(i[1:]) % 2 == 0 else 1) for i in ids}
    assert report.pick_images(ids, have, 3) == ["i0", "i4", "i8"]       # among the 5 with 2 artefacts, spread
    assert report.pick_images(ids, have, 9) == ["i0", "i2", "i4", "i6", "i8"]
    assert report.pick_images(ids, have, 2, wanted=["i3", "nope", "i1"]) == ["i3", "i1"]
    assert report.pick_images([], {}, 3) == []


def test_picture_helpers():
    img = np.full((4, 6, 3), 100, np.uint8)
    maps = np.zeros((2, 4, 6), np.float16)
    maps[1, 0, 0] = 1.0
    out = report.cam_overlay(img, maps)
    # jet(0) = (0, 0, 0.5) and jet(1) = (0.5, 0, 0): half image, half colour
    assert tuple(out[1, 1]) == (50, 50, round(50 + 0.5 * 127.5))
    assert tuple(out[0, 0]) == (round(50 + 0.5 * 127.5), 50, 50)
    assert report.thumbnail(np.zeros((40, 100, 3), np.uint8), 50).shape == (20, 50, 3)
    assert report.thumbnail(np.zeros((10, 12), np.uint8), 50).shape == (10, 12)      # never upscaled
    lab = np.array([[0, 1], [255, 15]], np.uint8)
    assert (report.label_rgb(lab) == voc_palette()[lab]).all()
    assert tuple(report.label_rgb(lab)[1, 0]) == (224, 224, 192)


def test_training_curves(world, monkeypatch):
    """One panel per training step with events: each term against the iteration, lr on the second axis,
    the checkpoint and the resume marked; a step without events gets no panel."""
    import tool.seg.charts

    tmp, *_ = world
    work = tmp / "work_curves"
    ritc = [{"iter": i, "epoch": 0, "terms": {"loss": 10.0 / i, "frc": 4.0 / i, "brc": 2.0, "reg": 0.1},
             "lr": [0.1 * (1 - (i - 1) / 3), 1.0], "images_per_s": 5.0, "data_share": 0.1} for i in (1, 2, 3)]
    lines = ritc[:2] + [{"iter": 2, "event": "checkpoint"}, {"iter": 2, "event": "resume"}] + ritc[2:]
    (work / "events").mkdir(parents=True)
    (work / "events" / "train_ritc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (work / "events" / "train_cam.jsonl").write_text(json.dumps({**ritc[0], "terms": {"loss": 0.7}}) + "\n")
    figures = {}
    real = tool.seg.charts.save_figure

    def keep(fig, path):
        figures[path.name] = [(ax.get_ylabel(), [(list(ln.get_xdata()), list(ln.get_ydata()), ln.get_label())
                                                 for ln in ax.lines]) for ax in fig.axes]
        real(fig, path)

    monkeypatch.setattr(tool.seg.charts, "save_figure", keep)
    metrics = run_report(world, work)
    assert metrics["curves"] == ["train_cam", "train_ritc"]
    page = (work / "report.html").read_text()
    assert "alt='training curves of train_ritc'" in page and (work / "report" / "curves_train_ritc.png").is_file()
    (loss_label, loss_lines), (lr_label, lr_lines) = figures["curves_train_ritc.png"]
    assert loss_label == "loss" and lr_label.startswith("lr")
    by_label = {label: (x, y) for x, y, label in loss_lines if not label.startswith("_")}
    assert by_label["loss"] == ([1, 2, 3], [10.0, 5.0, 10.0 / 3])
    assert by_label["frc"] == ([1, 2, 3], [4.0, 2.0, 4.0 / 3]) and set(by_label) == {"loss", "frc", "brc", "reg"}
    verticals = sorted(x[0] for x, y, label in loss_lines if label.startswith("_") and x[0] == x[1])
    assert verticals == [2, 2]                           # the checkpoint and the resume at iteration 2
    assert lr_lines[0][:2] == ([1, 2, 3], pytest.approx([0.1, 0.1 * 2 / 3, 0.1 / 3]))
    assert "curves_train_irn.png" not in figures
