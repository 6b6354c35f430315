"""DeepLabV2-ResNet-101 with multi-scale inputs (Chen et al., TPAMI 2017; recipe of kazuto1011/deeplab-pytorch).

- ``DilatedResNet``: ResNet-101 at output stride 8. ``layer3``/``layer4`` keep stride 1 and dilate
  every 3×3 conv by 2/4 (all blocks, first included, as DeepLab's prototxt). Parameter names are
  torchvision's, so ImageNet ResNet-101 weights load without a map.
- ``ASPP``: four 3×3 convs with rates 6, 12, 18, 24 from the 2048 features straight to the class
  scores, summed; weights N(0, 0.01), biases 0.
- ``DeepLabV2MSC``: the net applied to the input at 1.0, 0.75 and 0.5; the returned list holds the
  logits of each scale and their pixel-wise max (the smaller ones upsampled to the 1.0 size first).
  Training puts a cross-entropy on all four.

Two input conventions (``style``), fixed by the initialisation:

- ``torchvision``: RGB, ``(x / 255 − ImageNet mean) / std``; stride of a bottleneck on its 3×3 conv;
  max-pool with floor rounding.
- ``caffe``: the MSRA ResNet of DeepLab's caffemodels as converted by deeplab-pytorch: BGR 0–255
  minus (104.008, 116.669, 122.675); stride on the first 1×1 conv; max-pool with ceil rounding.

BatchNorm is ``FixedBatchNorm`` (running statistics only) and, with ``bn="fixed"``, not trained: the
optimiser never sees it (deeplab-pytorch's ``freeze_bn`` + the 1×/10×/20× groups of ``get_params``).
"""
from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from net.resnet50 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Bottleneck,
    freeze_stages,
    init_segmentation_backbone,
    norm_layer,
    read_pretrained,
)
from net.weights import load_state_dict_strict, read_weights
from net.wr38 import DeepLabV1

log = logging.getLogger(__name__)

# torchvision's IMAGENET1K_V1 ResNet-101.
IMAGENET101_URL = "https://download.pytorch.org/models/resnet101-63fe2227.pth"
CAFFE_MEAN_BGR = (104.008, 116.669, 122.675)
RESNET101_BLOCKS = (3, 4, 23, 3)
STYLES = ("torchvision", "caffe")
IGNORE = 255


