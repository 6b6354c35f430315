"""End to end on the toy world: run_sample.main on configs/smoke.yaml, resume and skip behaviour."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import run_sample
import tool.engine.train_loop
from tests.helpers import TrainingCrash, crash_training_at
from tool.engine.io import read_json

pytestmark = pytest.mark.slow   # end-to-end runs (pyproject.toml: make test-fast leaves them out)

BASELINE = ("--set", "make_cam.source=baseline")   # export the baseline's CAMs of train_aug, no RITC needed
SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")


def smoke_args(tmp: Path, *extra: str) -> list[str]:
    """configs/smoke.yaml with every path under ``tmp``."""
    models = tmp / "models"
    return ["--config", SMOKE, "--set", f"work_dir={tmp / 'work'}", "--set", f"dataset.root={tmp / 'toy' / 'VOC2012'}",
            "--set", f"toy.random_models_dir={models}", "--set", f"qape.vqa_model={models / 'blip'}",
            "--set", f"clip.model={models / 'clip'}", *extra]


@pytest.fixture(scope="module")
def smoke_run(module_tmp):
    tmp = module_tmp
    metrics = run_sample.main(smoke_args(tmp))
    return tmp, metrics


def test_every_artefact_and_metric(smoke_run):
    tmp, metrics = smoke_run
    work = tmp / "work"
    steps = list(run_sample.STEPS)          # the smoke config switches every step on
    assert list(metrics) == steps
    for f in ("config.yaml", "meta.json", "log.txt", "metrics.jsonl", "cam_baseline/model.pth", "ritc/model.pth",
              "qape/corpus.jsonl", "qape/texts.json", "cam_baseline/eval_cam.json", "eval_cam.json",
              *(f"steps/{s}.done.json" for s in steps)):
        assert (work / f).is_file(), f
    assert not (work / "checkpoints" / "train_cam.pth").exists()   # removed once the model is saved
    meta = read_json(work / "meta.json")
    assert meta["versions"]["torch"] and meta["command"][1] == "run_sample.py" and meta["git_sha"]
    lines = [json.loads(x) for x in (work / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == steps
    assert np.isfinite(metrics["train_cam"]["loss"]) and metrics["train_cam"]["steps"] == 3
    assert metrics["train_ritc"]["steps"] == 2 and all(np.isfinite(metrics["train_ritc"][k])
                                                      for k in ("loss", "frc", "brc", "reg"))

    # QAPE corpus: one record per labelled (image, class) of train_aug, 6 FG + 10 BG questions each
    seg = tmp / "toy" / "VOC2012" / "ImageSets" / "Segmentation"
    ids = seg.joinpath("train_aug.txt").read_text().split()
    records = [json.loads(x) for x in (work / "qape" / "corpus.jsonl").read_text().splitlines()]
    from voc12.dataset import VOC12
    labels = VOC12(tmp / "toy" / "VOC2012").labels(ids)
    assert len(records) == int(labels.sum()) == metrics["qape"]["pairs_answered"]
    assert all(len(r["fg"]) == 6 and len(r["bg"]) == 10 for r in records)
    assert records[0]["fg"][0][0] == f"What kind of {records[0]['class']} is in the photo?"
    texts = read_json(work / "qape" / "texts.json")
    assert len(texts["pairs"]) == len(records) and all(len(p["fg"]) == 6 for p in texts["pairs"])
    assert (work / "qape" / f"text_feats.{texts['clip_id']}.safetensors").is_file()

    # CAM files: the docs/design.md §3 format, RITC for every train_aug image, the baseline for the eval split
    cams = sorted((work / "cam").glob("*.npz"))
    assert [c.stem for c in cams] == sorted(ids)
    base = sorted((work / "cam_baseline" / "cam").glob("*.npz"))
    assert [c.stem for c in base] == sorted(seg.joinpath("train.txt").read_text().split())
    from PIL import Image
    for c in cams + base:
        with np.load(c) as f:
            keys, cam, high = f["keys"], f["cam"], f["high_res"]
        w, h = Image.open(tmp / "toy" / "VOC2012" / "JPEGImages" / f"{c.stem}.jpg").size
        assert keys.dtype == np.int64 and cam.dtype == np.float16 and high.dtype == np.float16
        assert high.shape == (len(keys), h, w) and cam.shape == (len(keys), -(-h // 4), -(-w // 4))
        assert 0 <= high.min() and high.max() <= 1.0

    assert metrics["eval_cam"]["baseline_miou"] == read_json(work / "cam_baseline" / "eval_cam.json")["miou"]

    # IRN: IR labels and pseudo masks for every train_aug image, IRN weights, pseudo-mask metrics
    from tool.data.palette import load_label_png
    for i in ids:
        ir = load_label_png(work / "ir_label" / f"{i}.png")
        sem = load_label_png(work / "sem_seg" / f"{i}.png")
        w, h = Image.open(tmp / "toy" / "VOC2012" / "JPEGImages" / f"{i}.jpg").size
        assert ir.shape == sem.shape == (h, w)
        allowed = {0, 255, *(int(k) + 1 for k in np.nonzero(labels[ids.index(i)])[0])}
        assert set(np.unique(ir).tolist()) <= allowed and set(np.unique(sem).tolist()) <= allowed - {255}
    assert (work / "irn" / "model.pth").is_file() and np.isfinite(metrics["train_irn"]["loss"])
    sem_eval = read_json(work / "eval_sem_seg.json")
    assert sem_eval["num_images"] == 8 and 0 <= sem_eval["miou"] <= 100 and len(sem_eval["precision"]) == 21
    ev = read_json(work / "eval_cam.json")
    assert ev["split"] == "train" and ev["num_images"] == 8 and len(ev["classes"]) == 21
    assert 0 <= ev["miou"] <= 100 and ev["configured"]["threshold"] == pytest.approx(0.15)
    assert len(ev["sweep"]) == 13 and ev["best"]["miou"] == max(r["miou"] for r in ev["sweep"])
    assert ev["miou"] == pytest.approx(next(r["miou"] for r in ev["sweep"] if abs(r["threshold"] - 0.15) < 1e-6))


def test_training_steps_write_their_events(smoke_run):
    """events/<step>.jsonl: one record per logged iteration (log_every 1) with the step's named loss terms."""
    from tool.engine.events import read_events

    work = smoke_run[0] / "work"
    for step, n, terms in (("train_cam", 3, {"loss"}), ("train_ritc", 2, {"loss", "frc", "brc", "reg"}),
                           ("train_irn", 2, {"loss", "pos_aff", "neg_aff", "dp_fg", "dp_bg"}),
                           ("train_deeplab", 3, {"loss", "ce_1.0", "ce_0.75", "ce_0.5", "ce_max"})):
        scalars, _ = read_events(work / "events" / f"{step}.jsonl")
        assert [r["iter"] for r in scalars] == list(range(1, n + 1)), step
        assert terms <= set(scalars[0]["terms"]), (step, scalars[0]["terms"])
        assert len(scalars[0]["lr"]) >= 2 and scalars[0]["images_per_s"] > 0


