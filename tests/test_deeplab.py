"""DeepLabV2 pieces: dilated ResNet-101 geometry, ASPP, MSC fusion, optimiser groups, weight key maps,
label shrinking, training crops, the dense CRF at evaluation and the VOC submission tree."""
from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from net.deeplab import (
    ASPP,
    DeepLabV2,
    DeepLabV2MSC,
    DilatedResNet,
    build_deeplab,
    load_pretrained,
    load_trained,
    map_caffe_state,
    masked_cross_entropy,
    normalize_input,
    optimizer_groups,
    predict_logits,
    resize_labels,
)
from net.weights import CheckpointMismatch
from tool.data.palette import load_label_png, save_label_png, voc_palette
from tool.data.seg_data import scale_crop_flip
from tool.engine.lr import sgd
from voc12.voc_submission import archive_submission, submission_dir, write_submission

TINY = (1, 1, 1, 1)


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


# ------------------------------------------------------------------------------------------------
# geometry
# ------------------------------------------------------------------------------------------------

def test_resnet101_stages_strides_and_dilations():
    net = DilatedResNet()                                   # ResNet-101, torchvision style
    assert [len(layer) for layer in (net.layer1, net.layer2, net.layer3, net.layer4)] == [3, 4, 23, 3]
    assert sum(p.numel() for p in net.parameters()) == 42_500_160   # torchvision resnet101 minus its fc
    for name, layer, dil in (("layer1", net.layer1, 1), ("layer2", net.layer2, 1), ("layer3", net.layer3, 2),
                             ("layer4", net.layer4, 4)):
        for i, block in enumerate(layer):
            # every block of a stage is dilated, the first included (DeepLab's prototxt)
            assert block.conv2.dilation == (dil, dil) and block.conv2.padding == (dil, dil), (name, i)
            stride = 2 if (name, i) == ("layer2", 0) else 1
            assert block.conv2.stride == (stride, stride) and block.conv1.stride == (1, 1), (name, i)
    assert net.layer2[0].downsample[0].stride == (2, 2)
    assert net.layer3[0].downsample[0].stride == (1, 1) and net.layer4[0].downsample[0].stride == (1, 1)
    caffe = DilatedResNet(TINY, style="caffe")
    assert caffe.layer2[0].conv1.stride == (2, 2) and caffe.layer2[0].conv2.stride == (1, 1)
    assert caffe.maxpool.ceil_mode and not net.maxpool.ceil_mode


@torch.no_grad()
def test_output_stride_8():
    # conv1 /2, max-pool /2, layer2 /2; layers 3-4 keep the size
    model = DeepLabV2(21, blocks=TINY).eval()
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 21, 8, 8)
    assert model(torch.zeros(1, 3, 65, 81)).shape == (1, 21, 9, 11)          # ceil(65/8), ceil(81/8)
    assert model(torch.zeros(1, 3, 321, 321)).shape[-2:] == (41, 41)
    # caffe style, by hand: 64 -> conv 32 -> ceil-mode pool ceil(31/2)+1 = 17 -> 1x1 stride 2: 9
    assert DeepLabV2(21, blocks=TINY, style="caffe").eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 21, 9, 9)
    full = DeepLabV2(21).eval()                                              # the real ResNet-101
    assert full(torch.zeros(1, 3, 33, 41)).shape == (1, 21, 5, 6)


@torch.no_grad()
def test_aspp_rates_sum_and_init():
    torch.manual_seed(0)
    aspp = ASPP(2048, 21)
    assert len(aspp.convs) == 4
    for conv, r in zip(aspp.convs, (6, 12, 18, 24)):
        assert conv.kernel_size == (3, 3) and conv.dilation == (r, r) and conv.padding == (r, r)
        assert conv.in_channels == 2048 and conv.out_channels == 21 and conv.bias is not None
        assert torch.all(conv.bias == 0)
        assert abs(float(conv.weight.std()) - 0.01) < 0.0005 and abs(float(conv.weight.mean())) < 0.0005
    small = ASPP(8, 3)
    x = torch.randn(2, 8, 30, 30)
    ref = sum(F.conv2d(x, c.weight, c.bias, padding=r, dilation=r) for c, r in zip(small.convs, (6, 12, 18, 24)))
    assert torch.allclose(small(x), ref, atol=1e-6)
    # the rate-24 branch reaches 24 pixels away: a single input pixel moves outputs 24 pixels off
    x = torch.zeros(1, 8, 60, 60)
    x[0, :, 30, 30] = 1.0
    out = small.convs[3](x) - small.convs[3].bias.view(1, -1, 1, 1)
    assert out[0, :, 30 - 24, 30].abs().sum() > 0 and out[0, :, 30 - 23, 30].abs().sum() == 0