class DilatedResNet(nn.Module):
    """ResNet at output stride 8 (or 16): x [N, 3, H, W] -> [N, 2048, ~H/8, ~W/8] (~H/16, ~W/16).

    Args:
        blocks: bottlenecks per stage; (3, 4, 23, 3) is ResNet-101 (smaller counts are for tests).
        style: ``torchvision`` or ``caffe`` (see the module docstring).
        bn: ``fixed`` (FixedBatchNorm, parameters frozen) or ``batch`` (trainable BatchNorm).
        output_stride: 8 (DeepLabV2) or 16 (layer3 keeps its stride; every dilation halves).
        frozen_stages: 0..4, the stem with layer1, then layer2, 3, 4 kept fixed (needs ``bn="fixed"``).
    """

    def __init__(self, blocks: tuple[int, ...] = RESNET101_BLOCKS, style: str = "torchvision", bn: str = "fixed",
                 layer4_dilation: int = 4, output_stride: int = 8, frozen_stages: int = 0):
        super().__init__()
        _check_choice("deeplab.pretrained_format", style, STYLES)
        norm = norm_layer(bn)
        if len(blocks) != 4 or min(blocks) < 1:
            raise ValueError(f"deeplab.blocks: need 4 positive block counts, got {tuple(blocks)}")
        self.style, self.bn_mode = style, bn
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=style == "caffe")
        self._inplanes = 64
        caffe = style == "caffe"
        # (planes, stride, dilation) of layer1..4: strides 1, 2, 1, 1 and dilations 1, 1, 2, 4 -> OS 8.
        # The dilations undo the strides the weights were trained with: ImageNet ResNets stride layer3 and
        # layer4 (×2 each: dilations 2, 4); the CAM classifier already runs layer4 at stride 1 (2, 2).
        # Output stride 16 keeps layer3's stride, so every dilation halves (ImageNet 1, 2; CAM classifier 1, 1:
        # exactly the classifier's own geometry).
        if layer4_dilation not in (2, 4):
            raise ValueError(f"layer4_dilation must be 2 or 4, got {layer4_dilation}")
        if output_stride not in (8, 16):
            raise ValueError(f"deeplab.output_stride: {output_stride} is not 8 or 16")
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f"deeplab.frozen_stages: {frozen_stages} is not in 0..4")
        if frozen_stages and bn != "fixed":
            raise ValueError("deeplab.frozen_stages needs deeplab.bn: fixed (trainable BN would still move the "
                             "frozen stages' statistics)")
        half = output_stride // 8          # 1 at OS 8, 2 at OS 16
        plan = ((64, 1, 1), (128, 2, 1), (256, half, 2 // half), (512, 1, layer4_dilation // half))
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            self._make_layer(p, n, s, d, caffe, norm) for (p, s, d), n in zip(plan, blocks))
        init_segmentation_backbone(self, bn)
        self.output_stride = output_stride
        # Frozen stages (the stem counts with layer1) keep their weights: no gradient, not in the optimiser, and
        # backward stops above them.
        freeze_stages(self, frozen_stages)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int, caffe: bool,
                    norm: Callable[[int], nn.BatchNorm2d]) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * 4:
            downsample = nn.Sequential(nn.Conv2d(self._inplanes, planes * 4, 1, stride=stride, bias=False),
                                       norm(planes * 4))
        layers = [Bottleneck(self._inplanes, planes, stride, downsample, dilation, norm, stride_in_1x1=caffe)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes, 1, None, dilation, norm, stride_in_1x1=caffe)
                   for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling of DeepLabV2: Σ_r conv3×3_rate r(x), each straight to the classes.

    x: [N, C_in, h, w] -> [N, K, h, w] (padding = rate keeps the size).
    """

    def __init__(self, in_channels: int, num_classes: int, rates: tuple[int, ...] = (6, 12, 18, 24)):
        super().__init__()
        convs = [nn.Conv2d(in_channels, num_classes, 3, padding=r, dilation=r, bias=True) for r in rates]
        for c in convs:
            assert c.bias is not None   # bias=True
            nn.init.normal_(c.weight, mean=0.0, std=0.01)
            nn.init.zeros_(c.bias)
        self.convs = nn.ModuleList(convs)

    @property
    def branches(self) -> tuple[nn.Conv2d, ...]:
        """The branch convs, typed (``nn.ModuleList`` is not generic: it yields ``nn.Module``); all Conv2d."""
        return cast(tuple[nn.Conv2d, ...], tuple(self.convs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum(c(x) for c in self.convs)


@torch.no_grad()
def init_aspp_from_classifier(aspp: ASPP, weight: torch.Tensor) -> None:
    """Start the ASPP as a CAM classifier's 1×1 head: ``weight`` [C, 2048(, 1, 1)] (class c → label c + 1)
    goes, split evenly, into the centre tap of every branch; the other taps, the background row and the
    biases start at 0. The ASPP then outputs ``[0, W·x]`` at every position — the classifier's CAM logits
    with a zero background logit — instead of N(0, 0.01) noise that a short schedule cannot train away."""
    w = weight.reshape(weight.shape[0], -1)  # [C, 2048]
    convs = aspp.branches
    k = convs[0].out_channels
    if w.shape[0] != k - 1 or w.shape[1] != convs[0].in_channels:
        raise ValueError(f"classifier weight {tuple(weight.shape)} does not fit an ASPP of {k} classes "
                         f"(background + {k - 1}) on {convs[0].in_channels} channels")
    for conv in convs:
        assert conv.bias is not None   # ASPP convs have a bias
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1:, :, 1, 1] = w / len(convs)


class DeepLabV2(nn.Module):
    """Dilated ResNet + ASPP: x [N, 3, H, W] (normalised) -> logits [N, K, ~H/8, ~W/8]."""

    def __init__(self, num_classes: int, blocks: tuple[int, ...] = RESNET101_BLOCKS,
                 rates: tuple[int, ...] = (6, 12, 18, 24), style: str = "torchvision", bn: str = "fixed",
                 layer4_dilation: int = 4, output_stride: int = 8, frozen_stages: int = 0):
        super().__init__()
        self.backbone = DilatedResNet(blocks, style=style, bn=bn, layer4_dilation=layer4_dilation,
                                      output_stride=output_stride, frozen_stages=frozen_stages)
        self.aspp = ASPP(2048, num_classes, rates)

    def head_convs(self) -> tuple[nn.Conv2d, ...]:
        """The convs trained from scratch (10× weights, 20× biases in ``optimizer_groups``)."""
        return self.aspp.branches

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.backbone(x))


class DeepLabV2MSC(nn.Module):
    """Multi-scale inputs around ``base`` (deeplab-pytorch's MSC).

    ``forward(x)`` with x: [N, 3, H, W] returns ``[l_1.0, l_s1, l_s2, ..., l_max]``: the logits of
    the input at scale 1 ([N, K, h, w]) and at each of ``scales`` (bilinear input resize), then their
    pixel-wise max after upsampling every scaled one to (h, w) ([N, K, h, w]).

    ``train_msc=False`` (DeepLabV1, trained at one scale): in training mode the list holds only ``l_1.0``,
    so the loss over the outputs is shared; ``eval()`` still fuses the scales for inference.
    """

    def __init__(self, base: DeepLabV2 | DeepLabV1, scales: tuple[float, ...] = (0.75, 0.5), train_msc: bool = True):
        super().__init__()
        self.base = base
        self.scales = tuple(scales)
        self.train_msc = train_msc

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        full = self.base(x)
        if (self.training and not self.train_msc) or not self.scales:   # one scale: nothing to fuse
            return [full]
        outs = [full]
        for s in self.scales:
            xs = F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
            outs.append(self.base(xs))
        up = [full] + [F.interpolate(o, size=full.shape[-2:], mode="bilinear", align_corners=False)
                       for o in outs[1:]]
        fused = torch.stack(up).amax(dim=0)                     # [S, N, K, h, w] -> [N, K, h, w]
        return outs + [fused]


def build_deeplab(num_classes: int, blocks: tuple[int, ...] = RESNET101_BLOCKS,
                  rates: tuple[int, ...] = (6, 12, 18, 24), msc_scales: tuple[float, ...] = (0.75, 0.5),
                  style: str = "torchvision", bn: str = "fixed", layer4_dilation: int = 4, output_stride: int = 8,
                  frozen_stages: int = 0) -> DeepLabV2MSC:
    """DeepLabV2 (random init) wrapped in MSC; ``num_classes`` includes the background. ``layer4_dilation``
    (at output stride 8): 4 for weights trained at output stride 32 (ImageNet), 2 for the CAM classifier's
    (layer4 at stride 1). ``frozen_stages``: the stem and the first n stages keep their weights."""
    return DeepLabV2MSC(DeepLabV2(num_classes, blocks, rates, style=style, bn=bn, layer4_dilation=layer4_dilation,
                                  output_stride=output_stride, frozen_stages=frozen_stages), msc_scales)


@torch.no_grad()
def predict_logits(model: DeepLabV2MSC, x: torch.Tensor, msc: bool, flip: bool) -> torch.Tensor:
    """Inference logits [N, K, h, w] of x [N, 3, H, W]: single scale or the MSC max, optionally
    averaged with the mirrored input's logits (mirrored back)."""
    def one(inp: torch.Tensor) -> torch.Tensor:
        return model(inp)[-1] if msc else model.base(inp)
    if not flip:
        return one(x)
    out = one(torch.cat([x, x.flip(-1)]))                      # [2N, K, h, w]
    n = x.shape[0]
    return 0.5 * (out[:n] + out[n:].flip(-1))


def normalize_input(img: torch.Tensor, valid: torch.Tensor | None, style: str) -> torch.Tensor:
    """uint8 RGB [N, 3, H, W] -> the float input of ``style``; 0 (= the mean pixel) where ``valid`` [N, H, W] is 0."""
    _check_choice("deeplab.pretrained_format", style, STYLES)
    if style == "caffe":
        x = img.flip(1).float() - torch.tensor(CAFFE_MEAN_BGR, device=img.device).view(1, 3, 1, 1)  # RGB -> BGR
    else:
        x = (img.float() / 255.0 - torch.tensor(IMAGENET_MEAN, device=img.device).view(1, 3, 1, 1)) \
            / torch.tensor(IMAGENET_STD, device=img.device).view(1, 3, 1, 1)
    if valid is not None:
        x = x * valid.unsqueeze(1).to(x.dtype)
    return x


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Shrink labels [N, H, W] to ``size`` exactly as PIL's NEAREST resize (deeplab-pytorch's
    ``resize_labels``, chosen there because corner-aligned nearest misplaces labels): int64 [N, h, w].

    The source row/column of every output pixel comes from PIL itself (``_pil_nearest_index``), so
    boundary cases round as PIL rounds; the gather then runs on the labels' device.
    """
    h, w = size
    if tuple(labels.shape[-2:]) == (h, w):
        return labels.long()
    rows = torch.as_tensor(_pil_nearest_index(labels.shape[-2], h), device=labels.device)
    cols = torch.as_tensor(_pil_nearest_index(labels.shape[-1], w), device=labels.device)
    return labels[:, rows][:, :, cols].long()


@functools.lru_cache(maxsize=256)
def _pil_nearest_index(n_in: int, n_out: int) -> tuple[int, ...]:
    """Source index of each of ``n_out`` samples when PIL NEAREST-resizes a length-``n_in`` axis."""
    ramp = Image.fromarray(np.arange(n_in, dtype=np.int32)[None, :], mode="I")        # [1, n_in]
    return tuple(np.asarray(ramp.resize((n_out, 1), resample=Image.Resampling.NEAREST))[0].tolist())


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the pixels not labelled 255. logits [N, K, h, w] (float32), labels [N, h, w].

    Equal to ``F.cross_entropy(..., ignore_index=255)`` except that an all-ignored batch gives 0, not NaN.
    """
    total = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")
    return total / (labels != IGNORE).sum().clamp(min=1)


