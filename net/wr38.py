"""DeepLabV1-LargeFOV on the wide ResNet-38 (model A1 of Wu et al., "Wider or Deeper", Pattern Recognition 2019).

- ``WideResNet38``: the A1 trunk as PSA/SEAM use it: conv1a 3×3 64 (stride 1); b2 (×3, 128), b3 (×3, 256),
  b4 (×6, 512), each opened at stride 2 -> output stride 8; b5 (×3, 512->1024) dilation 2 (its first 3×3
  undilated); b6 (bottleneck 1024->2048, dilation 4, dropout 0.3), b7 (bottleneck 2048->4096, dilation 4,
  dropout 0.5); a final BN + ReLU. Pre-activation blocks (BN-ReLU before each conv); BN everywhere.
  Attribute names are PSA's (``b2_1.conv_branch2a`` ...), so its converted state dicts load unmapped.
- ``LargeFOV``: DeepLab-LargeFOV's fc6 (3×3, dilation 12, 1024) - ReLU - dropout 0.5 - fc7 (1×1, 1024) -
  ReLU - dropout 0.5 - fc8 (1×1 to the classes), as in DeepLab-LargeFOV's train.prototxt.
- ``DeepLabV1``: trunk + head; x [N, 3, H, W] (ImageNet mean/std, RGB: PSA's ``Normalize``) ->
  logits [N, K, ceil(H/8), ceil(W/8)].

``width_div`` divides every channel count (1 = the published model); the toy-world tests use 16.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from net.resnet50 import init_segmentation_backbone, norm_layer
from net.weights import read_weights

# A BatchNorm layer for a channel count (net.resnet50.norm_layer's result).
NormLayer = Callable[[int], nn.BatchNorm2d]


class ResBlock(nn.Module):
    """Pre-activation basic block: y = branch1(relu(bn(x))) + conv3×3(relu(bn(conv3×3(relu(bn(x)))))).

    branch1 is the identity when the shape is kept, else a strided 1×1 conv of the pre-activated input.
    x: [N, C_in, h, w] -> [N, C_out, h / stride, w / stride].
    """

    def __init__(self, cin: int, cmid: int, cout: int, stride: int = 1, first_dilation: int | None = None,
                 dilation: int = 1, norm: NormLayer = nn.BatchNorm2d):
        super().__init__()
        first = dilation if first_dilation is None else first_dilation
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = norm(cin)
        self.conv_branch2a = nn.Conv2d(cin, cmid, 3, stride, padding=first, dilation=first, bias=False)
        self.bn_branch2b1 = norm(cmid)
        self.conv_branch2b1 = nn.Conv2d(cmid, cout, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn_branch2a(x))
        short = x if self.same_shape else self.conv_branch1(a)
        y = self.conv_branch2b1(F.relu(self.bn_branch2b1(self.conv_branch2a(a))))
        return short + y


class ResBlockBot(nn.Module):
    """Pre-activation bottleneck of b6/b7: 1×1 (C_out/4) - 3×3 dilated (C_out/2) - 1×1 (C_out), with
    channel dropout before the last two convs; the shortcut is always a 1×1 conv. [N, C_in, h, w] -> [N, C_out, h, w].
    """

    def __init__(self, cin: int, cout: int, dilation: int, dropout: float, norm: NormLayer):
        super().__init__()
        self.bn_branch2a = norm(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, bias=False)
        self.bn_branch2b1 = norm(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = norm(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.bn_branch2a(x))
        y = self.conv_branch2a(a)
        y = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(y))))
        y = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(y))))
        return self.conv_branch1(a) + y


# (name, C_in, C_mid, C_out, stride, first_dilation, dilation) of the basic blocks b2 .. b5_2
_BASIC = (
    [("b2", 64, 128, 128, 2, None, 1)] + [(f"b2_{i}", 128, 128, 128, 1, None, 1) for i in (1, 2)]
    + [("b3", 128, 256, 256, 2, None, 1)] + [(f"b3_{i}", 256, 256, 256, 1, None, 1) for i in (1, 2)]
    + [("b4", 256, 512, 512, 2, None, 1)] + [(f"b4_{i}", 512, 512, 512, 1, None, 1) for i in range(1, 6)]
    + [("b5", 512, 512, 1024, 1, 1, 2)] + [(f"b5_{i}", 1024, 512, 1024, 1, None, 2) for i in (1, 2)]
)
OUT_CHANNELS = 4096


class WideResNet38(nn.Module):
    """ResNet-38 A1 at output stride 8: x [N, 3, H, W] -> [N, 4096 / width_div, ceil(H/8), ceil(W/8)] (≥ 0)."""

    def __init__(self, bn: str = "batch", bn_momentum: float = 0.1, width_div: int = 1):
        super().__init__()
        if width_div < 1 or 64 % width_div:
            raise ValueError(f"deeplab.width_div: {width_div} must divide 64")
        norm = norm_layer(bn, bn_momentum)
        self.bn_mode, self.style, self.out_channels = bn, "torchvision", OUT_CHANNELS // width_div
        d = width_div
        self.conv1a = nn.Conv2d(3, 64 // d, 3, padding=1, bias=False)
        self.blocks = [name for name, *_ in _BASIC] + ["b6", "b7"]
        for name, cin, cmid, cout, stride, first, dil in _BASIC:
            setattr(self, name, ResBlock(cin // d, cmid // d, cout // d, stride, first, dil, norm))
        self.b6 = ResBlockBot(1024 // d, 2048 // d, dilation=4, dropout=0.3, norm=norm)
        self.b7 = ResBlockBot(2048 // d, 4096 // d, dilation=4, dropout=0.5, norm=norm)
        self.bn7 = norm(4096 // d)
        init_segmentation_backbone(self, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1a(x)
        for name in self.blocks:
            x = getattr(self, name)(x)
        return F.relu(self.bn7(x))


class LargeFOV(nn.Module):
    """fc6 3×3 dilation 12 -> ReLU -> dropout -> fc7 1×1 -> ReLU -> dropout -> fc8 1×1: [N, C, h, w] -> [N, K, h, w].

    fc6/fc7 start Kaiming-normal, fc8 N(0, 0.01) (DeepLab's prototxt fillers for a new classifier); biases 0.
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 1024, dilation: int = 12,
                 dropout: float = 0.5):
        super().__init__()
        self.fc6 = nn.Conv2d(in_channels, channels, 3, padding=dilation, dilation=dilation)
        self.fc7 = nn.Conv2d(channels, channels, 1)
        self.fc8 = nn.Conv2d(channels, num_classes, 1)
        self.drop6, self.drop7 = nn.Dropout2d(dropout), nn.Dropout2d(dropout)
        for c in (self.fc6, self.fc7):
            nn.init.kaiming_normal_(c.weight, mode="fan_in", nonlinearity="relu")
        nn.init.normal_(self.fc8.weight, std=0.01)
        for c in self.convs:
            assert c.bias is not None   # built with bias=True above
            nn.init.zeros_(c.bias)

    @property
    def convs(self) -> tuple[nn.Conv2d, ...]:
        return self.fc6, self.fc7, self.fc8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop6(F.relu(self.fc6(x)))
        x = self.drop7(F.relu(self.fc7(x)))
        return self.fc8(x)


