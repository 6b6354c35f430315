"""multiscale_cam (tool.seg.cam_infer: make_cam's and predict's) on a stub network: flipped twins flipped back,
present classes picked, each plane max-normalised to 1 in both the stride-4 and the full-resolution array."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tool.data.cam_data import pil_rescale, to_chw_tensor
from tool.seg.cam_infer import fuse_scales, multiscale_cam


class ChannelCAM(torch.nn.Module):
    """CAM of class k = ReLU of the image's normalised colour channel k, average-pooled by 16, times a
    small weight (raw peaks below 0.1, as the smoke classifier's): black is 0 in every class, a pure
    red object lights class 0 only, a pure blue one class 2 only. It moves with the image, so a
    flipped twin whose CAM is not flipped back puts a mirror copy on the other side."""

    def cams(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.tensor([0.02, 0.03, 0.04]).view(1, 3, 1, 1)
        return F.relu(F.avg_pool2d(x, 16, ceil_mode=True)) * w          # [N, 3, ceil(h/16), ceil(w/16)]


def test_multiscale_cam_keeps_each_object_on_its_side_and_normalises_every_plane():
    h, w = 128, 160
    img = np.zeros((h, w, 3), np.uint8)
    img[:16, :32] = (255, 0, 0)          # class 0: top-left corner
    img[112:, 128:] = (0, 0, 255)          # class 2: bottom-right corner
    imgs = [to_chw_tensor(img), to_chw_tensor(pil_rescale(img, 0.5))]
    keys = torch.tensor([0, 2])          # class 1 absent: not exported
    strided, high = multiscale_cam(ChannelCAM(), imgs, keys, (h, w), torch.device("cpu"))
    assert strided.shape == (2, 32, 40) and high.shape == (2, h, w)
    for maps, stride in ((strided, 4), (high, 1)):
        # every present plane peaks at exactly 1 (raw sums peak near 0.2: the division is not optional)
        np.testing.assert_allclose(maps.amax(dim=(1, 2)).numpy(), [1.0, 1.0], atol=1e-3)
        red, blue = maps[0], maps[1]
        # the peaks sit on the objects ...
        assert red[: 16 // stride, : 32 // stride].max() == pytest.approx(1.0, abs=1e-3)
        assert blue[112 // stride:, 128 // stride:].max() == pytest.approx(1.0, abs=1e-3)
        # ... and the mirrored sides (left/right and top/bottom) hold nothing
        assert red[:, w // 2 // stride:].abs().max() == 0 and red[h // 2 // stride:].abs().max() == 0
        assert blue[:, : w // 2 // stride].abs().max() == 0 and blue[: h // 2 // stride].abs().max() == 0


def test_multiscale_cam_high_res_is_the_top_left_crop_of_the_stride_16_upsampling():
    # 120 × 152 is not a multiple of 16: the CAM (8 × 10 cells) is upsampled to 128 × 160 and cropped
    # to the image from the top-left, as IRN. The red object fills cells (0, 0) and (0, 1) exactly, so
    # (bilinear, align_corners=False, ×16) rows 0..7 and columns 0..23 take those cells' value alone:
    # after normalisation exactly 1, the plane's maximum.
    h, w = 120, 152
    img = np.zeros((h, w, 3), np.uint8)
    img[:16, :32] = (255, 0, 0)
    _, high = multiscale_cam(ChannelCAM(), [to_chw_tensor(img)], torch.tensor([0]), (h, w), torch.device("cpu"))
    assert high.shape == (1, h, w)
    np.testing.assert_allclose(high[0, :8, :24].numpy(), 1.0, atol=1e-3)   # max / (max + 1e-5)
    assert high[0, 8:, :].max() < 1 - 1e-3 and high[0, :, 24:].max() < 1 - 1e-3


def test_no_scale_is_refused_naming_the_key():
    # make_cam.scales: [] gave fuse_scales no CAM: an AttributeError on None deep in adaptive_max_pool2d
    with pytest.raises(ValueError, match=r"make_cam\.scales is empty"):
        fuse_scales(iter([]), torch.tensor([0]), (32, 32))
    strided, high = fuse_scales(iter([torch.ones(2, 2, 2)]), torch.tensor([1]), (32, 32))   # one scale is enough
    assert strided.shape == (1, 8, 8) and high.shape == (1, 32, 32)
    assert float(high.max()) == pytest.approx(1.0, abs=1e-4)