class _Stride8(nn.Module):
    """A stand-in base: 8×8 average pooling and a fixed 1×1 conv (2 classes)."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AvgPool2d(8, ceil_mode=True)
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x):
        return self.conv(self.pool(x))


@torch.no_grad()
def test_msc_outputs_and_max_fusion():
    torch.manual_seed(0)
    base = _Stride8()
    msc = DeepLabV2MSC(base, (0.75, 0.5))
    x = torch.randn(2, 3, 32, 48)
    outs = msc(x)
    assert len(outs) == 4
    # by hand: 32×48 -> 4×6; 0.75: 24×36 -> 3×5 (ceil); 0.5: 16×24 -> 2×3
    assert [tuple(o.shape[-2:]) for o in outs] == [(4, 6), (3, 5), (2, 3), (4, 6)]
    x75 = F.interpolate(x, size=(24, 36), mode="bilinear", align_corners=False)
    x50 = F.interpolate(x, size=(16, 24), mode="bilinear", align_corners=False)
    assert torch.allclose(outs[1], base(x75)) and torch.allclose(outs[2], base(x50))
    up = [F.interpolate(base(s), size=(4, 6), mode="bilinear", align_corners=False) for s in (x75, x50)]
    ref = torch.maximum(base(x), torch.maximum(*up))
    assert torch.equal(outs[3], ref)
    assert (outs[3] > outs[0]).any()          # the smaller scales do win some pixels
    # inference: MSC = the fused output; flip averages with the mirrored input's logits
    assert torch.equal(predict_logits(msc, x, msc=True, flip=False), outs[3])
    assert torch.equal(predict_logits(msc, x, msc=False, flip=False), base(x))
    flip = predict_logits(msc, x, msc=False, flip=True)
    assert torch.allclose(flip, 0.5 * (base(x) + base(x.flip(-1)).flip(-1)), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# training: parameters, lr groups, loss, labels, inputs
# ------------------------------------------------------------------------------------------------

def test_frozen_bn_and_optimizer_groups():
    model = build_deeplab(21, blocks=TINY)
    base = model.base
    groups = optimizer_groups(base, 2.5e-4, 5e-4)
    opt = sgd(groups, momentum=0.9, weight_decay=5e-4)
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {"backbone", "aspp_weight", "aspp_bias"}
    assert (by_name["backbone"]["lr"], by_name["backbone"]["weight_decay"]) == (2.5e-4, 5e-4)
    assert by_name["aspp_weight"]["lr"] == pytest.approx(2.5e-3) and by_name["aspp_weight"]["weight_decay"] == 5e-4
    assert by_name["aspp_bias"]["lr"] == pytest.approx(5e-3) and by_name["aspp_bias"]["weight_decay"] == 0.0
    assert all(g["initial_lr"] == g["lr"] for g in opt.param_groups) and opt.defaults["momentum"] == 0.9
    ids = {name: {id(p) for p in g["params"]} for name, g in by_name.items()}
    convs = {id(m.weight) for m in base.backbone.modules() if isinstance(m, nn.Conv2d)}
    assert ids["backbone"] == convs
    assert ids["aspp_weight"] == {id(c.weight) for c in base.aspp.convs}
    assert ids["aspp_bias"] == {id(c.bias) for c in base.aspp.convs}
    bn = [p for m in base.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()]
    assert bn and not any(p.requires_grad for p in bn)
    assert {id(p) for p in model.parameters() if p.requires_grad} == set().union(*ids.values())

    # one step: BN parameters and statistics stay, convs and ASPP move
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    x = torch.randn(2, 3, 32, 32)
    labels = torch.randint(0, 21, (2, 32, 32))
    loss = sum(masked_cross_entropy(o, resize_labels(labels, tuple(o.shape[-2:]))) for o in model(x))
    loss.backward()
    opt.step()
    after = model.state_dict()
    bn_modules = {name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(bn_modules) == 1 + 4 * 3 + 4        # stem + 3 per bottleneck + one per shortcut
    for k, old in before.items():
        changed = not torch.equal(old, after[k])
        if k.rsplit(".", 1)[0] in bn_modules:
            assert not changed, k                   # affine parameters and running statistics alike
        else:
            assert changed, k

    trainable_bn = build_deeplab(21, blocks=TINY, bn="batch").base
    g = {x["name"]: x for x in optimizer_groups(trainable_bn, 1e-3, 5e-4)}
    assert g["bn"]["weight_decay"] == 0.0 and g["bn"]["lr"] == 1e-3
    assert {id(p) for p in g["bn"]["params"]} == {id(p) for m in trainable_bn.modules()
                                                    if isinstance(m, nn.BatchNorm2d) for p in m.parameters()}


def test_labels_shrink_like_pil_nearest():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 21, size=(2, 64, 80)).astype(np.uint8)
    labels[0, :5] = 255
    for size in ((8, 10), (6, 8), (41, 41), (64, 80)):
        got = resize_labels(torch.from_numpy(labels), size)
        assert got.dtype == torch.int64 and tuple(got.shape) == (2, *size)
        for n in range(2):   # deeplab-pytorch's resize_labels: PIL NEAREST, (W, H) order
            ref = np.asarray(Image.fromarray(labels[n]).resize((size[1], size[0]), resample=Image.NEAREST))
            assert np.array_equal(got[n].numpy(), ref), size


def test_masked_cross_entropy():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 4, 4)
    labels = torch.randint(0, 5, (2, 4, 4))
    labels[0, 0] = 255
    assert torch.allclose(masked_cross_entropy(logits, labels), F.cross_entropy(logits, labels, ignore_index=255))
    assert masked_cross_entropy(logits, torch.full((2, 4, 4), 255)).item() == 0.0


def test_input_normalisation_styles():
    img = torch.tensor([[[[10]], [[120]], [[250]]]], dtype=torch.uint8)        # one RGB pixel
    tv = normalize_input(img, None, "torchvision")[0, :, 0, 0]
    ref = (torch.tensor([10, 120, 250]) / 255.0 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor(
        [0.229, 0.224, 0.225])
    assert torch.allclose(tv, ref)
    caffe = normalize_input(img, None, "caffe")[0, :, 0, 0]                      # BGR, 0-255, minus the mean
    assert torch.allclose(caffe, torch.tensor([250 - 104.008, 120 - 116.669, 10 - 122.675]))
    pad = normalize_input(img, torch.zeros(1, 1, 1, dtype=torch.uint8), "caffe")
    assert torch.all(pad == 0)                                                   # padding = the mean pixel
    with pytest.raises(ValueError, match=r"deeplab.pretrained_format: unknown value 'bgr'; expected one of"):
        normalize_input(img, None, "bgr")                # a library caller's typo (the config refuses it at load)


def test_scale_crop_flip_keeps_image_and_label_aligned():
    h, w = 40, 56
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(w) * 4)[None, :]              # column code
    img[..., 1] = (np.arange(h) * 6)[:, None]              # row code
    label = (img[..., 0] // 32).astype(np.uint8)           # a label that is a function of the pixel
    for seed in range(6):
        rng = np.random.default_rng(seed)
        out, valid, lab = scale_crop_flip(img, label, scale=1.0, crop=32, hflip=True, rng=rng)
        assert out.shape == (32, 32, 3) and valid.all()
        assert np.array_equal(lab, out[..., 0] // 32)
        rows = out[:, 0, 1] // 6
        assert np.array_equal(np.diff(rows), np.ones(31))  # a contiguous window of rows
    # smaller than the crop: the image top-left, mean padding (valid 0, pixels 0) and label 255 elsewhere
    flipped = False
    for seed in range(8):
        out, valid, lab = scale_crop_flip(img, label, scale=0.5, crop=32, hflip=True, rng=np.random.default_rng(seed))
        assert valid[:20].sum() == 20 * 28 and valid.sum() == 20 * 28
        cols = np.nonzero(valid[0])[0]
        flipped |= cols[0] > 0
        assert cols.tolist() in (list(range(28)), list(range(4, 32)))
        assert np.all(lab[valid == 0] == 255) and np.all(out[valid == 0] == 0) and np.all(lab[valid == 1] < 255)
    assert flipped


# ------------------------------------------------------------------------------------------------
# weights
# ------------------------------------------------------------------------------------------------

def _deeplab_pytorch_names(prefix: str = "", shortcut: str = "shortcut",
                           blocks: tuple[int, ...] = (3, 4, 23, 3)) -> list[tuple[str, tuple[int, ...]]]:
    """deeplab-pytorch's DeepLabV1/V2 ResNet-101 parameter names and shapes, written from its resnet.py."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")

    def bn_keys(name, ch):
        return [(f"{name}.bn.{k}", () if k == "num_batches_tracked" else (ch,)) for k in bn]

    out = [(f"{prefix}layer1.conv1.conv.weight", (64, 3, 7, 7))] + bn_keys(f"{prefix}layer1.conv1", 64)
    in_ch = 64
    for layer, n, mid in zip(range(2, 6), blocks, (64, 128, 256, 512)):
        for b in range(1, n + 1):
            p = f"{prefix}layer{layer}.block{b}"
            cin = in_ch if b == 1 else mid * 4
            out += [(f"{p}.reduce.conv.weight", (mid, cin, 1, 1))] + bn_keys(f"{p}.reduce", mid)
            out += [(f"{p}.conv3x3.conv.weight", (mid, mid, 3, 3))] + bn_keys(f"{p}.conv3x3", mid)
            out += [(f"{p}.increase.conv.weight", (mid * 4, mid, 1, 1))] + bn_keys(f"{p}.increase", mid * 4)
            if b == 1:
                out += [(f"{p}.{shortcut}.conv.weight", (mid * 4, in_ch, 1, 1))] + bn_keys(f"{p}.{shortcut}", mid * 4)
        in_ch = mid * 4
    return out