def test_finished_steps_are_skipped_and_changes_rerun(smoke_run):
    tmp, _ = smoke_run
    work = tmp / "work"
    model_mtime = (work / "cam_baseline" / "model.pth").stat().st_mtime_ns
    run_sample.main(smoke_args(tmp))
    assert (work / "cam_baseline" / "model.pth").stat().st_mtime_ns == model_mtime
    # an eval-only change reruns eval_cam alone
    eval_before = read_json(work / "steps" / "eval_cam.done.json")["run_id"]
    make_before = read_json(work / "steps" / "make_cam.done.json")["run_id"]
    out = run_sample.main(smoke_args(tmp, "--set", "eval.cam_threshold=0.2"))
    assert read_json(work / "steps" / "make_cam.done.json")["run_id"] == make_before
    assert read_json(work / "steps" / "eval_cam.done.json")["run_id"] != eval_before
    assert out["eval_cam"]["threshold"] == pytest.approx(0.2)


def test_training_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    """A crash after step 3 of 4 resumes from the step-2 checkpoint and ends with the same weights
    as an uninterrupted run."""
    args = smoke_args(tmp_path, "--steps", "train_cam", "--set", "cam.train.max_steps=4", "--set", "cam.train.epochs=2")
    run_sample.main(args + ["--set", f"work_dir={tmp_path / 'ref'}"])
    ref = torch.load(tmp_path / "ref" / "cam_baseline" / "model.pth", weights_only=True)

    crash_training_at(monkeypatch, 3)
    with pytest.raises(TrainingCrash):
        run_sample.main(args)
    work = tmp_path / "work"
    assert (work / "checkpoints" / "train_cam.pth").is_file()
    assert torch.load(work / "checkpoints" / "train_cam.pth", weights_only=False)["step"] == 2
    assert not (work / "cam_baseline" / "model.pth").exists() and not (work / "steps" / "train_cam.done.json").exists()
    monkeypatch.setattr(tool.engine.train_loop, "_after_step", lambda step: None)
    out = run_sample.main(args)
    assert out["train_cam"]["steps"] == 4
    got = torch.load(work / "cam_baseline" / "model.pth", weights_only=True)
    for k in ref:
        assert torch.allclose(ref[k].float(), got[k].float(), atol=1e-6), k
    assert "resumed from" in (work / "log.txt").read_text()
    # one curve: iterations 3.. of the killed run are dropped and trained again after the resume mark at 2
    from tool.engine.events import read_events
    scalars, marks = read_events(work / "events" / "train_cam.jsonl")
    assert [r["iter"] for r in scalars] == [1, 2, 3, 4]
    assert [(m["event"], m["iter"]) for m in marks] == [("checkpoint", 2), ("resume", 2)]
    assert [r["terms"] for r in scalars] == [r["terms"] for r in read_events(tmp_path / "ref" / "events" /
                                                                            "train_cam.jsonl")[0]]


