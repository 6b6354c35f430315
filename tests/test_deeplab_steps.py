"""train_deeplab / eval_deeplab end to end on the smoke toy world: artefacts, metrics recomputed from the
PNGs, crash-and-resume of training and of the per-image evaluation, the CRF input, the CRF worker pool,
a test split without GT (VOC server tree), and fit's gradient accumulation.

Pseudo masks: until ``make_sem_seg`` is in the pipeline the tests write ``sem_seg/`` themselves: the
toy GT mask where the image has one (train images, 255 borders included), else the XML bounding
boxes filled with their class (the SBD-like extra images).
"""
from __future__ import annotations

import shutil
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import run_sample
import tool.engine.train_loop
from tests.helpers import TrainingCrash, crash_training_at
from tool.data.palette import load_label_png, save_label_png
from tool.engine.config import TrainRecipe
from tool.engine.io import read_json
from tool.engine.paths import WorkPaths
from tool.engine.runtime import Context
from tool.engine.train_loop import fit
from tool.seg.metrics import confusion, miou
from tool.toy.world import generate_toy_world
from voc12.dataset import XML_NAMES

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "configs" / "smoke.yaml")
STEPS = ("--steps", "train_deeplab,eval_deeplab")


pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]   # end-to-end; tests/conftest.py


