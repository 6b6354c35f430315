"""The CAM classifier: ResNet-50 at output stride 16, GAP, a bias-free 1×1 classifier (IRN recipe).

Training: logits = W · GAP(Z) (multilabel soft-margin loss). Export: CAM = ReLU(Wᵀ Z) per class
(docs/design.md §4 item 7). The stem (conv1/bn1) is frozen in ``__init__``; BN is FixedBatchNorm by default.
``frozen_stages`` keeps the first stages fixed as well: IRN's own CAM net stops gradients after layer2
(``frozen_stages: 2``), QA-CLIMS's trains every stage but the stem (0).
"""
from __future__ import annotations

import logging
import re
from collections.abc import Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from net.resnet50 import ResNet50, freeze_stages, load_pretrained

log = logging.getLogger(__name__)


class CAMNet(nn.Module):
    """ResNet-50 OS16 + 1×1 classifier.

    Args:
        num_classes: K (20 for VOC, 80 for COCO).
        pretrained: backbone init (``imagenet`` | state-dict path | None), see ``net.resnet50.load_pretrained``.
        bn: ``fixed`` (frozen statistics, the baseline) or ``batch`` (trainable, RITC).
        pretrained_key: the config key named in errors about ``pretrained``.
        frozen_stages: 0..4: the stem with layer1, then layer2, 3, 4 keep their weights *and* BN statistics
            (their BN stays in eval mode under ``train()``, so ``bn: batch`` freezes them too); backward stops
            above them, which is what makes a step cheaper.
    """

    def __init__(self, num_classes: int, pretrained: str | None = None, bn: str = "fixed",
                 pretrained_key: str = "cam.pretrained", frozen_stages: int = 0):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNet50(strides=(2, 2, 2, 1), bn=bn)
        source = load_pretrained(self.backbone, pretrained, pretrained_key)
        log.info("CAM backbone initialised from %s", source)
        self.backbone.freeze_stem()
        # names, not modules: SyncBatchNorm conversion replaces bn1 after this
        self.frozen = freeze_stages(self.backbone, frozen_stages)
        self.classifier = nn.Conv2d(2048, num_classes, 1, bias=False)

    def train(self, mode: bool = True) -> CAMNet:
        super().train(mode)
        for name in self.frozen:
            getattr(self.backbone, name).eval()   # frozen stages keep their BN statistics too
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] ImageNet-normalised -> Z: [N, 2048, ceil(H/16), ceil(W/16)]."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor, maps: bool = False) -> torch.Tensor:
        """Class logits [N, K] = W · GAP(Z); with ``maps`` the RITC head ``sigmoid_maps(x)`` instead.

        (One ``forward`` for both heads so that DDP, which only synchronises gradients of what runs
        through its own forward, wraps either use.)
        """
        if maps:
            return self.sigmoid_maps(x)
        z = self.features(x).mean(dim=(2, 3), keepdim=True)   # [N, 2048, 1, 1]
        return self.classifier(z).flatten(1)                  # [N, K]

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        """Class activation maps ReLU(Wᵀ Z): [N, K, h, w], h = ceil(H/16)."""
        return F.relu(F.conv2d(self.features(x), self.classifier.weight))

    def sigmoid_maps(self, x: torch.Tensor) -> torch.Tensor:
        """RITC's training head, Eq. 2: P = sigmoid(Wᵀ Z): [N, K, h, w] in (0, 1) (official ``CLIMS.forward``)."""
        return torch.sigmoid(self.classifier(self.features(x)))

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(trainable backbone parameters, classifier parameters): the classifier gets 10× lr."""
        return ([p for p in self.backbone.parameters() if p.requires_grad], list(self.classifier.parameters()))


# The authors' res50_cam.pth (IRN/CLIMS/QA-CLIMS ``net.resnet50_cam.Net``) holds the backbone under
# ``resnet50.*`` and the classifier as ``classifier.weight``. Because that module registers the same
# submodules again as ``stage1..4``, ``backbone`` and ``newly_added``, its state_dict repeats every
# tensor under those alias prefixes: they are dropped by name, anything else unknown is an error.
_OFFICIAL_ALIASES = re.compile(r"^(stage[1-4]|backbone|newly_added)\.")


def map_official_cam_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map an official ``res50_cam.pth`` state dict onto ``CAMNet`` key names (explicit, strict).

    ``resnet50.X`` -> ``backbone.X``, ``classifier.weight`` stays; alias prefixes are dropped;
    ``resnet50.fc.*`` (an ImageNet head, if present) is dropped. A state dict already in our names
    is returned unchanged. Any other key raises ``KeyError`` naming it.
    """
    if any(k.startswith("backbone.conv1") or k.startswith("backbone.layer") for k in state) and \
            not any(k.startswith("resnet50.") for k in state):
        return dict(state)  # already ours
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in state.items():
        k2 = k[len("module."):] if k.startswith("module.") else k   # saved from DataParallel/DDP
        if k2.startswith("resnet50.fc."):
            continue
        if k2.startswith("resnet50."):
            out["backbone." + k2[len("resnet50."):]] = v
        elif k2 == "classifier.weight":
            out[k2] = v
        elif _OFFICIAL_ALIASES.match(k2):
            continue
        else:
            unknown.append(k)
    if unknown:
        raise KeyError(f"unknown key(s) in the CAM checkpoint: {unknown[:10]}")
    return out
