"""End to end on the toy world as a folder dataset: run_sample.main through eval_deeplab and the report,
GT-needing steps skipped with a note while the eval split has no masks, then tool.predict on new images."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import run_sample
from tests.test_pipeline import smoke_args
from tool.data.palette import load_label_png, voc_palette
from tool.engine.config import load_config
from tool.engine.io import read_json
from tool.predict import main as predict
from tool.predict import overlay
from tool.toy.ensure import ensure_toy_world

pytestmark = pytest.mark.slow   # end-to-end runs (pyproject.toml: make test-fast leaves them out)

QUESTION_NAMES = "{diningtable: dining table, pottedplant: potted plant, tvmonitor: tv monitor}"


def folder_args(tmp: Path, *extra: str) -> list[str]:
    """configs/smoke.yaml on the folder export of its toy world (5 val images), every path under ``tmp``."""
    return smoke_args(tmp, "--set", "dataset.name=folder", "--set", f"dataset.root={tmp / 'toy' / 'folder'}",
                      "--set", "toy.layout=folder", "--set", "toy.num_val=5",
                      "--set", f"dataset.question_names={QUESTION_NAMES}", *extra)


@pytest.fixture(scope="module")
def folder_run(module_tmp):
    tmp = module_tmp
    args = folder_args(tmp)
    ensure_toy_world(load_config(args[1], [a for a in args[3::2]]))      # the twin and its export
    folder = tmp / "toy" / "folder"
    # the eval split (train) without masks: eval_cam and eval_sem_seg have nothing to evaluate against
    aside = tmp / "train_masks"
    aside.mkdir()
    for i in (folder / "splits" / "train.txt").read_text().split():
        shutil.move(folder / "masks" / f"{i}.png", aside / f"{i}.png")
    metrics = run_sample.main(args)
    return tmp, args, metrics


def test_every_step_runs_and_gt_steps_are_skipped_with_a_note(folder_run):
    tmp, _, metrics = folder_run
    work = tmp / "work"
    assert list(metrics) == list(run_sample.STEPS)
    for step in ("eval_cam", "eval_sem_seg"):
        assert "no GT mask for any image of dataset.eval_split 'train'" in metrics[step]["skipped"]
        assert read_json(work / "steps" / f"{step}.skipped.json")["note"] == metrics[step]["skipped"]
        assert not (work / "steps" / f"{step}.done.json").exists()
    assert not (work / "eval_cam.json").exists() and not (work / "eval_sem_seg.json").exists()
    ran = [s for s in run_sample.STEPS if s not in ("eval_cam", "eval_sem_seg")]
    assert all((work / "steps" / f"{s}.done.json").is_file() for s in ran)
    folder = tmp / "toy" / "folder"
    ids = (folder / "splits" / "train_aug.txt").read_text().split()
    assert sorted(p.stem for p in (work / "cam").glob("*.npz")) == sorted(ids)
    assert sorted(p.stem for p in (work / "sem_seg").glob("*.png")) == sorted(ids)
    # eval_deeplab had the val masks: a real mIoU over the 5 val images
    assert metrics["eval_deeplab"]["num_images"] == 5 and 0 <= metrics["eval_deeplab"]["miou"] <= 100
    # the QAPE questions spell the classes as dataset.question_names says
    corpus = (work / "qape" / "corpus.jsonl").read_text()
    assert "diningtable" not in corpus and "tvmonitor" not in corpus
    page = (work / "report.html").read_text()
    # baseline CAM, RITC CAM, pseudo masks: each in the stage table and in the "not in this run" line
    assert page.count("skipped: no GT mask for any image of dataset.eval_split") == 6


def test_masks_added_later_make_the_skipped_steps_run(folder_run):
    tmp, args, _ = folder_run
    folder = tmp / "toy" / "folder"
    for p in (tmp / "train_masks").glob("*.png"):
        shutil.copy(p, folder / "masks" / p.name)
    out = run_sample.main(args + ["--steps", "eval_cam,eval_sem_seg"])
    assert out["eval_cam"]["num_images"] == 8 and 0 <= out["eval_cam"]["miou"] <= 100
    assert out["eval_sem_seg"]["num_images"] == 8
    assert not (tmp / "work" / "steps" / "eval_cam.skipped.json").exists()


def test_predict_reproduces_eval_deeplab_and_resumes(folder_run, capsys):
    tmp, args, _ = folder_run
    folder, work = tmp / "toy" / "folder", tmp / "work"
    val = (folder / "splits" / "val.txt").read_text().split()
    files = [str(folder / "images" / f"{i}.jpg") for i in val]
    out = tmp / "predict"
    cmd = ["--config", args[1], *args[2:], "--images", *files, "--out", str(out), "--msc", "--flip", "--crf",
           "--save-probs", "--batch-size", "4"]
    summary = predict(cmd)
    assert summary["predicted"] == 5 and summary["images_per_s"] > 0
    assert "images/s" in capsys.readouterr().out
    for i in val:
        with Image.open(folder / "images" / f"{i}.jpg") as im:
            size = im.size
        pred = load_label_png(out / f"{i}.png")
        assert pred.shape == size[::-1] and pred.max() <= 20
        # the same model, inference, MSC, flip and CRF as eval_deeplab: the same masks (batched 4 + 1 here)
        np.testing.assert_array_equal(pred, load_label_png(work / "deeplab_pred" / f"{i}.png"))
        with np.load(out / f"{i}.npz") as f:
            probs = f["probs"].astype(np.float32)
        assert probs.shape == (21, *pred.shape) and np.allclose(probs.sum(0), 1, atol=1e-2)
        with Image.open(out / f"{i}.overlay.jpg") as im:
            im.load()
            assert im.mode == "RGB" and im.size == size
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = predict(cmd)
    assert again["predicted"] == 0 and again["skipped_done"] == 5
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    (out / f"{val[0]}.overlay.jpg").unlink()            # an unfinished image is made again, the rest kept
    assert predict(cmd)["predicted"] == 1


def test_predict_any_image_mode_and_size(folder_run):
    """Grayscale, CMYK, paletted and odd-sized images, in sub-folders: an output of each image's size."""
    tmp, args, _ = folder_run
    src = Image.open(tmp / "toy" / "folder" / "images" / "toy_000001.jpg").convert("RGB")
    new = tmp / "new" / "sub"
    new.mkdir(parents=True)
    src.convert("L").save(new / "gray.png")
    src.convert("CMYK").save(new.parent / "cmyk.jpg")
    src.convert("P").resize((53, 37)).save(new / "palette.png")
    src.resize((101, 45)).save(new.parent / "odd.webp")
    out = tmp / "predict_new"
    summary = predict(["--config", args[1], *args[2:], "--images", str(new.parent), "--out", str(out)])
    assert summary["predicted"] == 4
    for name, size in (("sub/gray", (80, 64)), ("cmyk", (80, 64)), ("sub/palette", (53, 37)), ("odd", (101, 45))):
        pred = load_label_png(out / f"{name}.png")
        assert pred.shape == size[::-1] and pred.max() <= 20, name
        assert Image.open(out / f"{name}.overlay.jpg").size == size