def test_caffe_key_map_loads_deeplab_pytorch_init(tmp_path):
    names = _deeplab_pytorch_names()
    # DeepLabV1 COCO init: the backbone plus a 1×1 classifier of 91 COCO classes, which is dropped
    state = {k: torch.full(s, float(i)) if s else torch.tensor(i) for i, (k, s) in enumerate(names)}
    state["fc.weight"], state["fc.bias"] = torch.zeros(91, 2048, 1, 1), torch.zeros(91)
    path = tmp_path / "deeplabv1_resnet101-coco.pth"
    torch.save(state, path)
    model = DeepLabV2(21, style="caffe")
    aspp_before = model.aspp.convs[0].weight.clone()
    assert str(path) in load_pretrained(model, str(path), "caffe")
    idx = {k: i for i, (k, _) in enumerate(names)}
    bb = model.backbone
    checks = {
        "layer1.conv1.conv.weight": bb.conv1.weight, "layer1.conv1.bn.running_var": bb.bn1.running_var,
        "layer2.block1.reduce.conv.weight": bb.layer1[0].conv1.weight,
        "layer2.block1.shortcut.conv.weight": bb.layer1[0].downsample[0].weight,
        "layer2.block1.shortcut.bn.bias": bb.layer1[0].downsample[1].bias,
        "layer3.block1.reduce.conv.weight": bb.layer2[0].conv1.weight,      # the stride-2 1×1 conv
        "layer4.block23.conv3x3.conv.weight": bb.layer3[22].conv2.weight,
        "layer4.block23.conv3x3.bn.running_mean": bb.layer3[22].bn2.running_mean,
        "layer5.block3.increase.conv.weight": bb.layer4[2].conv3.weight,
        "layer5.block3.increase.bn.weight": bb.layer4[2].bn3.weight,
    }
    for k, t in checks.items():
        assert torch.all(t == idx[k]), k
    # a bijection: every backbone tensor got its own source tensor
    loaded = {float(v.reshape(-1)[0]) for v in bb.state_dict().values()}
    assert loaded == set(map(float, range(len(names))))
    assert torch.equal(model.aspp.convs[0].weight, aspp_before)               # the ASPP keeps its N(0, 0.01)

    with pytest.raises(ValueError, match="pretrained"):
        load_pretrained(DeepLabV2(21, blocks=TINY), str(path), "caffe")       # caffe weights, torchvision net


