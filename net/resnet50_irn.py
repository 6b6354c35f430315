"""IRNet (Ahn et al., CVPR 2019): class-boundary and displacement-field branches on a frozen ResNet-50.

The pseudo-mask refinement of QA-CLIMS is IRN's, unchanged (official ``net/resnet50_irn.py``):

- ``IRNet``: the backbone (stride 16, frozen BN, never trained in IRN; ``trained_stages`` lets its first
  stages train with the boundary branch, a deviation for small images) feeds two branches of 1×1 conv +
  GroupNorm heads at output stride 4: the boundary logits [N, 1, H/4, W/4] and the displacement field
  [N, 2, H/4, W/4] (dy, dx in feature cells) with its ``MeanShift`` (the mean displacement, estimated in
  one pass after training and subtracted at inference).
- ``AffinityDisplacementLoss``: training. Boundaries become inter-pixel affinities along paths
  (``a_ij = 1 − max_{k∈path} B(k)``); the affinity loss pulls a_ij to 1 on same-label pairs and to 0 on
  different-label pairs; the displacement loss asks pairs of one foreground instance to differ by their
  offset, and background pairs not to differ.
- ``EdgeDisplacement``: inference. The boundary map of an image and of its mirror, averaged in logit
  space, plus the displacement field.

``load_official_irn`` maps the authors' ``res50_irn.pth`` onto this module for a strict load.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from net.path_index import PathIndex, edge_to_affinity
from net.resnet50 import ResNet50

log = logging.getLogger(__name__)


TRAINED_STAGES = (0, 1, 2, 3)   # irn.trained_stages: none (IRN), the stem, + layer1, + layer2


def _head(cin: int, cout: int, groups: int, up: int = 1) -> nn.Sequential:
    """1×1 conv → GroupNorm → (bilinear ×up) → ReLU (the order of IRN's heads; indices matter for keys)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 1, bias=False), nn.GroupNorm(groups, cout)]
    if up > 1:
        layers.append(nn.Upsample(scale_factor=up, mode="bilinear", align_corners=False))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class MeanShift(nn.Module):
    """Subtracts the mean displacement at inference; identity while training.

    ``running_mean`` [2] is set once after training (``IRNet.estimate_mean_shift``), not by momentum.
    """

    running_mean: torch.Tensor   # a buffer (register_buffer): declared for the type checker

    def __init__(self, num_features: int = 2):
        super().__init__()
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return x
        return x - self.running_mean.view(1, -1, 1, 1)  # [1, 2, 1, 1] broadcast over N, h, w


class IRNet(nn.Module):
    """Boundary + displacement branches on a frozen ResNet-50 (strides (2, 2, 2, 1), FixedBatchNorm).

    ``forward(x)`` with x: [N, 3, H, W] (ImageNet-normalised) returns
    (edge_logits [N, 1, ⌈H/4⌉, ⌈W/4⌉], displacement [N, 2, ⌈H/4⌉, ⌈W/4⌉]).
    The backbone runs without autograd and its parameters are frozen: only the branches train.

    ``displacement=False`` (``irn.displacement``) skips the displacement branch in forward (its output is then
    None) and leaves its weights as initialised: the semantic pseudo masks read the boundary branch only (IRN
    uses the displacement field for instance masks). The two branches share no trainable weight, so the
    boundary branch trains to the same values either way; the layers are still built, so the state-dict
    layout and the boundary branch's random initialisation do not change.
    """

    def __init__(self, displacement: bool = True, trained_stages: int = 0) -> None:
        super().__init__()
        if trained_stages not in TRAINED_STAGES:
            raise ValueError(f"irn.trained_stages: {trained_stages} is not one of {TRAINED_STAGES}")
        self.displacement = displacement
        self.trained_stages = trained_stages
        self.backbone = ResNet50(strides=(2, 2, 2, 1), bn="fixed")
        b = self.backbone
        # IRN keeps the whole backbone frozen (0). The first stages may train with the boundary branch instead:
        # its 1x1 read-outs of frozen stride-4 features are what caps the walk on small images (docs/stage-study.md)
        self.backbone_trained = [m for ms in ([b.conv1, b.bn1], [b.layer1], [b.layer2])[:trained_stages] for m in ms]
        trained = {id(p) for m in self.backbone_trained for p in m.parameters()}
        for p in self.backbone.parameters():
            p.requires_grad_(id(p) in trained)

        # class-boundary branch: 32 channels from each of the 5 stages, fused at stride 4
        self.fc_edge1 = _head(64, 32, 4)
        self.fc_edge2 = _head(256, 32, 4)
        self.fc_edge3 = _head(512, 32, 4, up=2)
        self.fc_edge4 = _head(1024, 32, 4, up=4)
        self.fc_edge5 = _head(2048, 32, 4, up=4)
        self.fc_edge6 = nn.Conv2d(160, 1, 1, bias=True)

        # displacement branch: stages 3-5 fused at stride 8, then with stages 1-2 at stride 4
        self.fc_dp1 = _head(64, 64, 8)
        self.fc_dp2 = _head(256, 128, 16)
        self.fc_dp3 = _head(512, 256, 16)
        self.fc_dp4 = _head(1024, 256, 16, up=2)
        self.fc_dp5 = _head(2048, 256, 16, up=2)
        self.fc_dp6 = _head(768, 256, 16, up=2)
        self.fc_dp7 = nn.Sequential(nn.Conv2d(448, 256, 1, bias=False), nn.GroupNorm(16, 256), nn.ReLU(inplace=True),
                                    nn.Conv2d(256, 2, 1, bias=False))
        self.mean_shift = MeanShift(2)

        self.edge_layers = [self.fc_edge1, self.fc_edge2, self.fc_edge3, self.fc_edge4, self.fc_edge5, self.fc_edge6]
        self.dp_layers = [self.fc_dp1, self.fc_dp2, self.fc_dp3, self.fc_dp4, self.fc_dp5, self.fc_dp6, self.fc_dp7]
        if not displacement:   # frozen, not merely unused: DDP refuses parameters that want a gradient and get none
            for p in (p for m in self.dp_layers for p in m.parameters()):
                p.requires_grad_(False)

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five stage outputs: strides 4, 4, 8, 16, 16; channels 64 … 2048. Without autograd but for the
        first ``trained_stages`` (stem, layer1, layer2)."""
        b = self.backbone
        grad = torch.is_grad_enabled()
        stages: list[Callable[[torch.Tensor], torch.Tensor]] = [
            lambda t: b.maxpool(b.relu(b.bn1(b.conv1(t)))), b.layer1, b.layer2, b.layer3, b.layer4]
        outs = []
        for i, stage in enumerate(stages):
            with torch.set_grad_enabled(grad and i < self.trained_stages):
                x = stage(x)
            outs.append(x)
        return outs

    def _branches(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: [N, 3, H, W] -> (edge logits [N, 1, h, w], raw displacement before the mean shift [N, 2, h, w];
        None without the displacement branch)."""
        x1, x2, x3, x4, x5 = self._stages(x)
        h, w = x2.shape[-2:]
        # the ×2/×4 upsampled maps overshoot odd sizes by a cell; crop them to the stride-4 grid
        edge = torch.cat([self.fc_edge1(x1), self.fc_edge2(x2), self.fc_edge3(x3)[..., :h, :w],
                          self.fc_edge4(x4)[..., :h, :w], self.fc_edge5(x5)[..., :h, :w]], dim=1)
        edge = self.fc_edge6(edge)
        if not self.displacement:
            return edge, None

        dp3 = self.fc_dp3(x3)
        h3, w3 = dp3.shape[-2:]
        dp_up3 = self.fc_dp6(torch.cat([dp3, self.fc_dp4(x4)[..., :h3, :w3], self.fc_dp5(x5)[..., :h3, :w3]],
                                       dim=1))[..., :h, :w]
        dp = self.fc_dp7(torch.cat([self.fc_dp1(x1), self.fc_dp2(x2), dp_up3], dim=1))
        return edge, dp

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        edge, dp = self._branches(x)
        return edge, None if dp is None else self.mean_shift(dp)

    def trainable_parameters(self) -> tuple[tuple[nn.Parameter, ...], tuple[nn.Parameter, ...]]:
        """(boundary-branch parameters with those of the ``trained_stages`` of the backbone, displacement-branch
        parameters; empty without the branch, which is frozen)."""
        edge = tuple(p for m in [*self.edge_layers, *self.backbone_trained] for p in m.parameters())
        dp = tuple(p for m in self.dp_layers for p in m.parameters() if p.requires_grad)
        return edge, dp

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """IRN's optimiser groups: boundary branch at ``lr``, displacement branch at 10 × ``lr``
        (VOC: 0.1 and 1.0); the boundary group alone without the displacement branch."""
        edge, dp = self.trainable_parameters()
        groups = [{"params": list(edge), "lr": lr, "weight_decay": weight_decay}]
        if dp:
            groups.append({"params": list(dp), "lr": 10 * lr, "weight_decay": weight_decay})
        return groups

    def train(self, mode: bool = True) -> IRNet:
        super().train(mode)
        self.backbone.eval()  # frozen: FixedBatchNorm ignores the mode anyway; keep it explicit
        return self

    @torch.no_grad()
    def estimate_mean_shift(self, batches: Iterable[torch.Tensor]) -> torch.Tensor:
        """Set ``mean_shift.running_mean`` to the mean displacement over ``batches`` and return it.

        batches: images [N, 3, H, W] (IRN: the training list, top-left crops, batch ``irn.train.batch_size``,
        last incomplete batch dropped). As IRN, the result is the mean of the per-batch means over
        (N, h, w). The raw (unshifted) displacement is used, so calling this twice gives the same value.
        """
        if not self.displacement:
            raise ValueError("estimate_mean_shift needs the displacement branch (irn.displacement: true)")
        was_training = self.training
        self.eval()
        means = []
        for x in batches:
            dp = self._branches(x)[1]
            assert dp is not None                    # the branch is on (checked above)
            means.append(dp.mean(dim=(0, 2, 3)))     # [2]
        self.train(was_training)
        if not means:
            raise ValueError("estimate_mean_shift got no batches: the image list is shorter than one batch")
        mean = torch.stack(means).mean(dim=0)
        self.mean_shift.running_mean.copy_(mean)
        log.info("displacement mean shift: (%.4f, %.4f)", mean[0].item(), mean[1].item())
        return mean


class AffinityDisplacementLoss(IRNet):
    """IRNet with IRN's training losses for one feature size (the crop's: ``crop_size // 4``).

    ``forward(img, bg_pos, fg_pos, neg)`` with img [N, 3, 4·h, 4·w] and the affinity labels
    [N, n_dirs, n_src] of ``net.path_index.affinity_labels`` returns the named loss terms (scalars):
    ``bg_pos_aff``, ``fg_pos_aff``, ``pos_aff`` (their mean), ``neg_aff``, ``dp_fg``, ``dp_bg`` and
    ``total = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2``. Each term is a label-masked sum divided by
    the label count of the batch (IRN's normalisation; under DDP that count is per rank). Without the
    displacement branch (``displacement=False``) there are no ``dp_*`` terms and ``total = (pos_aff + neg_aff) / 2``:
    the boundary branch's gradients are the same, since no dp term reaches its weights.
    """

    disp_target: torch.Tensor   # a non-persistent buffer: declared for the type checker

    def __init__(self, path_index: PathIndex, displacement: bool = True, trained_stages: int = 0):
        super().__init__(displacement, trained_stages)
        self.path_index = path_index
        # Derived from the geometry, so not saved (every IRN module shares IRNet's state-dict layout).
        # The path indices (≈210 MB of int64 for radius 10 on a 128×128 map) are kept per device outside
        # the module's buffers, so DDP does not broadcast them every step.
        self._path_indices: dict[torch.device, list[torch.Tensor]] = {}
        self.register_buffer("disp_target", path_index.displacement_target(), persistent=False)

    def to_affinity(self, edge_prob: torch.Tensor) -> torch.Tensor:
        """edge_prob: [N, 1, h, w] in [0, 1] -> affinities [N, n_dirs, n_src]."""
        if edge_prob.device not in self._path_indices:
            self._path_indices[edge_prob.device] = self.path_index.path_index_tensors(edge_prob.device)
        return edge_to_affinity(edge_prob, self._path_indices[edge_prob.device])

    # Not substitutable for an IRNet (the loss terms, not (edge, dp)): a subclass only to share IRNet's weights and
    # state-dict layout; nothing calls it as an IRNet.
    def forward(self, img: torch.Tensor, bg_pos: torch.Tensor, fg_pos: torch.Tensor,  # type: ignore[override]
                neg: torch.Tensor) -> dict[str, torch.Tensor]:
        edge, dp = super().forward(img)
        if tuple(edge.shape[-2:]) != self.path_index.size:
            raise ValueError(f"images of size {tuple(img.shape[-2:])} give {tuple(edge.shape[-2:])} feature maps but "
                             f"the path index was built for {self.path_index.size} (irn crop_size // 4)")
        # The losses in float32 whatever the caller's autocast: -log(aff + 1e-5) in bf16 would round the 1e-5 away.
        with torch.autocast(device_type=edge.device.type, enabled=False):
            return self._losses(edge.float(), None if dp is None else dp.float(), bg_pos.float(), fg_pos.float(),
                                neg.float())

    def _losses(self, edge: torch.Tensor, dp: torch.Tensor | None, bg_pos: torch.Tensor, fg_pos: torch.Tensor,
                neg: torch.Tensor) -> dict[str, torch.Tensor]:
        aff = self.to_affinity(torch.sigmoid(edge))  # [N, n_dirs, n_src]
        pos_aff_loss = -torch.log(aff + 1e-5)
        neg_aff_loss = -torch.log(1.0 + 1e-5 - aff)
        bg_pos_aff = (bg_pos * pos_aff_loss).sum() / (bg_pos.sum() + 1e-5)
        fg_pos_aff = (fg_pos * pos_aff_loss).sum() / (fg_pos.sum() + 1e-5)
        pos_aff = bg_pos_aff / 2 + fg_pos_aff / 2
        neg_aff = (neg * neg_aff_loss).sum() / (neg.sum() + 1e-5)
        terms = {"bg_pos_aff": bg_pos_aff, "fg_pos_aff": fg_pos_aff, "pos_aff": pos_aff, "neg_aff": neg_aff}
        if dp is None:
            return {**terms, "total": (pos_aff + neg_aff) / 2}

        pair_disp = self.path_index.to_displacement(dp)  # [N, 2, n_dirs, n_src]
        dp_fg_loss = (pair_disp - self.disp_target).abs()  # a pair of one instance differs by its offset
        dp_bg_loss = pair_disp.abs()
        # 2 displacement channels per pair, hence the factor 2 in the count
        dp_fg = (dp_fg_loss * fg_pos.unsqueeze(1)).sum() / (2 * fg_pos.sum() + 1e-5)
        dp_bg = (dp_bg_loss * bg_pos.unsqueeze(1)).sum() / (2 * bg_pos.sum() + 1e-5)
        total = (pos_aff + neg_aff) / 2 + (dp_fg + dp_bg) / 2
        return {**terms, "dp_fg": dp_fg, "dp_bg": dp_bg, "total": total}


class EdgeDisplacement(IRNet):
    """Inference: boundary probabilities from an image and its mirror, and the displacement field.

    Args:
        crop_size: images are zero-padded (bottom/right) to at least this size before the network, as
            IRN pads to its training crop (GroupNorm statistics then match training). Larger images are
            padded to their own size (IRN would crop them).
        stride: the output stride (4).
        displacement: compute the displacement field too (False: the boundary map alone, as the
            semantic pseudo masks need; the displacement is then None).

    ``forward(img)`` with img [3, H, W] or [1, 3, H, W] (ImageNet-normalised) returns
    (edge [1, h, w] = sigmoid((e(img) + flip(e(flip(img)))) / 2), displacement [2, h, w]) with
    h = ⌈H/4⌉, w = ⌈W/4⌉.
    """

    def __init__(self, crop_size: int = 512, stride: int = 4, displacement: bool = True):
        super().__init__(displacement)
        self.crop_size = crop_size
        self.stride = stride

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if img.dim() == 4:
            if img.shape[0] != 1:
                raise ValueError(f"EdgeDisplacement takes one image [1, 3, H, W], got {tuple(img.shape)}")
            img = img[0]
        h, w = img.shape[-2:]
        fh, fw = (h - 1) // self.stride + 1, (w - 1) // self.stride + 1
        x = torch.stack([img, img.flip(-1)])  # [2, 3, H, W]
        x = F.pad(x, [0, max(self.crop_size, w) - w, 0, max(self.crop_size, h) - h])
        edge, dp = super().forward(x)
        edge = edge[..., :fh, :fw]
        # the mirror's map is cropped first (its content is left-aligned too), then flipped back
        edge = torch.sigmoid(edge[0] / 2 + edge[1].flip(-1) / 2)  # [1, fh, fw]
        return edge, None if dp is None else dp[0, :, :fh, :fw]


# ---- the authors' checkpoint -----------------------------------------------------------------------------

# Official module names (jiwoon-ahn/irn net/resnet50_irn.py). Its shared submodules are saved once per
# name that reaches them: ``stage1 = Sequential(resnet50.conv1, resnet50.bn1, ...)``, ``stage{2..5}.0 =
# resnet50.layer{1..4}``, ``backbone.{i} = stage{i+1}``, ``edge_layers.{i} = fc_edge{i+1}``,
# ``dp_layers.{i} = fc_dp{i+1}`` and ``fc_dp7.4 = mean_shift``.
_ALIASES: list[tuple[re.Pattern, Callable[[re.Match], str]]] = [
    (re.compile(r"^backbone\.(\d)\.(.*)$"), lambda m: f"stage{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^edge_layers\.(\d)\.(.*)$"), lambda m: f"fc_edge{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^dp_layers\.(\d)\.(.*)$"), lambda m: f"fc_dp{int(m[1]) + 1}.{m[2]}"),
    (re.compile(r"^stage1\.0\.(.*)$"), lambda m: f"resnet50.conv1.{m[1]}"),
    (re.compile(r"^stage1\.1\.(.*)$"), lambda m: f"resnet50.bn1.{m[1]}"),
    (re.compile(r"^stage([2-5])\.0\.(.*)$"), lambda m: f"resnet50.layer{int(m[1]) - 1}.{m[2]}"),
    (re.compile(r"^fc_dp7\.4\.running_mean$"), lambda m: "mean_shift.running_mean"),
]
# Saved by the official training module but derived from the geometry (path indices of the training
# crop), or unused: the BatchNorm-based MeanShift of early IRN versions saved a variance nobody reads.
_DROPPED = re.compile(r"^(path_indices\d+|disp_target|ind_from|ind_to|fc_dp7\.4\.(running_var|num_batches_tracked))$")
_HEAD = re.compile(r"^(fc_edge[1-6]|fc_dp[1-7])\.(.*)$")