def test_predict_flip_is_mirror_symmetric(folder_run):
    """With --flip the output of the mirrored image is the mirrored output (logits averaged with the mirror's);
    without it the network alone is not, so the check has power."""
    tmp, args, _ = folder_run
    src = Image.open(tmp / "toy" / "folder" / "images" / "toy_000003.jpg")
    pair = tmp / "pair"
    pair.mkdir()
    src.save(pair / "a.png")
    src.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(pair / "b.png")

    def probs(out: str, *flags: str) -> tuple[np.ndarray, np.ndarray]:
        predict(["--config", args[1], *args[2:], "--images", str(pair), "--out", str(tmp / out), "--save-probs",
                 *flags])
        return tuple(np.load(tmp / out / f"{n}.npz")["probs"].astype(np.float32) for n in "ab")

    a, b = probs("flip", "--flip")
    np.testing.assert_allclose(b, a[..., ::-1], atol=2e-3)
    a, b = probs("noflip")
    assert np.abs(b - a[..., ::-1]).max() > 1e-2


def test_predict_cam_keeps_to_the_given_classes(folder_run):
    tmp, args, _ = folder_run
    folder = tmp / "toy" / "folder"
    labels = tmp / "cat_only.csv"
    labels.write_text("image,labels\ntoy_000001,cat\ntoy_000002.jpg,cat|dog\n")
    out = tmp / "predict_cam"
    summary = predict(["--config", args[1], *args[2:], "--model", "cam", "--labels", str(labels), "--save-probs",
                       "--images", str(folder / "images" / "toy_000001.jpg"), str(folder / "images" / "toy_000002.jpg"),
                       "--out", str(out)])
    assert summary["predicted"] == 2
    # VOC order: cat is class 8, dog 12 (1-based mask values)
    assert set(np.unique(load_label_png(out / "toy_000001.png")).tolist()) <= {0, 8}
    assert set(np.unique(load_label_png(out / "toy_000002.png")).tolist()) <= {0, 8, 12}
    with np.load(out / "toy_000002.npz") as f:
        assert f["keys"].tolist() == [7, 11] and f["cam"].shape == (2, 64, 80) and f["scores"].shape == (20,)


def test_overlay_blends_half_the_class_colour_on_foreground_only():
    img = np.full((1, 2, 3), 100, np.uint8)
    got = overlay(img, np.array([[0, 1]], np.uint8))
    assert voc_palette()[1].tolist() == [128, 0, 0]
    assert got.tolist() == [[[100, 100, 100], [114, 50, 50]]]        # 0.5 * 100 + 0.5 * (128, 0, 0)


def test_without_any_mask_eval_deeplab_predicts_and_the_report_says_so(folder_run):
    tmp, args, _ = folder_run
    masks = tmp / "toy" / "folder" / "masks"
    shutil.move(masks, tmp / "all_masks")
    try:
        out = run_sample.main(args + ["--steps", "eval_deeplab,report", "--force"])
    finally:
        shutil.move(tmp / "all_masks", masks)
    assert out["eval_deeplab"]["predicted"] == 5 and "miou" not in out["eval_deeplab"]
    assert read_json(tmp / "work" / "eval_deeplab.json")["miou"] is None
    assert "split 'val' has no GT: predictions only" in (tmp / "work" / "report.html").read_text()


def test_stale_outputs_in_sub_folders_are_removed(tmp_path):
    """Folder-dataset ids have sub-folders (``shop/red_shoe``): outputs made under another configuration go
    there too, and must go when the configuration changes."""
    from tool.engine.per_image import prepare_output_dir

    out = tmp_path / "cam"
    prepare_output_dir(out, "digest-a", False, "*.npz")
    (out / "shop").mkdir()
    (out / "shop" / "red_shoe.npz").write_bytes(b"old")
    (out / "top.npz").write_bytes(b"old")
    prepare_output_dir(out, "digest-a", False, "*.npz")        # same configuration: kept (per-image resume)
    assert (out / "shop" / "red_shoe.npz").is_file()
    prepare_output_dir(out, "digest-b", False, "*.npz")
    assert not (out / "shop" / "red_shoe.npz").exists() and not (out / "top.npz").exists()
