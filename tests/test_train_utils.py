"""poly_lr, the official momentum quirk, checkpoint round trips, the CAM net and its official key map."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from net.resnet50_cam import CAMNet, map_official_cam_state
from net.weights import CheckpointMismatch, load_state_dict_strict
from tests.helpers import crash_training_at
from tool.engine.checkpoint import load_checkpoint, save_checkpoint
from tool.engine.lr import poly_lr, set_poly_lr, sgd, warmup_poly_lr


def test_poly_lr_values():
    assert poly_lr(0, 0.1, 100, 0.9) == pytest.approx(0.1)
    assert poly_lr(50, 0.1, 100, 0.9) == pytest.approx(0.1 * 0.5**0.9)
    assert poly_lr(99, 1.0, 100, 1.0) == pytest.approx(0.01)
    assert poly_lr(500, 1.0, 100, 1.0) == pytest.approx(0.01)   # frozen past max_step, as PolyOptimizer
    with pytest.raises(ValueError):
        poly_lr(0, 0.1, 0, 0.9)


def test_sgd_groups_and_official_momentum():
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = sgd([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0}], momentum=1e-4, weight_decay=1e-4)
    assert [g["momentum"] for g in opt.param_groups] == [1e-4, 1e-4]
    assert [g["weight_decay"] for g in opt.param_groups] == [1e-4, 1e-4]
    set_poly_lr(opt, 10, 20, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)
    assert opt.param_groups[1]["lr"] == pytest.approx(1.0 * 0.5**0.9)


def test_set_poly_lr_each_step_follows_the_base_lr_not_the_current_one():
    # the training loop calls set_poly_lr at every step: the lr at step N must be poly_lr(N, base),
    # not the product of the decays of steps 0..N (which compounding from the current lr gives)
    a, b = torch.nn.Parameter(torch.ones(2)), torch.nn.Parameter(torch.ones(2))
    opt = sgd([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 1.0}], momentum=0.9, weight_decay=0.0)
    for step in range(6):
        set_poly_lr(opt, step, 10, 0.9)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**0.9)   # poly_lr(5, 0.1, 10, 0.9)
    assert opt.param_groups[1]["lr"] == pytest.approx(1.0 * 0.5**0.9)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 1.0]


def test_warmup_poly_lr_values():
    # (step + 1) / warmup of the poly lr: the first step already trains at base / warmup, the
    # warm-up ends at step warmup - 1, and the poly decay goes on from there
    assert warmup_poly_lr(0, 1.0, 100, 4, power=1.0) == pytest.approx(0.25)
    assert warmup_poly_lr(1, 1.0, 100, 4, power=1.0) == pytest.approx(0.5 * 0.99)
    assert warmup_poly_lr(3, 1.0, 100, 4, power=1.0) == pytest.approx(0.97)
    assert warmup_poly_lr(4, 1.0, 100, 4, power=1.0) == pytest.approx(0.96)
    assert warmup_poly_lr(0, 0.2, 10, 0) == pytest.approx(0.2)          # no warm-up: plain poly_lr


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2))


def test_checkpoint_round_trip(tmp_path):
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    torch.manual_seed(123)
    save_checkpoint(tmp_path / "c.pth", model=model, optimizer=opt, step=7, epoch=1, digest="abc")
    expected_next = torch.rand(3)

    other = small_model()
    opt2 = torch.optim.SGD(other.parameters(), lr=0.1, momentum=0.9)
    torch.manual_seed(999)
    ck = load_checkpoint(tmp_path / "c.pth", model=other, optimizer=opt2, digest="abc")
    assert ck["step"] == 7 and ck["epoch"] == 1
    for p, q in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(p, q)
    assert opt2.state_dict()["state"][0]["momentum_buffer"].equal(opt.state_dict()["state"][0]["momentum_buffer"])
    assert torch.equal(torch.rand(3), expected_next)      # RNG restored
    assert not list(tmp_path.glob(".*tmp*"))              # atomic write left no temp file


def test_checkpoint_restores_every_rng_stream_and_the_grad_scaler(tmp_path):
    # a resumed run must draw the same augmentations (numpy, python random) and dropout masks (torch)
    # as the uninterrupted one, and keep the AMP loss scale it had reached
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=7)
    scaler.scale(torch.ones(()))          # the scale tensor is made lazily, on the first scale()
    scaler.update(new_scale=96.0)         # as after a few overflow back-offs
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    save_checkpoint(tmp_path / "c.pth", model=model, optimizer=opt, step=4, epoch=0, digest="d", scaler=scaler)
    expected = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])

    torch.manual_seed(10)
    np.random.seed(20)
    random.seed(30)
    fresh = torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=7)
    load_checkpoint(tmp_path / "c.pth", model=small_model(), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
                    digest="d", scaler=fresh)
    assert torch.equal(torch.rand(4), expected[0])
    np.testing.assert_array_equal(np.random.rand(4), expected[1])
    assert [random.random() for _ in range(4)] == expected[2]
    assert fresh.get_scale() == 96.0


def test_checkpoint_of_another_config_is_ignored(tmp_path):
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    save_checkpoint(tmp_path / "c.pth", model=model, optimizer=opt, step=3, epoch=0, digest="old")
    assert load_checkpoint(tmp_path / "c.pth", model=model, optimizer=opt, digest="new") is None
    assert load_checkpoint(tmp_path / "none.pth", model=model, optimizer=opt, digest="new") is None


def test_strict_load_lists_missing_and_unexpected():
    model = small_model()
    state = dict(model.state_dict())
    state.pop("0.weight")
    state["extra.weight"] = torch.zeros(1)
    msg = r"1 missing key\(s\) \['0.weight'\].*1 unexpected key\(s\) \['extra.weight'\]"
    with pytest.raises(CheckpointMismatch, match=msg):
        load_state_dict_strict(model, state, source="test.pth")


def test_cam_net_shapes_and_frozen_stem():
    net = CAMNet(20)
    x = torch.randn(2, 3, 64, 80)
    assert net(x).shape == (2, 20)
    cams = net.cams(x)
    assert cams.shape == (2, 20, 4, 5) and (cams >= 0).all()
    assert not any(p.requires_grad for p in net.backbone.conv1.parameters())
    assert not any(p.requires_grad for p in net.backbone.bn1.parameters())
    backbone, head = net.param_groups()
    assert len(head) == 1 and head[0] is net.classifier.weight
    assert all(p.requires_grad for p in backbone)
    assert len(backbone) == sum(1 for p in net.backbone.parameters()) - 3   # conv1.weight, bn1.weight, bn1.bias


def test_cam_net_frozen_stages_train_as_irns_detach_and_keep_their_statistics():
    """``frozen_stages: 2`` = IRN's CAM net (``stage2(x).detach()``): the gradients of layer3, layer4 and the
    classifier equal those of a net whose forward detaches layer2's output; with trainable BN (``bn: batch``)
    the frozen stages' statistics do not move in ``train()``, layer3's do; the state dict keeps its keys."""
    torch.manual_seed(0)
    frozen = CAMNet(20, bn="batch", frozen_stages=2)
    plain = CAMNet(20, bn="batch")
    plain.load_state_dict(frozen.state_dict())
    assert list(frozen.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(2, 3, 64, 80), (torch.rand(2, 20) < 0.2).float()
    stats = {k: v.clone() for k, v in frozen.state_dict().items() if "running_mean" in k}
    frozen.train()
    plain.train()
    for m in (plain.backbone.conv1, plain.backbone.bn1, plain.backbone.layer1, plain.backbone.layer2):
        m.eval()   # IRN's FixedBatchNorm: statistics fixed below the detach
    torch.nn.functional.multilabel_soft_margin_loss(frozen(x), y).backward()
    b = plain.backbone
    z = b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x)))))).detach()          # [2, 512, 8, 10]
    logits = plain.classifier(b.layer4(b.layer3(z)).mean(dim=(2, 3), keepdim=True)).flatten(1)
    torch.nn.functional.multilabel_soft_margin_loss(logits, y).backward()
    for (name, p), q in zip(frozen.named_parameters(), plain.parameters()):
        if name.startswith(("backbone.conv1", "backbone.bn1", "backbone.layer1", "backbone.layer2")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.requires_grad, name
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=name)
    after = frozen.state_dict()
    for k, v in stats.items():
        moved = not torch.equal(after[k], v)
        assert moved == k.startswith(("backbone.layer3", "backbone.layer4")), k
    backbone, _ = frozen.param_groups()
    assert len(backbone) == sum(p.numel() > 0 for n, p in frozen.backbone.named_parameters()
                                if n.startswith(("layer3", "layer4")))


def official_state_dict(net: CAMNet) -> dict[str, torch.Tensor]:
    """What torch.save(Net().state_dict()) of the official resnet50_cam.Net holds: the backbone under
    resnet50.*, repeated under the aliases stage1..4 / backbone / newly_added, and classifier.weight."""
    ours = net.state_dict()
    out = {}
    b = {k[len("backbone."):]: v for k, v in ours.items() if k.startswith("backbone.")}
    for k, v in b.items():
        out["resnet50." + k] = v
    stem = {"conv1": "0", "bn1": "1"}
    for k, v in b.items():
        head, _, rest = k.partition(".")
        if head in stem:
            out[f"stage1.{stem[head]}.{rest}"] = v
            out[f"backbone.0.{stem[head]}.{rest}"] = v
        elif head == "layer1":
            out[f"stage1.4.{rest}"] = v
            out[f"backbone.0.4.{rest}"] = v
        else:
            n = int(head[-1])
            out[f"stage{n}.0.{rest}"] = v
            out[f"backbone.{n - 1}.0.{rest}"] = v
    out["classifier.weight"] = ours["classifier.weight"]
    out["newly_added.0.weight"] = ours["classifier.weight"]
    return out


def test_official_cam_key_map_loads_strictly():
    src = CAMNet(20)
    torch.nn.init.normal_(src.classifier.weight)
    official = official_state_dict(src)
    assert "stage4.0.2.bn3.running_var" in official and "resnet50.layer4.2.bn3.running_var" in official
    dst = CAMNet(20)
    load_state_dict_strict(dst, map_official_cam_state(official), source="res50_cam.pth")
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    with pytest.raises(KeyError, match="something.weird"):
        map_official_cam_state({**official, "something.weird": torch.zeros(1)})


def test_step_digest_follows_local_weight_files(tmp_path):
    # a retrained cam.pretrained file (same path, new content) must rerun train_cam; keywords and hub
    # ids are not files and leave the digest alone
    import os

    from tests.test_voc12 import make_voc
    from tool.engine.config import load_config
    from tool.engine.runner import file_identity, step_digest
    from tool.engine.runtime import make_context

    weights = tmp_path / "resnet50_toy.pth"
    weights.write_bytes(b"first")
    data = [f"dataset.root={make_voc(tmp_path)}", "dataset.train_split=train"]
    cfg = load_config("configs/smoke.yaml", [f"work_dir={tmp_path / 'w'}", f"cam.pretrained={weights}", *data])
    ctx = make_context(cfg)
    before = step_digest("train_cam", cfg, ctx)
    assert step_digest("train_cam", cfg, ctx) == before
    weights.write_bytes(b"second!")
    assert step_digest("train_cam", cfg, ctx) != before
    assert file_identity(weights) == [7, weights.stat().st_mtime_ns]
    os.utime(weights, ns=(1, 2))
    assert file_identity(weights) == [7, 2]
    # a folder (HF / open_clip model dir): each file directly in it
    (tmp_path / "blip").mkdir()
    (tmp_path / "blip" / "config.json").write_text("{}")
    os.utime(tmp_path / "blip" / "config.json", ns=(1, 5))
    assert file_identity(tmp_path / "blip") == [["config.json", 2, 5]]
    assert file_identity("imagenet") is None and file_identity(None) is None
    hub = load_config("configs/smoke.yaml", [f"work_dir={tmp_path / 'w'}", "cam.pretrained=imagenet", *data])
    assert step_digest("train_cam", hub, ctx) == step_digest("train_cam", hub, ctx)


def test_snapshots_keep_the_model_at_their_iterations(tmp_path):
    """train.snapshots (0, 2, 4): iter0 is the untrained model, iter2 the model of the step-2 checkpoint (saved
    independently by the checkpoint path), iter4 the final model; nothing at the other iterations."""
    from tool.engine.config import TrainRecipe
    from tool.engine.paths import WorkPaths
    from tool.engine.runtime import Context
    from tool.engine.train_loop import fit, snapshot_path

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    opt = sgd([{"params": list(model.parameters()), "lr": 0.1}], momentum=0.9, weight_decay=0.0)
    data = [{"x": torch.randn(3), "y": torch.randn(2)} for _ in range(8)]
    ctx = Context(paths=WorkPaths(tmp_path), device=torch.device("cpu"), rank=0, world_size=1, seed=0, step="toy")
    final = tmp_path / "net" / "model.pth"
    captured = {}
    import tool.engine.train_loop as loop
    real_save = loop.save_checkpoint

    def keep(path, *, model, **kw):       # the checkpoint of step 2, as written
        captured[kw["step"]] = {k: v.clone() for k, v in model.state_dict().items()}
        return real_save(path, model=model, **kw)
    loop.save_checkpoint = keep
    try:
        fit(ctx, TrainRecipe(batch_size=2, epochs=1, snapshots=(0, 2, 4), checkpoint_every=2, log_every=1), model=model,
            dataset=data, optimizer=opt, num_workers=0, final_path=final,
            loss_fn=lambda b: {"loss": torch.nn.functional.mse_loss(model(b["x"]), b["y"])})
    finally:
        loop.save_checkpoint = real_save
    snaps = {k: torch.load(snapshot_path(final, k), weights_only=True) for k in (0, 2, 4)}
    assert sorted(p.name for p in final.parent.iterdir()) == ["model.iter0.pth", "model.iter2.pth",
                                                              "model.iter4.pth", "model.pth"]
    for k in start:
        assert torch.equal(snaps[0][k], start[k])
        assert torch.equal(snaps[2][k], captured[2][k]) and not torch.equal(snaps[2][k], start[k])
        assert torch.equal(snaps[4][k], torch.load(final, weights_only=True)[k])


class _Pairs(torch.utils.data.Dataset):
    """10 items {x [3], y [1]} of a fixed linear relation plus noise."""

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(10, 3, generator=g)
        self.y = self.x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(10, 1, generator=g)

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def _fit(tmp_path, name: str):
    from tool.engine.config import TrainRecipe
    from tool.engine.paths import WorkPaths
    from tool.engine.runtime import Context
    from tool.engine.train_loop import fit

    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    ctx = Context(paths=WorkPaths(tmp_path / name), device=torch.device("cpu"), rank=0, world_size=1, seed=0,
                  step="train_toy", digest="d")
    recipe = TrainRecipe(batch_size=2, epochs=1, lr=0.05, momentum=0.9, checkpoint_every=2, log_every=1)

    def loss_fn(batch):
        return {"loss": torch.nn.functional.mse_loss(model(batch["x"]), batch["y"])}

    optimizer = sgd([{"params": list(model.parameters()), "lr": 0.05}], momentum=0.9, weight_decay=0.0)
    out = fit(ctx, recipe, model=model, dataset=_Pairs(), optimizer=optimizer, loss_fn=loss_fn,
              final_path=tmp_path / name / "model.pth", num_workers=0)
    return out, model


def test_summary_after_a_resume_describes_the_whole_run(tmp_path, monkeypatch):
    """Killed at step 3 of 5 (checkpoint at 2), resumed: the weights and the summary loss (mean of the epoch)
    are those of the uninterrupted run, and its image count covers all 5 steps."""
    from tool.engine import train_loop

    ref, ref_model = _fit(tmp_path, "ref")

    crash_training_at(monkeypatch, 3, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        _fit(tmp_path, "run")
    monkeypatch.setattr(train_loop, "_after_step", lambda step: None)
    out, model = _fit(tmp_path, "run")
    assert torch.equal(model.weight, ref_model.weight)
    assert out["steps"] == ref["steps"] == 5 and out["loss"] == ref["loss"]
    assert out["images"] == ref["images"] == 10                      # 5 steps × 2 images, 3 of them after the resume
