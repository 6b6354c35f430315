"""The toy-pretrained ResNet-50 (tool.toy.backbone): crop boxes by hand, the collection's labels and
independence from the world, a tiny training run whose weights load as cam.pretrained, and caching."""
from __future__ import annotations

import dataclasses
import os

import cv2
import numpy as np
import pytest
import torch

from net.resnet50_cam import CAMNet
from tool.engine.config import load_config
from tool.toy import backbone as toy_backbone
from tool.toy.backbone import (
    BackgroundBackbone,
    ToyBackboneParams,
    accuracy,
    cached_toy_backbone,
    ensure_toy_backbone,
    object_crop_box,
    render_crops,
)
from tool.toy.render import render_image
from voc12.dataset import XML_NAMES

TINY = ToyBackboneParams(seed=2, num_images=8, num_heldout=2, source_size=(64, 80), image_size=32, steps=2,
                         batch_size=4, warmup=1)


def test_object_crop_box_by_hand():
    # box 20 wide, 40 tall, centre (20, 40): side 1.2 * 40 = 48 -> x 20±24 clipped at 0, y 40±24
    assert object_crop_box([10, 20, 30, 60], 100, 100, 1.2) == (0, 16, 44, 64)
    # clipped at the far edges too
    assert object_crop_box([80, 70, 100, 100], 100, 100, 1.0) == (75, 70, 100, 100)
    assert object_crop_box([0, 0, 10, 10], 50, 50, 2.0) == (0, 0, 15, 15)


def test_render_crops_labels_and_independence():
    images, labels = render_crops(TINY)
    assert images.shape == (8, 32, 32, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7]            # round-robin over XML_NAMES
    assert all(images[i].std() > 5 for i in range(8))              # drawn, not blank
    again, _ = render_crops(TINY)
    assert np.array_equal(images, again)                           # a pure function of the parameters
    # crop 0 is image INDEX_OFFSET of seed + SEED_OFFSET, cut to its object: never an image of the world
    # (the world draws indices 0.. with seed)
    toy = render_image("x", toy_backbone.INDEX_OFFSET, seed=TINY.seed + toy_backbone.SEED_OFFSET,
                       image_size=(64, 80), classes=[XML_NAMES[0]], scene_correlation=0.0, max_objects=1,
                       void_width=0, segmented=False)
    x0, y0, x1, y1 = object_crop_box(toy.meta["objects"][0]["bbox"], 64, 80, TINY.context)
    assert toy.meta["objects"][0]["class"] == XML_NAMES[0]
    assert np.array_equal(images[0], cv2.resize(toy.image[y0:y1, x0:x1], (32, 32), interpolation=cv2.INTER_AREA))


def test_accuracy_counts_argmax():
    class Fixed(torch.nn.Module):      # predicts class (pixel mean > 0) for each crop
        def forward(self, x):
            pos = (x.mean(dim=(1, 2, 3)) > 0).long()
            return torch.nn.functional.one_hot(pos, 2).float()

    bright = np.full((1, 4, 4, 3), 255, np.uint8)
    dark = np.zeros((1, 4, 4, 3), np.uint8)
    images = np.concatenate([bright, dark, bright, dark])
    assert accuracy(Fixed(), images, np.array([1, 0, 0, 0])) == 75.0


def test_ensure_trains_once_and_loads_as_cam_pretrained(tmp_path, monkeypatch):
    # spies: which crops the loss sees, and which the held-out accuracy is measured on
    targets, measured = [], []
    real_ce, real_accuracy = toy_backbone.F.cross_entropy, toy_backbone.accuracy
    monkeypatch.setattr(toy_backbone.F, "cross_entropy", lambda x, y: targets.append(y.clone()) or real_ce(x, y))
    monkeypatch.setattr(toy_backbone, "accuracy",
                        lambda m, im, lab: measured.append((im, lab)) or real_accuracy(m, im, lab))
    out = tmp_path / "models" / "resnet50_toy.pth"
    summary = ensure_toy_backbone(out, TINY)
    # the 8 crops have labels 0..7 (round-robin); the last num_heldout = 2 are held out: training draws
    # only labels 0..5 and the accuracy is measured on crops 6 and 7 alone
    assert len(targets) == TINY.steps and all(t.shape == (TINY.batch_size,) for t in targets)
    assert int(torch.cat(targets).max()) < 6
    images, _ = render_crops(TINY)
    assert len(measured) == 1 and np.array_equal(measured[0][0], images[6:]) and measured[0][1].tolist() == [6, 7]
    assert out.is_file() and out.with_suffix(".pth.json").is_file()
    m = summary["metrics"]
    assert 0.0 <= m["heldout_accuracy"] <= 100.0 and m["chance_accuracy"] == 5.0 and np.isfinite(m["loss"])
    state = torch.load(out, weights_only=True)
    assert "conv1.weight" in state and "layer4.2.bn3.running_var" in state and state["fc.weight"].shape == (20, 2048)
    # read by the real loader like an ImageNet checkpoint (fc dropped, the rest strict)
    net = CAMNet(20, pretrained=str(out))
    assert torch.equal(net.backbone.layer1[0].conv1.weight, state["layer1.0.conv1.weight"])

    # its training curve: one record at the last of the 2 steps (log every 50), the mean of both losses
    from tool.engine.events import read_events
    scalars, _ = read_events(out.parent / "events" / "toy_backbone.jsonl")
    assert [r["iter"] for r in scalars] == [2] and round(scalars[0]["terms"]["loss"], 4) == m["loss"]

    def boom(*args):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(toy_backbone, "train_toy_backbone", boom)
    assert ensure_toy_backbone(out, TINY)["metrics"] == m                    # cached: no training
    with pytest.raises(AssertionError, match="retrained"):                   # other parameters: retrains
        ensure_toy_backbone(out, ToyBackboneParams(**{**TINY.__dict__, "steps": 3}))
    assert not out.with_suffix(".pth.json").exists()    # the stale marker went first: never a wrong cache hit