def test_per_image_step_killed_midway_completes(tmp_path, monkeypatch):
    from step import make_cam

    run_sample.main(smoke_args(tmp_path, "--steps", "train_cam"))
    real = make_cam.save_npz
    calls = {"n": 0}

    def dying_save(path, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:
            # the atomic writer's temp file exists at this moment; the crash must not leave it
            from tool.engine.io import atomic_path
            with atomic_path(path) as tmp:
                tmp.write_bytes(b"half")
                raise KeyboardInterrupt
        real(path, **arrays)

    monkeypatch.setattr(make_cam, "save_npz", dying_save)
    with pytest.raises(KeyboardInterrupt):
        run_sample.main(smoke_args(tmp_path, "--steps", "make_cam", *BASELINE))
    cam_dir = tmp_path / "work" / "cam_baseline" / "cam"
    assert len(list(cam_dir.glob("*.npz"))) == 2 and not list(cam_dir.glob(".*tmp*"))
    first = {p.name: p.stat().st_mtime_ns for p in cam_dir.glob("*.npz")}
    monkeypatch.setattr(make_cam, "save_npz", real)
    out = run_sample.main(smoke_args(tmp_path, "--steps", "make_cam", *BASELINE))
    assert out["make_cam"]["made"] == 10           # 12 train_aug images, 2 kept from the first run
    assert all(cam_dir.joinpath(n).stat().st_mtime_ns == t for n, t in first.items())
    for p in cam_dir.glob("*.npz"):
        with np.load(p) as f:
            assert f["high_res"].shape[0] == len(f["keys"])


def test_step_selection():
    sel = run_sample.select_steps
    toggles = {"train_cam": True, "make_cam": False, "eval_cam": True}
    assert sel(toggles, None, None, None) == ["train_cam", "eval_cam"]
    assert sel(toggles, "eval_cam,train_cam", None, None) == ["train_cam", "eval_cam"]
    all_on = dict.fromkeys(toggles, True)
    assert sel(all_on, None, "make_cam", None) == ["make_cam", "eval_cam"]
    assert sel(all_on, None, None, "make_cam") == ["train_cam", "make_cam"]
    with pytest.raises(SystemExit, match="unknown step"):
        sel(all_on, "train_kam", None, None)
    with pytest.raises(SystemExit, match="--from"):
        sel(all_on, None, "nope", None)


def test_eval_reads_official_npy_cams(smoke_run):
    """eval.cam_dir pointing at IRN/official .npy dicts gives the same numbers as our .npz files."""
    tmp, _ = smoke_run
    work = tmp / "work"
    npy_dir = tmp / "official_cams"
    npy_dir.mkdir()
    for p in (work / "cam_baseline" / "cam").glob("*.npz"):
        with np.load(p) as f:
            np.save(npy_dir / f"{p.stem}.npy", {"keys": f["keys"], "cam": torch.from_numpy(f["cam"].astype(np.float32)),
                                                "high_res": f["high_res"].astype(np.float32)})
    out = run_sample.main(smoke_args(tmp, "--steps", "eval_cam", "--set", f"eval.cam_dir={npy_dir}",
                                     "--set", "eval.allow_pickle_cams=true"))   # .npy CAMs are pickles: opt in
    ours = read_json(work / "cam_baseline" / "eval_cam.json")
    ext = read_json(work / "eval_cam_external.json")
    assert ext["cam_dir"] == str(npy_dir)
    assert [r["miou"] for r in ext["sweep"]] == pytest.approx([r["miou"] for r in ours["sweep"]])
    assert out["eval_cam"]["num_images"] == 8


def test_corrupt_image_is_named_or_skipped(tmp_path):
    run_sample.main(smoke_args(tmp_path, "--steps", "train_cam"))
    root = tmp_path / "toy" / "VOC2012"
    victim = (root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[-1]
    (root / "JPEGImages" / f"{victim}.jpg").write_bytes(b"not a jpeg at all")
    with pytest.raises(Exception, match=f"{victim}.jpg: cannot decode image.*skip_bad_images"):
        run_sample.main(smoke_args(tmp_path, "--steps", "make_cam", *BASELINE))
    out = run_sample.main(smoke_args(tmp_path, "--steps", "make_cam", "--set", "dataset.skip_bad_images=true",
                                     *BASELINE))
    assert out["make_cam"]["skipped_bad"] == 1 and out["make_cam"]["made"] == 11


def test_stage_study_on_a_finished_run(smoke_run):
    """tool.stage_study on the smoke run: its IRN walk reproduces make_sem_seg's masks (the same mIoU as
    eval_sem_seg), and the GT-oracle DeepLab is a real sub-run of the run's recipe on the GT masks."""
    from tool import stage_study
    tmp, _ = smoke_run
    work = tmp / "work"
    root = tmp / "stage_study"
    args = smoke_args(tmp)
    assert stage_study.main([*args, "--root", str(root), "--budgets", "1", "--deeplab-labels", "gt"]) == 0
    study = read_json(root / "study.json")
    sem = read_json(work / "eval_sem_seg.json")
    assert study["boundary_pseudo"]["pseudo"]["irn_walk"] == pytest.approx(sem["miou"], abs=1e-9)
    assert study["run"]["pseudo"] == sem["miou"]
    assert study["boundary_pseudo"]["num_images"] == study["ir_label"]["num_images"] == 8
    # the recognition oracle's own figure is eval_deeplab's, reproduced image by image (CRF included)
    deeplab = read_json(work / "eval_deeplab.json")
    assert study["recognition"]["own"]["miou"] == pytest.approx(deeplab["miou"], abs=1e-9)
    assert study["recognition"]["own"]["errors"] == pytest.approx(deeplab["errors"], abs=1e-9)
    assert study["recognition"]["num_images"] == deeplab["num_images"]
    gt_run = study["deeplab"]["gt_x1"]
    assert gt_run["iterations"] == 3
    assert gt_run["miou"] == read_json(root / "deeplab_gt_x1" / "eval_deeplab.json")["miou"]
    train = read_json(root / "deeplab_gt_x1" / "steps" / "train_deeplab.done.json")
    assert train["metrics"]["num_images"] == 12                      # train_aug: 8 train + 4 redrawn extras
    assert sorted(p.stem for p in (root / "gt_masks").glob("*.png")) == sorted(
        (tmp / "toy" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split())
    # the IRN oracle trained on those GT masks (its IR-label split is train_aug too), not on the run's IR labels,
    # and its figures are its own IRNet's
    oracle = root / "irn_gt_labels"
    assert (oracle / "ir_label").resolve() == (root / "gt_masks").resolve()
    assert read_json(oracle / "steps" / "train_irn.done.json")["metrics"]["num_images"] == 12
    assert not torch.equal(torch.load(oracle / "irn" / "model.pth", weights_only=True)["fc_edge6.weight"],
                           torch.load(work / "irn" / "model.pth", weights_only=True)["fc_edge6.weight"])
    from tool.engine.config import load_config
    from tool.engine.paths import WorkPaths
    cfg = load_config(SMOKE, args[3::2])   # the --set values of smoke_args
    again = stage_study.measure_boundary_pseudo(cfg, WorkPaths(work), torch.device("cpu"), oracle / "irn" / "model.pth")
    assert study["irn_gt_labels"]["boundary_ap"] == again["boundary"]["ap"]
    assert study["irn_gt_labels"]["irn_walk"] == again["pseudo"]["irn_walk"]


def test_recognition_oracle_gives_each_image_its_own_classes(smoke_run, monkeypatch):
    """tool.stage_study's recognition part on logits that call the first object of every image a class the image
    lacks: given the image's classes the prediction is the GT (100), on its own it is the GT with those objects
    relabelled (its confusion worked out here, without the oracle)."""
    from tool import stage_study
    from tool.data.registry import build_dataset
    from tool.engine.config import load_config
    from tool.engine.paths import WorkPaths
    from tool.seg.metrics import confusion, miou

    tmp, _ = smoke_run
    cfg = load_config(SMOKE, smoke_args(tmp, "--set", "deeplab_eval.crf.enabled=false")[3::2])
    paths = WorkPaths(tmp / "work")
    ds = build_dataset(cfg.dataset, paths.cache_dir)
    ids = ds.ids(cfg.dataset.val_split)
    k = ds.num_classes + 1
    logits, relabelled = [], []
    for image_id in ids:
        gt = ds.load_gt(image_id)
        present = [c for c in np.unique(gt) if 0 < c < k]
        absent = next(c for c in range(1, k) if c not in present)
        lg = 5 * torch.nn.functional.one_hot(torch.from_numpy(np.where(gt == 255, 0, gt)).long(), k)
        lg = lg.permute(2, 0, 1).float()                                            # [K, H, W]
        wrong = gt.copy()
        if present:
            lg[absent][torch.from_numpy(gt == present[0])] = 10.0
            wrong[gt == present[0]] = absent
        logits.append(lg)
        relabelled.append(confusion(wrong, gt, k))
    assert any(c.trace() < c.sum() for c in relabelled)                          # some objects are misnamed
    served = iter(logits)
    monkeypatch.setattr(stage_study, "image_logits", lambda model, img, cfg, device: next(served))
    out = stage_study.measure_recognition(cfg, paths, torch.device("cpu"))
    assert out["classes_given"]["miou"] == 100.0 and out["classes_given"]["errors"]["wrong_class"] == 0
    assert out["own"]["miou"] == pytest.approx(miou(sum(relabelled)), abs=1e-9)
    assert out["own"]["miou"] < 100 and out["own"]["errors"]["wrong_class"] > 0


def test_ablate_knows_every_step_output(smoke_run):
    """tool.ablate.STEP_OUTPUTS (what adopting a shared step carries over) covers every file a full run writes
    outside the run-level files, and names something real for every step."""
    from tool.ablate import STEP_OUTPUTS, step_files

    work = smoke_run[0] / "work"
    assert list(STEP_OUTPUTS) == list(run_sample.STEPS)
    claimed = {}
    for step in STEP_OUTPUTS:
        files = step_files(work, step)
        assert files, step
        for f in files:
            assert f not in claimed, (f, step, claimed.get(f))     # one owner per file
            claimed[f] = step
    from tool.engine.lock import LOCK_NAME

    run_level = {"config.yaml", "meta.json", "log.txt", "metrics.jsonl", LOCK_NAME}
    rest = sorted(str(f.relative_to(work)) for f in work.rglob("*") if f.is_file() and f not in claimed
                  and f.relative_to(work).parts[0] not in ("steps", "cache") and f.name not in run_level)
    assert rest == []


def test_frozen_stages_keep_the_cam_and_ritc_nets_first_stages_as_they_started(smoke_run, tmp_path):
    """cam.frozen_stages / ritc.frozen_stages 2 (IRN's own CAM net): after training, the stem, layer1 and
    layer2 (weights and BN statistics) are bit-equal to where each step started (train_cam: its iteration-0
    snapshot; train_ritc: the baseline classifier it starts from); layer3 moved."""
    import shutil

    src = smoke_run[0] / "work"
    work = tmp_path / "work"
    shutil.copytree(src, work)
    sets = ("cam.bn=batch", "cam.frozen_stages=2", "ritc.frozen_stages=2", "cam.train.snapshots=[0]")
    args = smoke_args(smoke_run[0], "--set", f"work_dir={work}", *(a for s in sets for a in ("--set", s)),
                      "--steps", "train_cam,train_ritc")
    run_sample.main(args)
    frozen = ("backbone.conv1.", "backbone.bn1.", "backbone.layer1.", "backbone.layer2.")

    def compare(trained: Path, start: Path) -> None:
        a, b = torch.load(trained, weights_only=True), torch.load(start, weights_only=True)
        assert a.keys() == b.keys()
        for k in a:
            if k.startswith(frozen) and a[k].is_floating_point():
                assert torch.equal(a[k], b[k]), k
        assert not torch.equal(a["backbone.layer3.0.conv1.weight"], b["backbone.layer3.0.conv1.weight"])
        assert not torch.equal(a["backbone.layer3.0.bn1.running_mean"], b["backbone.layer3.0.bn1.running_mean"])

    compare(work / "cam_baseline" / "model.pth", work / "cam_baseline" / "model.iter0.pth")
    compare(work / "ritc" / "model.pth", work / "cam_baseline" / "model.pth")


def test_irn_without_the_displacement_branch_gives_the_same_boundary_branch_and_pseudo_masks(smoke_run, tmp_path):
    """irn.displacement false: train_irn leaves the displacement branch as initialised and skips the mean shift,
    and its boundary branch is bit-equal to the full IRN training's, so make_sem_seg writes the same masks."""
    import shutil

    from tool.data.palette import load_label_png

    src = smoke_run[0] / "work"
    work = tmp_path / "work"
    shutil.copytree(src, work)
    out = run_sample.main(smoke_args(smoke_run[0], "--set", f"work_dir={work}", "--set", "irn.displacement=false",
                                     "--steps", "train_irn,make_sem_seg"))
    assert "mean_shift" not in out["train_irn"] and "dp_fg" not in out["train_irn"]
    assert "mean_shift" in smoke_run[1]["train_irn"]
    full = torch.load(src / "irn" / "model.pth", weights_only=True)
    edge_only = torch.load(work / "irn" / "model.pth", weights_only=True)
    assert full.keys() == edge_only.keys()
    for k in full:
        if k.startswith("fc_edge"):
            assert torch.equal(full[k], edge_only[k]), k
    assert not torch.equal(full["fc_dp7.0.weight"], edge_only["fc_dp7.0.weight"])   # full IRN trained it
    assert torch.equal(edge_only["mean_shift.running_mean"], torch.zeros(2))
    masks = sorted((src / "sem_seg").glob("*.png"))
    assert masks and all(np.array_equal(load_label_png(m), load_label_png(work / "sem_seg" / m.name)) for m in masks)


def test_irn_trained_stages_reach_the_saved_irnet(smoke_run, tmp_path):
    """irn.trained_stages 1: train_irn trains the stem with the boundary branch and saves it; layer1.. stay the
    backbone it loaded (the smoke run's IRNet, trained with the backbone frozen, holds the same loaded backbone)."""
    import shutil

    src = smoke_run[0] / "work"
    work = tmp_path / "work"
    shutil.copytree(src, work)
    run_sample.main(smoke_args(smoke_run[0], "--set", f"work_dir={work}", "--set", "irn.trained_stages=1",
                               "--steps", "train_irn"))
    frozen = torch.load(src / "irn" / "model.pth", weights_only=True)
    trained = torch.load(work / "irn" / "model.pth", weights_only=True)
    assert not torch.equal(frozen["backbone.conv1.weight"], trained["backbone.conv1.weight"])
    assert all(torch.equal(frozen[k], trained[k]) for k in frozen
               if k.startswith("backbone.") and not k.startswith(("backbone.conv1.", "backbone.bn1.")))
