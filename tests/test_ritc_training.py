"""RITC training step: gradient flow (CAM net yes except the stem, CLIP never) and a falling loss."""
from __future__ import annotations

import pytest
import torch

from net.clip import load_clip
from net.resnet50_cam import CAMNet
from net.ritc import TextBank
from step.train_ritc import RitcLoss, to_clip_pixels
from tool.engine.config import Config, build
from tool.toy.tiny_models import write_tiny_clip


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    folder = write_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny_clip", seed=0, image_size=64)
    return load_clip(str(folder), None, device="cpu")


def make_bank(clip, num_images=4, k=20, seed=0):
    """Random unit-norm texts: every labelled pair gets 3 FG and 2 BG texts; pair (1, 5) has no BG text."""
    g = torch.Generator().manual_seed(seed)
    d = clip.embed_dim
    labels = torch.zeros(num_images, k)
    labels[0, 0] = labels[1, 5] = labels[1, 7] = labels[2, 3] = labels[3, 0] = labels[3, 19] = 1
    pi, pc = labels.nonzero(as_tuple=True)
    unit = lambda n: torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=-1)  # noqa: E731
    fg = [unit(3) for _ in pi]
    bg = [None if (i, c) == (1, 5) else unit(2) for i, c in zip(pi.tolist(), pc.tolist())]
    bank = TextBank.from_lists(unit(k), pi.tolist(), pc.tolist(), fg, bg, num_images)
    return bank, labels


def make_batch(labels, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    n = labels.shape[0]
    return {"img": torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            "valid": torch.ones(n, size, size, dtype=torch.uint8), "label": labels, "index": torch.arange(n)}


def ritc_loss(model, clip, bank, **ritc):
    cfg = build(Config, {"ritc": ritc}, "test")
    encode = lambda images, patch_mask: clip.model.encode_image(images)  # noqa: E731
    return RitcLoss(model, clip, encode, False, bank, cfg, torch.device("cpu"))


def test_gradient_flow_cam_net_but_not_clip(tiny_clip):
    torch.manual_seed(0)
    model = CAMNet(20, bn="batch").train()
    bank, labels = make_bank(tiny_clip)
    out = ritc_loss(model, tiny_clip, bank)(make_batch(labels))
    assert set(out) == {"loss", "frc", "brc", "reg"} and all(torch.isfinite(v) for v in out.values())
    out["loss"].backward()
    stem = {id(p) for p in [*model.backbone.conv1.parameters(), *model.backbone.bn1.parameters()]}
    for name, p in model.named_parameters():
        if id(p) in stem:
            assert p.grad is None, name
        else:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None and not p.requires_grad for p in tiny_clip.model.parameters())


def test_switches_zero_their_terms(tiny_clip):
    torch.manual_seed(0)
    model = CAMNet(20, bn="batch").train()
    bank, labels = make_bank(tiny_clip)
    batch = make_batch(labels)
    full = ritc_loss(model, tiny_clip, bank)(batch)
    only_reg = ritc_loss(model, tiny_clip, bank, frc=False, brc=False)(batch)
    assert only_reg["loss"].item() == pytest.approx(0.2 * only_reg["reg"].item(), rel=1e-5)
    assert full["loss"].item() == pytest.approx(
        10 * full["frc"].item() + 8 * full["brc"].item() + 0.2 * full["reg"].item(), rel=1e-5)


def test_no_positive_pair_still_backpropagates(tiny_clip):
    model = CAMNet(20, bn="batch").train()
    bank, labels = make_bank(tiny_clip)
    out = ritc_loss(model, tiny_clip, bank, frc=True)(make_batch(torch.zeros_like(labels)))
    assert out["frc"].item() == 0 and out["brc"].item() == 0
    out["loss"].backward()
    assert model.classifier.weight.grad is not None


def test_loss_falls_on_a_fixed_batch(tiny_clip):
    torch.manual_seed(0)
    model = CAMNet(20, bn="batch").train()
    bank, labels = make_bank(tiny_clip)
    batch = make_batch(labels)
    loss_fn = ritc_loss(model, tiny_clip, bank)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(6):
        out = loss_fn(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0] - 1e-3, losses


def test_clip_normalisation_maps_imagenet_to_clip(tiny_clip):
    x = torch.zeros(1, 3, 2, 2)   # ImageNet-normalised zeros are the ImageNet mean colour
    y = to_clip_pixels(x, "clip", tiny_clip)
    mean_in = torch.tensor([0.485, 0.456, 0.406])
    expect = (mean_in - torch.tensor(tiny_clip.mean)) / torch.tensor(tiny_clip.std)
    assert torch.allclose(y[0, :, 0, 0], expect, atol=1e-6)
    assert to_clip_pixels(x, "imagenet", tiny_clip) is x    # another value is refused at load (test_config)




def test_all_three_losses_off_is_refused_before_anything_loads():
    """The one value check left in train_ritc (the loader checks each key alone, not the three together)."""
    from step import train_ritc

    cfg = build(Config, {"ritc": {"frc": False, "brc": False, "reg": False}}, "test")
    with pytest.raises(ValueError, match="ritc.frc, ritc.brc and ritc.reg are all off: nothing to train"):
        train_ritc.run(cfg, None)