def _canonical(key: str) -> str:
    """Follow the alias chain (e.g. ``backbone.1.0.x`` -> ``stage2.0.x`` -> ``resnet50.layer1.x``)."""
    changed = True
    while changed:
        changed = False
        for pattern, target in _ALIASES:
            m = pattern.match(key)
            if m:
                key, changed = target(m), True
                break
    return key


def _our_key(canonical: str) -> str | None:
    if canonical.startswith("resnet50."):
        return "backbone." + canonical[len("resnet50."):]
    if canonical == "mean_shift.running_mean" or _HEAD.match(canonical):
        return canonical
    return None


def load_official_irn(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the authors' IRN state dict (``res50_irn.pth``, saved from ``AffinityDisplacementLoss``) onto
    ``IRNet``'s names, for ``model.load_state_dict(..., strict=True)``.

    Every alias of a shared submodule must hold the same tensor as its canonical name (else the file is
    not one model and this raises); path-index buffers are dropped; any other unknown key raises,
    naming it. A ``module.`` prefix (a DataParallel save) is removed.
    """
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    out: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, value in state_dict.items():
        canonical = _canonical(key)
        if _DROPPED.match(canonical):
            continue
        ours = _our_key(canonical)
        if ours is None:
            unknown.append(key)
            continue
        if ours in out:
            if out[ours].shape != value.shape or not torch.equal(out[ours], value):
                raise ValueError(f"official IRN state dict: {key!r} and {source[ours]!r} name the same shared "
                                 f"module but hold different values; the file is not an IRN checkpoint as saved")
            continue
        out[ours], source[ours] = value, key
    if unknown:
        raise KeyError(f"official IRN state dict has keys with no IRNet counterpart: {sorted(unknown)[:20]}"
                       f"{' …' if len(unknown) > 20 else ''} ({len(unknown)} in all); is it an IRN checkpoint?")
    return out