class DeepLabV1(nn.Module):
    """WideResNet38 + LargeFOV: x [N, 3, H, W] -> logits [N, K, ceil(H/8), ceil(W/8)]."""

    def __init__(self, num_classes: int, bn: str = "batch", bn_momentum: float = 0.1, width_div: int = 1):
        super().__init__()
        self.backbone = WideResNet38(bn=bn, bn_momentum=bn_momentum, width_div=width_div)
        self.head = LargeFOV(self.backbone.out_channels, num_classes, channels=1024 // width_div)

    def head_convs(self) -> tuple[nn.Conv2d, ...]:
        return self.head.convs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


# ------------------------------------------------------------------------------------------------
# ImageNet weights: the MXNet model of itijyou/ademxapp, or PSA/SEAM's torch conversion of it
# ------------------------------------------------------------------------------------------------

PARAMS_FILE = "ilsvrc-cls_rna-a1_cls1000_ep-0001.params"
PARAMS_SOURCE = "https://github.com/itijyou/ademxapp (ImageNet model A1)"
# the 1000-class classifier of the ImageNet model: not part of the trunk
IGNORED_MXNET = ("arg:linear1000_weight", "arg:linear1000_bias")
_BN_MX = {"weight": "arg:{}_gamma", "bias": "arg:{}_beta", "running_mean": "aux:{}_moving_mean",
          "running_var": "aux:{}_moving_var"}


def _mx_stage(block: str) -> str:
    """Our block name -> its MXNet unit: ``b2`` -> ``2a``, ``b4_5`` -> ``4b5``, ``b7`` -> ``7a``."""
    stage, _, index = block[1:].partition("_")
    return f"{stage}b{index}" if index else f"{stage}a"


def mxnet_key_map(backbone: WideResNet38) -> dict[str, str]:
    """{MXNet name: our state-dict name} for every parameter and BN statistic of ``backbone``.

    ``conv1a.weight`` <- ``arg:conv1a_weight``; ``b{S}[_{i}].conv_{branch}.weight`` <- ``arg:res{U}_{branch}_weight``;
    ``b{S}[_{i}].bn_{branch}.{weight, bias, running_mean, running_var}`` <- ``arg:bn{U}_{branch}_{gamma, beta}``,
    ``aux:bn{U}_{branch}_moving_{mean, var}``; ``bn7.*`` <- ``arg:bn7_*`` / ``aux:bn7_*``; U = ``_mx_stage``.
    This is the renaming of PSA's ``convert_mxnet_to_torch``, written out. BN counters have no MXNet name.
    """
    out = {}
    for name in backbone.state_dict():
        if name.endswith("num_batches_tracked"):
            continue
        if name == "conv1a.weight":
            out["arg:conv1a_weight"] = name
            continue
        module, param = name.rsplit(".", 1)
        if module == "bn7":
            out[_BN_MX[param].format("bn7")] = name
            continue
        block, layer = module.split(".")
        kind, branch = layer.split("_", 1)
        unit = _mx_stage(block)
        if kind == "conv":
            out[f"arg:res{unit}_{branch}_weight"] = name
        else:
            out[_BN_MX[param].format(f"bn{unit}_{branch}")] = name
    return out


def map_wr38_state(state: dict, backbone: WideResNet38, source: str) -> dict[str, torch.Tensor]:
    """Our backbone names for an MXNet state (``arg:``/``aux:`` names) or a PSA/SEAM torch conversion
    (our names, possibly ``module.``-prefixed). Names the map does not know stay as they are, so the strict
    load lists them as unexpected; the ImageNet classifier (``linear1000``) is dropped."""
    table = mxnet_key_map(backbone)
    out = {}
    for key, value in state.items():
        if key in IGNORED_MXNET or value is None:
            continue
        k = key.removeprefix("module.")
        out[table.get(k, k)] = torch.as_tensor(value)
    return out


def load_wr38_pretrained(backbone: WideResNet38, pretrained: str | None, key: str = "deeplab.pretrained") -> str:
    """Initialise ``backbone`` strictly from ``pretrained``: the MXNet ``.params`` file (read by
    ``net.mxnet_params``) or a torch state dict in PSA's converted layout; ``None`` = random. Returns the
    description for the log."""
    from net.mxnet_params import is_params_file, load_params
    from net.weights import load_state_dict_strict

    if pretrained is None:
        return "random initialisation"
    hint = f"download {PARAMS_FILE} from {PARAMS_SOURCE} and set {key} to its path"
    if pretrained in ("imagenet", "cam_baseline"):
        raise ValueError(f"{key}: {pretrained!r} is a ResNet initialisation; deeplab.arch v1_wr38 needs the "
                         f"ResNet-38 weights: {hint}")
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no file at {path}; {hint}")
    state: dict           # name -> numpy array (MXNet) or tensor (torch)
    if is_params_file(path):
        state, fmt = load_params(path), "MXNet .params"
    else:
        state, fmt = read_weights(path, key), "torch state dict"
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
    mapped = map_wr38_state(state, backbone, str(path))
    for k, v in backbone.state_dict().items():        # counters the file cannot have; never read when fixed
        if k.endswith("num_batches_tracked") and k not in mapped:
            mapped[k] = torch.zeros_like(v)
    load_state_dict_strict(backbone, mapped, source=f"{key}: {path} ({fmt})")
    return f"{path} ({fmt}, ResNet-38 A1)"