def test_a_pretrained_key_is_read_one_way_by_resnet50_and_deeplab(tmp_path, monkeypatch):
    """``*.pretrained``: "imagenet" downloads torchvision's weights, anything else is a state-dict path
    (net.resnet50.read_pretrained, for cam / irn and deeplab alike); DeepLab also unwraps a checkpoint's
    ``state_dict`` and refuses "imagenet" for caffe inputs before downloading anything."""
    import net.resnet50 as r50

    source_net = DeepLabV2(21, blocks=TINY)
    torchvision = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
                   for k, v in source_net.backbone.state_dict().items()}
    torchvision["fc.weight"] = torch.zeros(1000, 2048)
    downloads = []
    monkeypatch.setattr(r50, "download_state_dict", lambda url, key, what: downloads.append((url, key)) or torchvision)

    state, source = r50.read_pretrained("imagenet", "cam.pretrained", "https://x/r50.pth", "ImageNet R50")
    assert state is torchvision and source == "ImageNet R50 (https://x/r50.pth)"
    torch.save({"a": torch.zeros(2)}, tmp_path / "w.pth")
    state, source = r50.read_pretrained(str(tmp_path / "w.pth"), "cam.pretrained", "unused", "unused")
    assert list(state) == ["a"] and source == str(tmp_path / "w.pth")
    with pytest.raises(FileNotFoundError, match=r"^cam.pretrained: no file at .*nope.pth; give 'imagenet', a state"):
        r50.read_pretrained(str(tmp_path / "nope.pth"), "cam.pretrained", "unused", "unused")

    model = DeepLabV2(21, blocks=TINY)
    assert load_pretrained(model, "imagenet", "torchvision") == \
        "torchvision ImageNet ResNet-101 (https://download.pytorch.org/models/resnet101-63fe2227.pth)"
    assert torch.all(model.backbone.conv1.weight == 0.5) and downloads[-1][1] == "deeplab.pretrained"
    torch.save({"state_dict": torchvision, "epoch": 3}, tmp_path / "ckpt.pth")
    model = DeepLabV2(21, blocks=TINY)
    described = load_pretrained(model, str(tmp_path / "ckpt.pth"), "torchvision")
    assert described == f"{tmp_path / 'ckpt.pth'} (torchvision layout)"
    assert torch.all(model.backbone.layer4[0].conv2.weight == 0.5)
    with pytest.raises(ValueError, match="'imagenet' means torchvision's ResNet-101"):
        load_pretrained(DeepLabV2(21, blocks=TINY, style="caffe"), "imagenet", "caffe")
    assert len(downloads) == 2