def optimizer_groups(model: DeepLabV2 | DeepLabV1, lr: float, weight_decay: float, weight_mult: float = 10.0,
                     bias_mult: float = 20.0) -> list[dict]:
    """SGD groups of deeplab-pytorch: backbone convs 1× lr, head (``model.head_convs()``: the ASPP, or
    DeepLabV1's LargeFOV) weights ``weight_mult``× lr, head biases ``bias_mult``× lr without weight decay.
    Frozen parameters (fixed BN) are left out; trainable BN (``bn="batch"``) gets 1× lr without weight
    decay. The group names stay ``aspp_*`` for both heads."""
    head = model.head_convs()
    bn_params = [p for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)
                 for p in m.parameters(recurse=False) if p.requires_grad]
    bn_ids = {id(p) for p in bn_params}
    backbone = [p for p in model.backbone.parameters() if p.requires_grad and id(p) not in bn_ids]
    groups = [
        {"name": "backbone", "params": backbone, "lr": lr, "weight_decay": weight_decay},
        {"name": "aspp_weight", "params": [c.weight for c in head], "lr": lr * weight_mult,
         "weight_decay": weight_decay},
        {"name": "aspp_bias", "params": [c.bias for c in head], "lr": lr * bias_mult,
         "weight_decay": 0.0},
    ]
    if bn_params:
        groups.append({"name": "bn", "params": bn_params, "lr": lr, "weight_decay": 0.0})
    return groups


