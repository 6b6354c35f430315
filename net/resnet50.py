"""ResNet-50 backbone of the IRN family (strides configurable, frozen-statistics BatchNorm).

Parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), so ImageNet weights
load strictly without a key map. The stride of a bottleneck sits on its 3×3 conv (torchvision v1.5,
as in IRN). ``strides=(2, 2, 2, 1)`` gives output stride 16 (the CAM nets); ``(2, 2, 2, 2)`` gives 32.
"""
from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from net.weights import read_weights

log = logging.getLogger(__name__)

# torchvision's IMAGENET1K_V1 ResNet-50 (the weights IRN/CLIMS/QA-CLIMS start from).
IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FixedBatchNorm(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics (IRN's FixedBatchNorm).

    The affine weight and bias still train unless frozen; the statistics never update.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias,
                            training=False, eps=self.eps)


BN_MODES = ("fixed", "batch")


def norm_layer(bn: str, momentum: float | None = None) -> Callable[[int], nn.BatchNorm2d]:
    """The BatchNorm of mode ``bn`` (``cam.bn``, ``ritc.bn``, ``deeplab.bn``): ``fixed`` (frozen statistics) or
    ``batch`` (trainable, with running-statistics ``momentum``; None = torch's). The one check of the mode."""
    if bn == "fixed":
        return FixedBatchNorm
    if bn == "batch":
        return nn.BatchNorm2d if momentum is None else functools.partial(nn.BatchNorm2d, momentum=momentum)
    raise ValueError(f"unknown BatchNorm mode {bn!r}: expected one of {BN_MODES} (fixed: frozen statistics)")


# The stages a ``frozen_stages: n`` setting fixes, in order: the stem counts with layer1.
STAGES = (("conv1", "bn1", "layer1"), ("layer2",), ("layer3",), ("layer4",))


def freeze_stages(backbone: nn.Module, n: int) -> tuple[str, ...]:
    """No gradient for the first ``n`` of :data:`STAGES` of ``backbone`` (not in an optimiser, and backward stops
    above them); returns their attribute names."""
    names = tuple(name for stage in STAGES[:n] for name in stage)
    for name in names:
        getattr(backbone, name).requires_grad_(False)
    return names


class Bottleneck(nn.Module):
    """ResNet bottleneck (1×1 → 3×3 (dilated) → 1×1, ×4 channels) with torchvision parameter names.

    ``stride_in_1x1``: the stride sits on ``conv1`` (MSRA/caffe, DeepLab's caffe weights) instead of
    ``conv2`` (torchvision v1.5, IRN).
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None,
                 dilation: int = 1, norm: Callable[[int], nn.BatchNorm2d] = FixedBatchNorm,
                 stride_in_1x1: bool = False):
        super().__init__()
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=s1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=s3, padding=dilation,
                               dilation=dilation, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """ResNet-50 without the ImageNet head.

    Args:
        strides: strides of (conv1, layer2, layer3, layer4); the max-pool always halves.
        dilations: dilations of the 3×3 convs in (layer1, layer2, layer3, layer4), except each
            layer's first block (IRN convention).
        bn: ``"fixed"`` (FixedBatchNorm, frozen statistics) or ``"batch"`` (trainable statistics).

    ``forward_stages(x)`` returns the four stage outputs: [N, 256, H/4, W/4], [N, 512, H/8, W/8],
    [N, 1024, H/16, W/16], [N, 2048, H/s, W/s] for input x: [N, 3, H, W] (ImageNet-normalised).
    """

    def __init__(self, strides: tuple[int, int, int, int] = (2, 2, 2, 1),
                 dilations: tuple[int, int, int, int] = (1, 1, 1, 1), bn: str = "fixed"):
        super().__init__()
        norm = norm_layer(bn)
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=strides[0], padding=3, bias=False)
        self.bn1 = norm(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 64
        self.layer1 = self._make_layer(64, 3, 1, dilations[0], norm)
        self.layer2 = self._make_layer(128, 4, strides[1], dilations[1], norm)
        self.layer3 = self._make_layer(256, 6, strides[2], dilations[2], norm)
        self.layer4 = self._make_layer(512, 3, strides[3], dilations[3], norm)

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int,
                    norm: Callable[[int], nn.BatchNorm2d]) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * 4, kernel_size=1, stride=stride, bias=False),
                norm(planes * 4),
            )
        layers = [Bottleneck(self._inplanes, planes, stride, downsample, dilation=1, norm=norm)]
        self._inplanes = planes * 4
        layers += [Bottleneck(self._inplanes, planes, dilation=dilation, norm=norm) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def freeze_stem(self) -> None:
        """Freeze conv1/bn1 (IRN: the stem never trains)."""
        for p in list(self.conv1.parameters()) + list(self.bn1.parameters()):
            p.requires_grad_(False)

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        s1 = self.layer1(x)
        s2 = self.layer2(s1)
        s3 = self.layer3(s2)
        s4 = self.layer4(s3)
        return [s1, s2, s3, s4]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] -> [N, 2048, H/s, W/s]."""
        return self.forward_stages(x)[-1]


def download_state_dict(url: str, key: str, what: str) -> dict:
    """A torchvision checkpoint from ``url`` (cached in the torch hub folder); offline, an error naming
    the config ``key`` and how to provide the file by hand."""
    try:
        return torch.hub.load_state_dict_from_url(url, progress=False, map_location="cpu")
    except Exception as e:  # offline, proxy, truncated download ...
        raise RuntimeError(
            f"{key}: could not get the {what} weights ({type(e).__name__}: {e}). "
            f"Download {url} on a machine with internet access and set {key} to its path, "
            f"or copy it into {Path(torch.hub.get_dir()) / 'checkpoints'}.") from e


def read_pretrained(pretrained: str | os.PathLike, key: str, url: str, what: str) -> tuple[dict, str]:
    """The state dict a ``*.pretrained`` key names, and where it came from: ``"imagenet"`` -> torchvision's ``what``
    weights at ``url`` (downloaded once), anything else -> the path of a state-dict file (the config ``key`` named
    in errors). The ResNet-50 and DeepLab backbones' one reading of that key."""
    if pretrained == "imagenet":
        return download_state_dict(url, key, what), f"{what} ({url})"
    path = Path(pretrained)
    if not path.is_file():
        raise FileNotFoundError(f"{key}: no file at {path}; give 'imagenet', a state-dict path or null")
    return read_weights(path, key), str(path)


def load_pretrained(model: ResNet50, pretrained: str | os.PathLike | None, key: str) -> str:
    """Load backbone weights into ``model`` strictly; return a description for the log.

    Args:
        pretrained: ``"imagenet"`` (torchvision IMAGENET1K_V1, downloaded once into the torch hub
            cache), a path to a ``.pth`` state dict with torchvision key names (``fc.*`` is
            dropped), or ``None`` (random init, tests only).
        key: the config key that held ``pretrained``, named in errors.
    """
    if pretrained is None:
        return "random initialisation"
    state, source = read_pretrained(pretrained, key, IMAGENET_URL, "torchvision ImageNet ResNet-50")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise RuntimeError(f"{key}: {source} does not match the ResNet-50 backbone: {e}") from e
    return source


def init_segmentation_backbone(module: nn.Module, bn: str) -> None:
    """Kaiming (fan-out) init of every conv of a segmentation backbone before its weights load; with
    ``bn="fixed"`` its BatchNorm parameters are frozen (never seen by the optimiser)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    if bn == "fixed":
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.requires_grad_(False)