def test_caffe_key_map_old_layout_and_errors(tmp_path):
    # older deeplab-pytorch layout: scale. prefix, proj shortcut, no num_batches_tracked
    names = [(k, s) for k, s in _deeplab_pytorch_names("scale.", "proj", TINY) if not k.endswith("num_batches_tracked")]
    state = {k: torch.full(s, float(i)) for i, (k, s) in enumerate(names)}
    torch.save(state, tmp_path / "old.pth")
    model = DeepLabV2(21, blocks=TINY, style="caffe")
    load_pretrained(model, str(tmp_path / "old.pth"), "caffe")
    idx = {k: i for i, (k, _) in enumerate(names)}
    bb = model.backbone
    assert torch.all(bb.layer3[0].downsample[1].running_var == idx["scale.layer4.block1.proj.bn.running_var"])
    assert torch.all(bb.layer4[0].conv2.weight == idx["scale.layer5.block1.conv3x3.conv.weight"])

    # a missing tensor or an unknown key fails naming it
    del state["scale.layer5.block1.increase.bn.weight"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointMismatch, match=r"layer4\.0\.bn3\.weight"):
        load_pretrained(DeepLabV2(21, blocks=TINY, style="caffe"), str(tmp_path / "missing.pth"), "caffe")
    with pytest.raises(ValueError, match="layer6.block1.foo.weight"):
        map_caffe_state({**state, "layer6.block1.foo.weight": torch.zeros(1)})


def test_deeplab_pytorch_voc_model_loads_whole(tmp_path):
    """A trained deeplab-pytorch DeepLabV2-MSC (``base.`` prefix, ``aspp.c0..c3``) loads for evaluation."""
    names = _deeplab_pytorch_names(prefix="base.")
    state = {k: torch.full(s, 0.5) if s else torch.tensor(0) for k, s in names}
    for i in range(4):
        state[f"base.aspp.c{i}.weight"] = torch.full((21, 2048, 3, 3), float(i))
        state[f"base.aspp.c{i}.bias"] = torch.full((21,), 10.0 + i)
    torch.save(state, tmp_path / "voc.pth")
    model = build_deeplab(21, style="caffe")
    load_trained(model, tmp_path / "voc.pth", "deeplab_eval.model")
    assert torch.all(model.base.aspp.convs[3].bias == 13.0) and torch.all(model.base.aspp.convs[2].weight == 2.0)
    assert torch.all(model.base.backbone.layer4[0].conv2.weight == 0.5)
    with pytest.raises(ValueError, match="pretrained_format: caffe"):
        load_trained(build_deeplab(21), tmp_path / "voc.pth", "deeplab_eval.model")


def test_torchvision_resnet101_loads_and_matches_torchvision(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    tv = torchvision.models.resnet101(weights=None).eval()
    torch.save(tv.state_dict(), tmp_path / "resnet101.pth")
    model = DeepLabV2(21).eval()
    load_pretrained(model, str(tmp_path / "resnet101.pth"), "torchvision")
    # undilated up to layer2 our backbone is torchvision's: same features from the same weights
    x = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        bb = model.backbone
        ours = bb.layer2(bb.layer1(bb.maxpool(bb.relu(bb.bn1(bb.conv1(x))))))
        ref = tv.layer2(tv.layer1(tv.maxpool(tv.relu(tv.bn1(tv.conv1(x))))))
    assert torch.allclose(ours, ref, atol=1e-5)

    def offline(*a, **k):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"deeplab\.pretrained.*resnet101-63fe2227\.pth"):
        load_pretrained(DeepLabV2(21, blocks=TINY), "imagenet", "torchvision")
    with pytest.raises(ValueError, match="converted deeplab-pytorch"):
        load_pretrained(DeepLabV2(21, blocks=TINY, style="caffe"), "imagenet", "caffe")
    with pytest.raises(FileNotFoundError, match="deeplab.pretrained"):
        load_pretrained(DeepLabV2(21, blocks=TINY), str(tmp_path / "nope.pth"), "torchvision")


# ------------------------------------------------------------------------------------------------
# evaluation: CRF, submission tree
# ------------------------------------------------------------------------------------------------