def write_pseudo_masks(voc: Path, out: Path) -> list[str]:
    """sem_seg/<id>.png for every train_aug image: its GT if it has one, else its XML boxes filled."""
    ids = (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()
    for i in ids:
        gt = voc / "SegmentationClass" / f"{i}.png"
        if gt.is_file():
            save_label_png(out / f"{i}.png", load_label_png(gt))
            continue
        root = ET.parse(voc / "Annotations" / f"{i}.xml").getroot()
        mask = np.zeros((int(root.findtext("size/height")), int(root.findtext("size/width"))), np.uint8)
        for obj in root.iter("object"):
            box = [int(float(obj.findtext(f"bndbox/{k}"))) for k in ("xmin", "ymin", "xmax", "ymax")]
            mask[box[1] - 1:box[3], box[0] - 1:box[2]] = XML_NAMES.index(obj.findtext("name")) + 1
        save_label_png(out / f"{i}.png", mask)
    return ids


@pytest.fixture(scope="module")
def world(module_tmp):
    """The smoke toy world (made once) and a work dir template with pseudo masks."""
    tmp = module_tmp
    voc = tmp / "toy" / "VOC2012"
    generate_toy_world(voc, seed=0, num_train=8, num_val=4, num_extra_aug=4, image_size=(64, 80),
                       scene_correlation=0.85, max_objects=2)
    return tmp, voc


def args_for(world, work: Path, *extra: str) -> list[str]:
    voc = world[1]
    if not (work / "sem_seg").is_dir():
        write_pseudo_masks(voc, work / "sem_seg")
    return ["--config", SMOKE, "--set", f"work_dir={work}", "--set", f"dataset.root={voc}",
            "--set", "toy.generate=false", *STEPS, *extra]


@pytest.fixture(scope="module")
def smoke_run(world):
    work = world[0] / "run"
    metrics = run_sample.main(args_for(world, work))
    return work, metrics


def test_artefacts_and_metrics(world, smoke_run):
    _, voc = world
    work, metrics = smoke_run
    assert set(metrics) == {"train_deeplab", "eval_deeplab"}
    tr = metrics["train_deeplab"]
    assert tr["steps"] == 3 and np.isfinite(tr["loss"]) and tr["init"] == "random initialisation"
    # the total is the sum of the four MSC cross-entropies
    assert tr["loss"] == pytest.approx(tr["ce_1.0"] + tr["ce_0.75"] + tr["ce_0.5"] + tr["ce_max"], rel=1e-5)
    state = torch.load(work / "deeplab" / "model.pth", weights_only=True)
    assert "base.backbone.layer4.0.conv2.weight" in state
    assert state["base.aspp.convs.3.weight"].shape == (21, 2048, 3, 3)
    assert not (work / "checkpoints" / "train_deeplab.pth").exists()
    assert "backbone initialised from random initialisation" in (work / "log.txt").read_text()

    ev = read_json(work / "eval_deeplab.json")
    val = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert ev["split"] == "val" and ev["num_images"] == len(val) == 4 and len(ev["classes"]) == 21
    assert ev["msc"] and ev["flip"] and ev["crf"] and len(ev["iou"]) == 21
    # recompute the mIoU from the prediction PNGs and the GT, independently of the step's running matrix
    conf = 0
    for i in val:
        pred = load_label_png(work / "deeplab_pred" / f"{i}.png")
        with Image.open(voc / "JPEGImages" / f"{i}.jpg") as im:
            assert pred.shape == (im.size[1], im.size[0])
        with Image.open(work / "deeplab_pred" / f"{i}.png") as im:
            assert im.mode == "P"
        conf = conf + confusion(pred, load_label_png(voc / "SegmentationClass" / f"{i}.png"), 21)
    assert ev["miou"] == pytest.approx(miou(conf)) and metrics["eval_deeplab"]["miou"] == pytest.approx(miou(conf))
    assert 0 <= ev["miou"] <= 100
    # a rerun skips both steps
    again = run_sample.main(args_for(world, work))
    assert again["eval_deeplab"]["miou"] == pytest.approx(ev["miou"])
    assert "step train_deeplab: up to date" in (work / "log.txt").read_text()


def test_training_resumes_from_its_checkpoint(world, monkeypatch):
    """A crash after iteration 3 of 4 resumes from the iteration-2 checkpoint and ends with the weights of
    an uninterrupted run."""
    tmp, _ = world
    extra = ("--steps", "train_deeplab", "--set", "deeplab.train.max_steps=4",
             "--set", "deeplab.train.checkpoint_every=2")
    run_sample.main(args_for(world, tmp / "ref", *extra))
    ref = torch.load(tmp / "ref" / "deeplab" / "model.pth", weights_only=True)

    work = tmp / "crash"
    crash_training_at(monkeypatch, 3)
    with pytest.raises(TrainingCrash):
        run_sample.main(args_for(world, work, *extra))
    assert torch.load(work / "checkpoints" / "train_deeplab.pth", weights_only=False)["step"] == 2
    assert not (work / "deeplab" / "model.pth").exists()
    monkeypatch.setattr(tool.engine.train_loop, "_after_step", lambda step: None)
    out = run_sample.main(args_for(world, work, *extra))
    assert out["train_deeplab"]["steps"] == 4
    got = torch.load(work / "deeplab" / "model.pth", weights_only=True)
    assert set(got) == set(ref)
    for k in ref:
        assert torch.allclose(ref[k].float(), got[k].float(), atol=1e-6), k
    assert "resumed from" in (work / "log.txt").read_text()


def test_eval_resumes_per_image_and_crf_sees_the_raw_image(world, smoke_run, monkeypatch):
    from step import eval_deeplab
    from tool.seg import deeplab_infer

    _, voc = world
    work, metrics = smoke_run
    real_save, real_crf = eval_deeplab.save_label_png, deeplab_infer.crf_inference_prob
    calls = {"n": 0}
    seen: dict[int, np.ndarray] = {}

    def dying_save(path, label):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        real_save(path, label)

    def spy_crf(img, probs, **kw):
        seen[len(seen)] = img
        return real_crf(img, probs, **kw)

    # a fresh work dir holding only the trained model and its marker
    fresh = world[0] / "eval_resume"
    (fresh / "deeplab").mkdir(parents=True)
    (fresh / "steps").mkdir()
    shutil.copy(work / "deeplab" / "model.pth", fresh / "deeplab" / "model.pth")
    shutil.copy(work / "steps" / "train_deeplab.done.json", fresh / "steps" / "train_deeplab.done.json")
    monkeypatch.setattr(eval_deeplab, "save_label_png", dying_save)
    monkeypatch.setattr(deeplab_infer, "crf_inference_prob", spy_crf)   # eval_deeplab's CRF (crf_labels)
    with pytest.raises(KeyboardInterrupt):
        run_sample.main(args_for(world, fresh, "--steps", "eval_deeplab"))
    pred_dir = fresh / "deeplab_pred"
    kept = {p.name: p.stat().st_mtime_ns for p in pred_dir.glob("*.png")}
    assert len(kept) == 2
    monkeypatch.setattr(eval_deeplab, "save_label_png", real_save)
    out = run_sample.main(args_for(world, fresh, "--steps", "eval_deeplab"))
    assert out["eval_deeplab"]["predicted"] == 2                       # the other two were reused
    assert all(pred_dir.joinpath(n).stat().st_mtime_ns == t for n, t in kept.items())
    assert out["eval_deeplab"]["miou"] == pytest.approx(metrics["eval_deeplab"]["miou"])
    # every image reaching the CRF is the decoded uint8 RGB image itself (not a normalised one cast back)
    originals = [np.asarray(Image.open(voc / "JPEGImages" / f"{i}.jpg").convert("RGB"))
                 for i in (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()]
    assert len(seen) == 3 + 2
    for img in seen.values():
        assert img.dtype == np.uint8 and any(img.shape == o.shape and np.array_equal(img, o) for o in originals)


@pytest.mark.parametrize("crf", ["false", "true"])
def test_eval_scores_an_oracle_network_100(world, smoke_run, monkeypatch, crf):
    # a network whose logits are the GT itself (one-hot, x10) must give the GT back as the prediction
    # PNGs and mIoU 100: the resize, softmax / CRF and argmax between the logits and the PNG lose nothing
    from tool.seg import deeplab_infer

    _, voc = world
    work, _ = smoke_run
    val = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    gts = [load_label_png(voc / "SegmentationClass" / f"{i}.png") for i in val]
    order = iter(gts)     # one rank, no CRF pool: the images come in split order

    def oracle(model, x, msc, flip):
        gt = torch.from_numpy(next(order).astype(np.int64))
        assert tuple(x.shape[-2:]) == tuple(gt.shape)
        return 10.0 * F.one_hot(torch.where(gt == 255, 0, gt), 21).permute(2, 0, 1)[None].float()  # [1, 21, H, W]

    fresh = world[0] / f"eval_oracle_{crf}"
    (fresh / "deeplab").mkdir(parents=True)
    (fresh / "steps").mkdir()
    shutil.copy(work / "deeplab" / "model.pth", fresh / "deeplab" / "model.pth")
    shutil.copy(work / "steps" / "train_deeplab.done.json", fresh / "steps" / "train_deeplab.done.json")
    monkeypatch.setattr(deeplab_infer, "predict_logits", oracle)
    out = run_sample.main(args_for(world, fresh, "--steps", "eval_deeplab", "--set", f"deeplab_eval.crf.enabled={crf}"))
    assert out["eval_deeplab"]["miou"] == pytest.approx(100.0)
    for i, gt in zip(val, gts):
        pred = load_label_png(fresh / "deeplab_pred" / f"{i}.png")
        assert np.array_equal(pred[gt != 255], gt[gt != 255]), i


def test_crf_worker_pool_gives_the_same_predictions(world, smoke_run):
    work, _ = smoke_run
    ref = {p.name: load_label_png(p) for p in (work / "deeplab_pred").glob("*.png")}
    out = run_sample.main(args_for(world, work, "--steps", "eval_deeplab", "--set", "deeplab_eval.crf_workers=2"))
    assert out["eval_deeplab"]["predicted"] == 4
    for name, pred in ref.items():
        assert np.array_equal(load_label_png(work / "deeplab_pred" / name), pred), name


def test_split_without_gt_writes_the_voc_server_tree(world, smoke_run):
    _, voc = world
    work, _ = smoke_run
    # the SBD-like extra images have no SegmentationClass PNG: a stand-in for VOC test
    extra = sorted(p.stem for p in (voc / "JPEGImages").glob("*.jpg")
                   if not (voc / "SegmentationClass" / f"{p.stem}.png").is_file())
    assert len(extra) == 4
    (voc / "ImageSets" / "Segmentation" / "test.txt").write_text("\n".join(extra) + "\n")
    out = run_sample.main(args_for(world, work, "--steps", "eval_deeplab", "--set", "deeplab_eval.split=test",
                                   "--set", "deeplab_eval.crf.enabled=false"))["eval_deeplab"]
    assert "miou" not in out and out["num_images"] == 4
    ev = read_json(work / "eval_deeplab_test.json")
    assert ev["split"] == "test" and ev["miou"] is None
    sub = work / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.stem for p in sub.glob("*.png")) == extra
    for i in extra:
        with Image.open(sub / f"{i}.png") as png, Image.open(voc / "JPEGImages" / f"{i}.jpg") as jpg:
            assert png.mode == "P" and png.size == jpg.size and np.asarray(png).max() <= 20
    with tarfile.open(out["submission"]) as tar:
        assert sorted(m.name for m in tar.getmembers() if m.isfile()) == \
            [f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in extra]
    assert (work / "eval_deeplab.json").is_file()          # the val evaluation is still there


def test_missing_pseudo_masks_are_named(world, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"deeplab\.label_dir: 12 of 12 label PNG\(s\) missing.*make_sem_seg"):
        run_sample.main(args_for(world, tmp_path / "w", "--steps", "train_deeplab",
                                 "--set", f"deeplab.label_dir={tmp_path / 'empty'}"))


def test_fit_accumulation_matches_the_full_batch(tmp_path):
    """Two micro-batches of 2 accumulate the gradient of the batch of 4: same weights after 3 steps."""
    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            return {"x": torch.randn(3, generator=g), "y": torch.randn(1, generator=g)}

    def train(accum: int, name: str) -> torch.Tensor:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD([{"params": model.parameters(), "lr": 0.1, "initial_lr": 0.1}], momentum=0.9)

        def loss_fn(batch):
            return {"loss": ((model(batch["x"]) - batch["y"]) ** 2).mean()}

        ctx = Context(paths=WorkPaths(tmp_path), device=torch.device("cpu"), rank=0, world_size=1, seed=0,
                      step=name, digest="d")
        fit(ctx, TrainRecipe(batch_size=4, epochs=2, max_steps=3), model=model, dataset=Data(), optimizer=opt,
            loss_fn=loss_fn, final_path=tmp_path / f"{name}.pth", num_workers=0, accum_steps=accum)
        return torch.cat([p.detach().reshape(-1) for p in model.parameters()])

    full, accumulated = train(1, "full"), train(2, "accum")
    assert torch.allclose(full, accumulated, atol=1e-6)
    with pytest.raises(ValueError, match="accum_steps 3 must be >= 1 and divide the batch size 4"):
        train(3, "bad")