# ------------------------------------------------------------------------------------------------
# Weights: torchvision ImageNet, deeplab-pytorch caffe conversions, our own checkpoints
# ------------------------------------------------------------------------------------------------

_BRANCH = {"reduce": ("conv1", "bn1"), "conv3x3": ("conv2", "bn2"), "increase": ("conv3", "bn3"),
           "shortcut": ("downsample.0", "downsample.1"), "proj": ("downsample.0", "downsample.1")}
_BN_KEYS = "weight|bias|running_mean|running_var|num_batches_tracked"
_RE_STEM = re.compile(rf"layer1\.conv1\.(conv\.weight|bn\.({_BN_KEYS}))")
_RE_BLOCK = re.compile(rf"layer([2-5])\.block(\d+)\.(reduce|conv3x3|increase|shortcut|proj)\."
                       rf"(conv\.weight|bn\.({_BN_KEYS}))")
_RE_ASPP = re.compile(r"aspp\.(?:stages\.)?c(\d+)\.(weight|bias)")
_PREFIXES = ("module.", "base.", "scale.")


def map_caffe_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Translate a deeplab-pytorch state dict (caffe-converted ``deeplabv1_resnet101`` COCO ``init``,
    ``deeplabv2_resnet101_msc`` VOC models, or the older ``scale.``/``proj`` layout) to our names.

    The explicit map: ``layer1.conv1.conv`` -> ``conv1``, ``layer1.conv1.bn`` -> ``bn1``;
    ``layer{L}.block{B}.{reduce, conv3x3, increase, shortcut|proj}.{conv, bn}`` ->
    ``layer{L-1}.{B-1}.{conv1/bn1, conv2/bn2, conv3/bn3, downsample.0/.1}``; ``aspp[.stages].c{i}`` ->
    ``aspp.convs.{i}``; ``fc.*`` (DeepLabV1's 1×1 COCO classifier) is dropped. Any other key is an error.

    Returns (backbone state with ``DilatedResNet`` names, head state with ``aspp.convs.*`` names).
    """
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    unknown = []
    for key, value in state.items():
        k = key
        while k.startswith(_PREFIXES):
            k = k.split(".", 1)[1]
        if m := _RE_STEM.fullmatch(k):
            backbone["conv1.weight" if m.group(1) == "conv.weight" else f"bn1.{m.group(2)}"] = value
        elif m := _RE_BLOCK.fullmatch(k):
            layer, block, branch, param = int(m.group(1)) - 1, int(m.group(2)) - 1, m.group(3), m.group(4)
            conv, bn = _BRANCH[branch]
            name = f"{conv}.weight" if param == "conv.weight" else f"{bn}.{m.group(5)}"
            backbone[f"layer{layer}.{block}.{name}"] = value
        elif m := _RE_ASPP.fullmatch(k):
            head[f"aspp.convs.{m.group(1)}.{m.group(2)}"] = value
        elif k in ("fc.weight", "fc.bias"):
            continue
        else:
            unknown.append(key)
    if unknown:
        raise ValueError(f"{len(unknown)} key(s) of a deeplab-pytorch checkpoint have no mapping, e.g. {unknown[:5]}; "
                         "is it a DeepLab ResNet-101 state dict?")
    return backbone, head


def map_torchvision_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A torchvision ResNet state dict for ``DilatedResNet``: the ImageNet ``fc.*`` head dropped."""
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _fill_bn_counters(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the BatchNorm ``num_batches_tracked`` counters a file may lack (older torch / caffe conversions);
    FixedBatchNorm never reads them. Every other key must still match strictly."""
    out = dict(state)
    for k, v in module.state_dict().items():
        if k.endswith("num_batches_tracked") and k not in out:
            out[k] = torch.zeros_like(v)
    return out


def load_pretrained(model: DeepLabV2, pretrained: str | os.PathLike | None, fmt: str,
                    key: str = "deeplab.pretrained") -> str:
    """Initialise ``model.backbone`` strictly from ``pretrained``; return a description for the log.

    Args:
        pretrained: ``"imagenet"`` (torchvision IMAGENET1K_V1 ResNet-101, downloaded once into the torch
            hub cache), a path to a state dict (format ``fmt``), or ``None`` (random initialisation).
        fmt: ``torchvision`` (torchvision key names) or ``caffe`` (deeplab-pytorch key names). Must match
            the model's ``style``; the ASPP is never initialised from it (other classes).
    """
    style = model.backbone.style
    if fmt != style:
        raise ValueError(f"{key}: weights of format {fmt!r} for a network built for {style!r} inputs")
    if pretrained is None:
        return "random initialisation"
    if pretrained == "imagenet" and fmt != "torchvision":
        raise ValueError(f"{key}: 'imagenet' means torchvision's ResNet-101; with deeplab.pretrained_format "
                         f"'caffe' give the path of a converted deeplab-pytorch checkpoint")
    state, source = read_pretrained(pretrained, key, IMAGENET101_URL, "torchvision ImageNet ResNet-101")
    if pretrained != "imagenet":
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):   # a training checkpoint
            state = state["state_dict"]
        source = f"{source} ({fmt} layout)"
    if fmt == "caffe":
        backbone, _ = map_caffe_state(state)
    else:
        backbone = map_torchvision_state(state)
    load_state_dict_strict(model.backbone, _fill_bn_counters(model.backbone, backbone), source=f"{key}: {source}")
    return source


def load_trained(model: DeepLabV2MSC, path: str | os.PathLike, key: str) -> None:
    """Load a whole trained DeepLabV2 strictly: ours (``deeplab/model.pth``, keys ``base.*``) or a
    deeplab-pytorch DeepLabV2 checkpoint (caffe layout; needs ``deeplab.pretrained_format: caffe``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: model file {path} does not exist; run train_deeplab first")
    state = read_weights(path, key)
    if any(k.startswith("base.backbone.") for k in state):
        load_state_dict_strict(model, state, source=str(path))
        return
    backbone, head = map_caffe_state(state)
    base = model.base
    if not isinstance(base, DeepLabV2) or base.backbone.style != "caffe":
        raise ValueError(f"{key}: {path} is a deeplab-pytorch (caffe) checkpoint; set deeplab.pretrained_format: caffe")
    load_state_dict_strict(base.backbone, _fill_bn_counters(base.backbone, backbone), source=str(path))
    load_state_dict_strict(base.aspp, {k.removeprefix("aspp."): v for k, v in head.items()}, source=str(path))


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{key}: unknown value {value!r}; expected one of {choices}")


def build_model(c, num_classes: int) -> DeepLabV2MSC:
    """The network of the ``deeplab`` config section ``c`` (random init); ``num_classes`` includes the background.

    ``deeplab.arch``: ``v2_resnet101`` is DeepLabV2-MSC; ``v1_wr38`` is DeepLabV1-LargeFOV on ResNet-38 in the
    same MSC wrapper, trained at one scale (``train_msc=False``) and fused over ``msc_scales`` only at inference.

    layer4 is dilated to match the weights it starts from: 4 for ImageNet's output stride 32, 2 for the CAM
    classifier (``cam_baseline``), whose layer4 was trained at stride 1 without dilation — dilating it by 4
    would sample its 3×3 kernels twice as far apart as in training."""
    if c.arch == "v1_wr38":
        return DeepLabV2MSC(DeepLabV1(num_classes, bn=c.bn, bn_momentum=c.bn_momentum, width_div=c.width_div),
                            c.msc_scales, train_msc=False)
    return build_deeplab(num_classes, blocks=c.blocks, rates=c.atrous_rates, msc_scales=c.msc_scales,
                         style=c.pretrained_format, bn=c.bn, layer4_dilation=2 if c.pretrained == "cam_baseline" else 4,
                         output_stride=c.output_stride, frozen_stages=c.frozen_stages)