def test_crf_moves_a_blurred_boundary_onto_the_image_edge(tmp_path):
    from step.eval_deeplab import finish_image

    h, w, edge = 40, 48, 20
    rng = np.random.default_rng(0)
    img = np.where(np.arange(w)[None, :, None] < edge, 40, 210).astype(np.int16) + rng.integers(-4, 5, (h, w, 3))
    img = np.broadcast_to(img, (h, w, 3)).clip(0, 255).astype(np.uint8)
    truth = np.broadcast_to((np.arange(w) >= edge).astype(np.uint8), (h, w))
    # the network's guess: a soft boundary 6 pixels right of the edge
    p1 = 1.0 / (1.0 + np.exp(-(np.arange(w) - (edge + 6)) / 3.0))
    probs = np.stack([1 - p1, p1])[:, None, :].repeat(h, axis=1).astype(np.float32)      # [2, H, W]
    before = (probs.argmax(0) == truth).mean()
    gt = tmp_path / "gt.png"
    save_label_png(gt, truth.copy())
    crf = {"t": 10, "gaussian_sxy": 1, "gaussian_compat": 3, "bilateral_sxy": 67, "bilateral_srgb": 3,
           "bilateral_compat": 4}
    conf = finish_image({"out": str(tmp_path / "pred.png"), "gt": str(gt), "num_classes": 2, "img": img,
                         "probs": probs, "crf": crf})
    after = np.trace(conf) / conf.sum()
    pred = load_label_png(tmp_path / "pred.png")
    assert before < 0.9 and after > 0.98 and after > before
    assert np.array_equal(np.diag(conf).sum(), (pred == truth).sum())


def test_eval_crf_section_wires_each_key_to_its_crf_argument():
    import dataclasses
    import inspect

    from tool.engine.config import DeepLabEvalConfig
    from tool.seg.crf import crf_inference_prob, crf_kwargs

    # the config's defaults are the CRF's own (deeplab-pytorch's DenseCRF settings) ...
    params = inspect.signature(crf_inference_prob).parameters
    defaults = {k: params[k].default for k in params if k not in ("img", "probs")}
    assert crf_kwargs(DeepLabEvalConfig().crf, labels=False) == defaults
    # ... and every key reaches its own argument (distinct values, so a crossed wire shows)
    keys = {"t": "iterations", **{k: k for k in defaults if k != "t"}}
    c = dataclasses.replace(DeepLabEvalConfig().crf, **{keys[k]: i + 1 for i, k in enumerate(sorted(keys))})
    assert crf_kwargs(c, labels=False) == {k: i + 1 for i, k in enumerate(sorted(keys))}
    assert crf_kwargs(dataclasses.replace(c, enabled=False), labels=False) is None


def test_voc_submission_tree(tmp_path):
    preds = tmp_path / "pred"
    sizes = {"2008_000001": (30, 40), "2008_000002": (25, 17)}
    rng = np.random.default_rng(0)
    for i, (hh, ww) in sizes.items():
        save_label_png(preds / f"{i}.png", rng.integers(0, 21, (hh, ww)).astype(np.uint8))
    results = tmp_path / "results"
    sub = write_submission(preds, list(sizes), results, comp="comp6", split="test", image_sizes=sizes)
    assert sub == results / "VOC2012" / "Segmentation" / "comp6_test_cls"
    assert sorted(p.name for p in sub.iterdir()) == ["2008_000001.png", "2008_000002.png"]
    for i, (hh, ww) in sizes.items():
        with Image.open(sub / f"{i}.png") as im:
            assert im.mode == "P" and im.size == (ww, hh)
            pal = np.array(im.getpalette()[:21 * 3], np.uint8).reshape(21, 3)
            assert np.array_equal(pal, voc_palette(21))
            assert np.array_equal(np.asarray(im), load_label_png(preds / f"{i}.png"))
    assert tuple(voc_palette(21)[15]) == (192, 128, 128)          # person, as the devkit colours it
    archive = archive_submission(sub, tmp_path / "results_comp6_test.tar.gz")
    with tarfile.open(archive) as tar:
        members = sorted(m.name for m in tar.getmembers() if m.isfile())
    assert members == [f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in sorted(sizes)]
    assert submission_dir(results, "comp5", "test").name == "comp5_test_cls"
    with pytest.raises(ValueError, match="comp7"):
        submission_dir(results, "comp7")
    bad = np.zeros((30, 40), np.uint8)
    bad[0, 0] = 255
    save_label_png(preds / "2008_000001.png", bad)
    with pytest.raises(ValueError, match="no ignore label"):
        write_submission(preds, list(sizes), results, image_sizes=sizes)
    with pytest.raises(ValueError, match="differs from the image size"):
        write_submission(preds, ["2008_000002"], results, image_sizes={"2008_000002": (17, 25)})