def test_demo_config_points_cam_at_the_toy_backbone():
    cfg = load_config("configs/demo.yaml")
    assert cfg.toy.backbone is not None and cfg.cam.pretrained == cfg.toy.backbone


def test_heldout_must_leave_training_images():
    with pytest.raises(ValueError, match="num_heldout"):
        toy_backbone.train_toy_backbone(ToyBackboneParams(num_images=4, num_heldout=4))


def test_runner_trains_the_backbone_with_the_world(tmp_path, monkeypatch):
    # toy.backbone: ensure_toy_world pretrains it (with the world's seed and image size) after the world
    from tool.toy.ensure import ensure_toy_world

    calls = []
    monkeypatch.setattr(toy_backbone, "ensure_toy_backbone", lambda out, p: calls.append((out, p)))
    out = tmp_path / "resnet50_toy.pth"
    world = [f"dataset.root={tmp_path / 'VOC2012'}", "toy.seed=5", "toy.image_size=[48, 56]", "toy.num_train=2",
             "toy.num_val=1", "toy.random_models_dir=null"]
    ensure_toy_world(load_config("configs/smoke.yaml", [*world, f"toy.backbone={out}"]))
    assert (tmp_path / "VOC2012" / "toy_world.json").is_file()
    assert len(calls) == 1 and calls[0][0] == out
    assert calls[0][1] == ToyBackboneParams(seed=5, source_size=(48, 56))
    ensure_toy_world(load_config("configs/smoke.yaml", world))
    assert len(calls) == 1          # no toy.backbone: nothing trained


def test_background_backbone_trains_in_its_own_process_to_the_same_weights(tmp_path):
    """Beside the VLP or not, the weights are a function of the parameters: the first single_thread_steps run on
    one thread, the rest on the caller's count, in a second process or in this one (bit-equal)."""
    p = dataclasses.replace(TINY, steps=3, single_thread_steps=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)          # not this machine's default: the second process must be told
    try:
        bg = BackgroundBackbone(tmp_path / "bg" / "resnet50_toy.pth", p)
        summary = bg.wait()
        here = ensure_toy_backbone(tmp_path / "here" / "resnet50_toy.pth", p)
        assert torch.get_num_threads() == 3                          # restored after the one-thread steps
    finally:
        torch.set_num_threads(threads)
    assert bg._proc.pid != os.getpid()
    assert summary["metrics"]["threads"] == here["metrics"]["threads"] == [[0, 1], [1, 3]]
    a = torch.load(tmp_path / "bg" / "resnet50_toy.pth", weights_only=True)
    b = torch.load(tmp_path / "here" / "resnet50_toy.pth", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert cached_toy_backbone(tmp_path / "bg" / "resnet50_toy.pth", p) == summary   # a later run does not retrain
    bad = BackgroundBackbone(tmp_path / "bad.pth", dataclasses.replace(TINY, num_heldout=8))
    with pytest.raises(RuntimeError, match=r"toy backbone: training .*bad\.pth failed in its process \(exit code 1"):
        bad.wait()
    assert not (tmp_path / "bad.pth").exists() and not (tmp_path / "bad.pth.json").exists()


def test_a_failed_toy_vlp_stops_the_backbone_beside_it_before_it_writes_anything(tmp_path, monkeypatch):
    from tool.toy import ensure
    from tool.toy.vlp import cache

    started = []
    real_init = BackgroundBackbone.__init__

    def spy_init(self, *a, **k):
        real_init(self, *a, **k)
        started.append(self)

    def vlp_fails(*a, **k):
        raise KeyboardInterrupt   # e.g. Ctrl-C while the VLP trains

    monkeypatch.setattr(BackgroundBackbone, "__init__", spy_init)
    monkeypatch.setattr(cache, "ensure_toy_vlp", vlp_fails)
    cfg = load_config("configs/demo.yaml", [f"toy.vlp_dir={tmp_path / 'vlp'}",
                                            f"toy.backbone={tmp_path / 'resnet50_toy.pth'}"])
    with pytest.raises(KeyboardInterrupt):
        ensure.ensure_toy_models(cfg, tmp_path / "world")
    assert len(started) == 1 and not started[0]._proc.is_alive() and started[0]._proc.exitcode != 0
    assert not (tmp_path / "resnet50_toy.pth").exists() and not (tmp_path / "resnet50_toy.pth.json").exists()
