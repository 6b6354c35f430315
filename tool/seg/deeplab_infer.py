"""DeepLab inference of one image, shared by the ``eval_deeplab`` step and ``tool.stage_study``'s recognition
oracle: the logits at the image's size (single scale or MSC, optionally with the mirror image), the same logits
with the classes an image does not hold taken out, and the label map from them (argmax, or the dense CRF's).
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
import torch.nn.functional as F

from net.deeplab import normalize_input, predict_logits
from tool.engine.config import Config
from tool.engine.runtime import autocast
from tool.seg.crf import crf_inference_prob


def image_logits(model, img: np.ndarray, cfg: Config, device: torch.device,
                 fmt: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Logits [K, H, W] float32 of the uint8 RGB image ``img`` [H, W, 3] as ``eval_deeplab`` makes them: the
    network's output (``deeplab_eval.msc`` / ``flip``, autocast to ``deeplab_eval.precision``) upsampled bilinearly
    to the image's size."""
    e = cfg.deeplab_eval
    x = normalize_input(torch.from_numpy(img).permute(2, 0, 1)[None].to(device), None,
                        cfg.deeplab.pretrained_format)                          # [1, 3, H, W]
    x = x.contiguous(memory_format=fmt)
    with autocast(e.precision, device, key="deeplab_eval.precision"):
        logits = predict_logits(model, x, e.msc, e.flip)                      # [1, K, h, w]
    return F.interpolate(logits.float(), size=img.shape[:2], mode="bilinear", align_corners=False)[0]


def only_classes(logits: torch.Tensor, present: Iterable[int]) -> torch.Tensor:
    """``logits`` [K, H, W] with every class outside ``present`` (label indices; background is 0 and always kept)
    at −inf: after the softmax those classes have probability 0 and the argmax picks among the image's own."""
    keep = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    keep[0] = True
    keep[[int(c) for c in present]] = True
    return logits.masked_fill(~keep[:, None, None], float("-inf"))


def argmax_labels(logits: torch.Tensor) -> np.ndarray:
    """The label map uint8 [H, W] of ``logits`` [K, H, W] without a CRF."""
    return logits.argmax(dim=0).to(torch.uint8).cpu().numpy()


def crf_labels(img: np.ndarray, probs: np.ndarray, crf: dict) -> np.ndarray:
    """The label map uint8 [H, W] after the dense CRF (``crf``: ``crf_kwargs`` of ``deeplab_eval.crf``) of the
    softmax ``probs`` float32 [K, H, W] on the uint8 RGB image ``img`` [H, W, 3]."""
    return crf_inference_prob(img, probs, **crf).argmax(axis=0).astype(np.uint8)


def predict_labels(img: np.ndarray, logits: torch.Tensor, crf: dict | None) -> np.ndarray:
    """``eval_deeplab``'s prediction of ``img`` from its ``logits`` [K, H, W]: the CRF's labels when ``crf`` is set,
    else the argmax."""
    if not crf:
        return argmax_labels(logits)
    return crf_labels(img, F.softmax(logits, dim=0).cpu().numpy(), crf)