@pytest.mark.parametrize("pretrained, dilation", [("cam_baseline", 2), ("imagenet", 4)])
def test_layer4_dilation_follows_the_initial_weights(pretrained, dilation):
    """The CAM classifier runs layer4 at stride 1 without dilation (output stride 16); at DeepLab's output
    stride 8 the same kernels must be dilated by 2, so that DeepLab's layer4 on the stride-8 features,
    read at every other position, is exactly the classifier's layer4 on the stride-16 features. ImageNet
    weights (layer4 at stride 2) need 4."""
    from net.deeplab import build_model
    from net.resnet50 import ResNet50
    from tool.engine.config import load_config
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"),
                      [f"deeplab.pretrained={pretrained}", "deeplab.blocks=[3,4,6,3]"])
    layer4 = build_model(cfg.deeplab, 21).base.backbone.layer4.eval()
    assert {b.conv2.dilation for b in layer4} == {(dilation, dilation)}
    if pretrained != "cam_baseline":
        return
    torch.manual_seed(0)
    cam = ResNet50(strides=(2, 2, 2, 1)).layer4.eval()
    for m in cam.modules():          # non-trivial BN statistics, shared by both
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    layer4.load_state_dict(cam.state_dict())
    x8 = torch.randn(1, 1024, 10, 12)                     # stride-8 features; stride 16 = every other one
    with torch.no_grad():
        ours = layer4(x8)[..., ::2, ::2]
        ref = cam(x8[..., ::2, ::2])
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5)


def test_aspp_starts_as_the_cam_classifier():
    """With the CAM classifier's head in the centre taps, DeepLab's ASPP outputs, at every position,
    a zero background logit and the classifier's CAM logits W·x (even at the border, where the
    dilated taps fall into the padding)."""
    from net.deeplab import ASPP, init_aspp_from_classifier
    torch.manual_seed(0)
    aspp = ASPP(16, 5, rates=(1, 2, 3))
    w = torch.randn(4, 16, 1, 1)
    init_aspp_from_classifier(aspp, w)
    x = torch.randn(2, 16, 6, 7)
    with torch.no_grad():
        out = aspp(x)
    ref = torch.einsum("ck,nkhw->nchw", w[:, :, 0, 0], x)
    torch.testing.assert_close(out[:, 1:], ref, rtol=1e-5, atol=1e-5)
    assert out[:, 0].abs().max() == 0
    with pytest.raises(ValueError, match="does not fit an ASPP of 5 classes"):
        init_aspp_from_classifier(aspp, torch.randn(5, 16))


def _cam_like(classes: int = 4) -> torch.nn.Module:
    """A CAM classifier with non-trivial BN statistics (as a trained one has)."""
    from net.resnet50_cam import CAMNet
    torch.manual_seed(0)
    cam = CAMNet(classes, pretrained=None).eval()
    for m in cam.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return cam


def test_output_stride_16_from_the_classifier_is_the_classifier():
    """deeplab.output_stride 16 with pretrained cam_baseline: the backbone has the classifier's own geometry (layer3
    strided, nothing dilated), so DeepLab at iteration 0 gives exactly the classifier's CAM logits W·x on the
    classifier's stride-16 grid, and 0 for the background. At output stride 8 it cannot (layer3's first block is
    dilated where the classifier strided), so the two are compared at stride 16 only."""
    from net.deeplab import build_model, init_aspp_from_classifier
    from tool.engine.config import load_config
    cam = _cam_like()
    cfg = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"),
                      ["deeplab.output_stride=16", "deeplab.atrous_rates=[1,2,3,4]", "deeplab.msc_scales=[]"])
    model = build_model(cfg.deeplab, 5).eval()
    bb = model.base.backbone
    assert [bb.layer3[0].conv2.stride, bb.layer3[0].conv2.dilation, bb.layer4[1].conv2.dilation] == \
        [(2, 2), (1, 1), (1, 1)]
    bb.load_state_dict({k[len("backbone."):]: v for k, v in cam.state_dict().items() if k.startswith("backbone.")})
    init_aspp_from_classifier(model.base.aspp, cam.classifier.weight)
    x = torch.randn(1, 3, 64, 80)
    with torch.no_grad():
        outs = model(x)
        ref = F.conv2d(cam.features(x), cam.classifier.weight)                       # [1, 4, 4, 5]
    assert len(outs) == 1 and outs[0].shape == (1, 5, 4, 5)                          # no extra scales: one output
    torch.testing.assert_close(outs[0][:, 1:], ref, rtol=1e-4, atol=1e-4)
    assert outs[0][:, 0].abs().max() == 0


