"""CAM inference shared by the ``make_cam`` step and ``tool.predict``: a trained CAM net loaded by its source, and
its multi-scale, flip-summed CAMs of the present classes (IRN's make_cam; docs/design.md §3 item 5, §4 item 7).

CAM = ReLU(Wᵀ Z) of the image plus its flipped twin (flipped back), summed over the scales after
bilinear upsampling. Unlike the official code, the present classes are selected *before* the
upsampling (per-channel, so the maps are identical) — the expensive part shrinks from K to K' maps.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F

from net.resnet50_cam import CAMNet, map_official_cam_state
from net.weights import load_state_dict_strict
from tool.data.imutils import normalize_on_device, strided_size, strided_up_size
from tool.engine.checkpoint import load_model_file
from tool.engine.paths import WorkPaths
from tool.engine.runtime import autocast


def load_cam_model(paths: WorkPaths, source: str, num_classes: int, device: torch.device) -> CAMNet:
    """The CAM network of ``source`` (``make_cam.source``) with its trained weights, in eval mode on ``device``."""
    path = paths.cam_model(source)
    step = "train_cam" if source == "baseline" else "train_ritc"
    model = CAMNet(num_classes, pretrained=None)
    state = map_official_cam_state(load_model_file(path, f"make_cam.source={source} (step {step})", producer=step))
    load_state_dict_strict(model, state, source=str(path))
    return model.to(device).eval()


@torch.no_grad()
def multiscale_cam(model: CAMNet, imgs: list[torch.Tensor], keys: torch.Tensor, size: tuple[int, int],
                   device: torch.device, precision: str = "float32") -> tuple[torch.Tensor, torch.Tensor]:
    """CAMs of the present classes ``keys`` [K'] from the uint8 scaled images ``imgs`` ([3, h_s, w_s] each).
    ``precision`` (``make_cam.precision``) applies to the network; the scales are summed in float32.

    Returns (strided [K', ceil(H/4), ceil(W/4)], high_res [K', H, W]), both max-normalised per class.
    """
    if len(keys) == 0:     # no present class (an unlabelled image in a custom list): empty maps, not a crash
        return torch.zeros(0, *strided_size(size, 4), device=device), torch.zeros(0, *size, device=device)

    def per_scale():
        for img in imgs:
            x = normalize_on_device(img.to(device).unsqueeze(0))           # [1, 3, h, w]
            x = torch.cat([x, x.flip(-1)], dim=0)                          # [2, 3, h, w]: image and its flip
            with autocast(precision, device, key="make_cam.precision"):
                cam = model.cams(x).float()                                # [2, K, h/16, w/16]
            yield cam[0] + cam[1].flip(-1)                                 # [K, h/16, w/16]

    return fuse_scales(per_scale(), keys, size)


def fuse_scales(cams: Iterable[torch.Tensor], keys: torch.Tensor, size: tuple[int, int]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum over scales of the CAMs ``cams`` ([K, h_s, w_s] each) of the present classes ``keys``, upsampled to
    stride 4 and to the image ``size``; max-normalised. Only the K' present maps are upsampled (IRN upsamples
    all K, then keeps K'): the same maps for a fraction of the work (``bench/bench_make_cam.py``)."""
    s4, up16 = strided_size(size, 4), strided_up_size(size, 16)
    strided, high = None, None
    for cam in cams:
        cam = cam[keys].unsqueeze(0)                                       # [1, K', h_s, w_s] present only
        a = F.interpolate(cam, s4, mode="bilinear", align_corners=False)[0]
        b = F.interpolate(cam, up16, mode="bilinear", align_corners=False)[0, :, :size[0], :size[1]]
        strided = a if strided is None else strided + a
        high = b if high is None else high + b
    if strided is None or high is None:   # (was an AttributeError on None inside adaptive_max_pool2d)
        raise ValueError("make_cam.scales is empty: the CAMs of at least one input scale are needed (e.g. [1.0])")
    strided /= F.adaptive_max_pool2d(strided, (1, 1)) + 1e-5
    high /= F.adaptive_max_pool2d(high, (1, 1)) + 1e-5
    return strided, high
