"""Inter-pixel-relation (IR) labels from CAMs: confident foreground, confident background, the rest
uncertain (IRN's ``step/cam_to_ir_label.py``; QA-CLIMS uses it unchanged).

Two argmax maps are made from the high-resolution CAMs with a constant background plane in front:
once at ``fg_thres`` (0.30: only strong activations are foreground) and once at ``bg_thres`` (0.10:
everything weakly active is foreground, so only the rest is confidently background). Each is refined
by a dense CRF, mapped through the keys, and combined:

    label = fg                      where fg is a class
    label = 0                       where both are background
    label = 255 (uncertain)         where fg is background but bg is a class
"""
from __future__ import annotations

import logging

import numpy as np

from tool.seg.crf import crf_inference_label

log = logging.getLogger(__name__)

IGNORE = 255
_CRF_KEYS = {"t", "gt_prob", "gaussian_sxy", "gaussian_compat", "bilateral_sxy", "bilateral_srgb", "bilateral_compat"}


def combine_confident(fg_conf: np.ndarray, bg_conf: np.ndarray) -> np.ndarray:
    """IRN's combination of the two confident maps (labels 0 bg / 1..C): int [H, W] -> uint8 [H, W].

    Start from fg; where fg is background mark it uncertain (255); where both are background, 0.
    (A pixel that is a class in fg keeps fg's class, whatever bg says.)
    """
    fg = np.asarray(fg_conf, dtype=np.int64)
    bg = np.asarray(bg_conf, dtype=np.int64)
    conf = fg.copy()
    conf[fg == 0] = IGNORE
    conf[(fg == 0) & (bg == 0)] = 0  # the official ``bg + fg == 0`` on non-negative labels
    return conf.astype(np.uint8)


def _confident(img: np.ndarray, cams: np.ndarray, lut: np.ndarray, thres: np.float32,
                crf: dict | None) -> np.ndarray:
    """argmax over [thres, cams...] (ties: the first plane), CRF-refined, mapped to labels: [H, W] int64."""
    planes = np.concatenate([np.full((1, *cams.shape[1:]), thres, dtype=np.float32), cams], axis=0)  # [K+1, H, W]
    pred = np.argmax(planes, axis=0)
    if crf is not None:
        pred = crf_inference_label(img, pred, n_labels=lut.shape[0], **crf)
    return lut[pred]


def make_ir_label(img: np.ndarray, keys: np.ndarray, high_res_cams: np.ndarray, fg_thres: float = 0.30,
                  bg_thres: float = 0.10, crf: dict | None = None) -> np.ndarray:
    """The IR label of one image.

    Args:
        img: uint8 [H, W, 3] RGB (used by the CRF; its size is checked either way).
        keys: int [K] 0-based classes of the CAM planes.
        high_res_cams: [K, H, W] max-normalised CAMs (the ``high_res`` array of a CAM file; fp16 is
            compared in fp32).
        fg_thres, bg_thres: the background plane's value for the confident-fg and confident-bg maps.
        crf: keyword arguments of ``tool.seg.crf.crf_inference_label`` (``t``, ``gt_prob``, ``gaussian_sxy``,
            ``gaussian_compat``, ``bilateral_sxy``, ``bilateral_srgb``, ``bilateral_compat``; ``{}`` for
            IRN's defaults), or None for no CRF.

    Returns: uint8 [H, W]: 0 background, k + 1 for class k, 255 uncertain.
    """
    cams = np.asarray(high_res_cams, dtype=np.float32)
    keys = np.asarray(keys, dtype=np.int64).reshape(-1)  # [K]
    if cams.ndim != 3 or cams.shape[0] != keys.shape[0]:
        raise ValueError(f"high_res CAMs of shape {cams.shape} do not match {keys.shape[0]} keys: expected [K, H, W]")
    if not isinstance(img, np.ndarray) or img.shape[:2] != cams.shape[1:]:
        shape = img.shape if isinstance(img, np.ndarray) else type(img).__name__
        raise ValueError(f"image {shape} and CAMs {cams.shape[1:]} differ in size: the CAM file is not this image's")
    if not bg_thres <= fg_thres:
        raise ValueError(f"bg_thres ({bg_thres}) must not exceed fg_thres ({fg_thres})")
    if crf is not None and (unknown := set(crf) - _CRF_KEYS):
        raise KeyError(f"unknown CRF setting(s) {sorted(unknown)}; known: {sorted(_CRF_KEYS)}")
    if keys.shape[0] == 0:  # no class: every pixel is confident background
        return np.zeros(cams.shape[1:], dtype=np.uint8)
    lut = np.concatenate([[0], keys + 1])  # plane i -> label
    fg_conf = _confident(img, cams, lut, np.float32(fg_thres), crf)
    bg_conf = _confident(img, cams, lut, np.float32(bg_thres), crf)
    return combine_confident(fg_conf, bg_conf)