def test_frozen_stages_leave_the_optimiser_and_keep_their_weights():
    model = build_deeplab(3, blocks=(1, 1, 1, 1), rates=(1, 2), frozen_stages=3)
    groups = {g["name"]: g["params"] for g in optimizer_groups(model.base, 0.1, 0.0)}
    bb = model.base.backbone
    assert {id(p) for p in groups["backbone"]} == {id(p) for p in bb.layer4.parameters() if p.requires_grad} != set()
    assert not any(p.requires_grad for m in (bb.conv1, bb.layer1, bb.layer2, bb.layer3)
                                 for p in m.parameters())
    before = {k: v.clone() for k, v in bb.state_dict().items()}
    opt = sgd(optimizer_groups(model.base, 0.1, 0.0), momentum=0.9, weight_decay=0.0)
    model.train()
    model(torch.randn(2, 3, 48, 48))[0].square().mean().backward()
    opt.step()
    moved = {k for k, v in bb.state_dict().items() if not torch.equal(v, before[k])}
    assert moved and all(k.startswith("layer4.") for k in moved)
    with pytest.raises(ValueError, match="frozen_stages needs deeplab.bn: fixed"):
        build_deeplab(3, blocks=(1, 1, 1, 1), bn="batch", frozen_stages=1)


def test_one_norm_layer_serves_every_bn_mode():
    """cam.bn, ritc.bn and deeplab.bn (ResNet-50, DeepLabV2, WR38) all map the mode through net.resnet50.norm_layer,
    the one library check of it (the config checks it at load)."""
    from net.resnet50 import FixedBatchNorm, ResNet50, norm_layer
    from net.wr38 import DeepLabV1

    assert norm_layer("fixed") is FixedBatchNorm and norm_layer("batch") is nn.BatchNorm2d
    bn = norm_layer("batch", 3e-4)(8)
    assert type(bn) is nn.BatchNorm2d and bn.momentum == 3e-4 and bn.num_features == 8
    assert type(build_deeplab(3, blocks=(1, 1, 1, 1), bn="batch").base.backbone.bn1) is nn.BatchNorm2d
    assert type(build_deeplab(3, blocks=(1, 1, 1, 1), bn="fixed").base.backbone.bn1) is FixedBatchNorm
    for build in (lambda: ResNet50(bn="sync"), lambda: build_deeplab(3, blocks=(1, 1, 1, 1), bn="sync"),
                  lambda: DeepLabV1(21, bn="sync", width_div=16)):
        with pytest.raises(ValueError, match=r"unknown BatchNorm mode 'sync': expected one of \('fixed', 'batch'\)"):
            build()


def test_background_prior_makes_the_label_share_background(tmp_path):
    """deeplab.init_bg_prior: after it, the share of labelled cells the model calls background equals the labels'
    background share (here 60 %), where before it every cell with a positive class logit was foreground."""
    from net.deeplab import init_aspp_from_classifier
    from step.train_deeplab import init_background_prior
    from tool.engine.config import DeepLabConfig

    cam = _cam_like(3)
    model = build_deeplab(4, blocks=(3, 4, 6, 3), rates=(1, 2), msc_scales=(), output_stride=16,
                          layer4_dilation=2)
    model.base.backbone.load_state_dict({k[9:]: v for k, v in cam.state_dict().items() if k.startswith("backbone.")})
    init_aspp_from_classifier(model.base.aspp, cam.classifier.weight)
    rng = np.random.default_rng(0)

    class Images:
        def image_path(self, image_id):
            return tmp_path / f"{image_id}.png"
    ids = [f"im{i}" for i in range(5)]
    for i in ids:
        Image.fromarray(rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        label = np.where(rng.random((64, 80)) < 0.6, 0, 1 + rng.integers(0, 3, (64, 80))).astype(np.uint8)
        label[:4] = 255                                       # ignored rows do not count
        save_label_png(tmp_path / "labels" / f"{i}.png", label)

    def bg_share(m):
        calls, total = 0, 0
        with torch.no_grad():
            for i in ids:
                img = np.array(Image.open(tmp_path / f"{i}.png"))
                logits = m.base.eval()(normalize_input(torch.from_numpy(img).permute(2, 0, 1)[None], None,
                                                        "torchvision"))[0]
                lab = resize_labels(torch.from_numpy(load_label_png(tmp_path / "labels" / f"{i}.png"))[None],
                                    tuple(logits.shape[-2:]))[0]
                keep = lab != 255
                calls += int((logits.argmax(0)[keep] == 0).sum())
                total += int(keep.sum())
        return calls / total, total

    before, _ = bg_share(model)
    out = init_background_prior(model, Images(), ids, tmp_path / "labels", DeepLabConfig(), torch.device("cpu"),
                                False)
    after, cells = bg_share(model)
    assert before < 0.2
    assert abs(out["bg_share"] - 0.6) < 0.05
    assert abs(after - out["bg_share"]) <= 1.0 / cells + 1e-9       # the quantile puts the split on one cell
    torch.testing.assert_close(model.base.aspp.convs[0].bias[0], torch.tensor(out["bg_bias"]), atol=1e-4, rtol=0)
