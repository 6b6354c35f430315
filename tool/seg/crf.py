"""Fully connected CRF (Krähenbühl & Koltun 2011) through pydensecrf2 (``import pydensecrf.densecrf``).

Two uses:

- ``crf_inference_label``: refine a hard label map, as IRN's ``misc/imutils.crf_inference_label``
  (cam_to_ir_label: t 10, gt_prob 0.7, Gaussian sxy 3 compat 3, bilateral sxy 50 srgb 5 compat 10).
- ``crf_inference_prob``: refine class probabilities, as deeplab-pytorch's ``DenseCRF`` post-processing
  at DeepLab evaluation (10 iterations, Gaussian sxy 1 compat 3, bilateral sxy 67 srgb 3 compat 4).

Both name the kernels' settings the same way (pydensecrf's: ``sxy``, ``srgb``, ``compat``), as the one
config section type both come from (``irn.crf``, ``deeplab_eval.crf``: ``CrfConfig``); ``crf_kwargs``
turns such a section into the keyword arguments.

Both take the raw uint8 RGB image [H, W, 3]; a normalised float image would make the bilateral term
meaningless, so any other dtype is an error.
"""
from __future__ import annotations

import logging

import numpy as np

from tool.engine.config import CrfConfig

log = logging.getLogger(__name__)


def crf_kwargs(section: CrfConfig, labels: bool) -> dict | None:
    """Keyword arguments of ``crf_inference_label`` (``labels``) or ``crf_inference_prob`` from a CRF config
    section, or None when it is off."""
    if not section.enabled:
        return None
    kw = {"t": section.iterations, "gaussian_sxy": section.gaussian_sxy, "gaussian_compat": section.gaussian_compat,
          "bilateral_sxy": section.bilateral_sxy, "bilateral_srgb": section.bilateral_srgb,
          "bilateral_compat": section.bilateral_compat}
    return {**kw, "gt_prob": section.gt_prob} if labels else kw


def _check_image(img: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    if not isinstance(img, np.ndarray) or img.dtype != np.uint8:
        kind = img.dtype if isinstance(img, np.ndarray) else type(img).__name__
        raise TypeError(f"the CRF needs the raw uint8 RGB image [H, W, 3], got {kind}; pass the decoded image, "
                        f"not a normalised tensor")
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"the CRF needs an RGB image [H, W, 3], got shape {img.shape}")
    if size is not None and img.shape[:2] != tuple(size):
        raise ValueError(f"image of size {img.shape[:2]} does not match the label/probability map {tuple(size)}")
    return np.ascontiguousarray(img)


def crf_inference_label(img: np.ndarray, labels: np.ndarray, n_labels: int, t: int = 10, gt_prob: float = 0.7,
                        gaussian_sxy: float = 3, gaussian_compat: float = 3, bilateral_sxy: float = 50,
                        bilateral_srgb: float = 5, bilateral_compat: float = 10) -> np.ndarray:
    """Refine a label map with a dense CRF whose unary trusts each label with probability ``gt_prob``.

    Args:
        img: uint8 [H, W, 3] RGB.
        labels: int [H, W] in ``[0, n_labels)``.
        n_labels: number of labels (≥ 2).

    Returns: int64 [H, W], the argmax of the CRF marginals after ``t`` mean-field iterations.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    labels = np.asarray(labels)
    img = _check_image(img, labels.shape)
    if n_labels < 2:
        raise ValueError(f"crf_inference_label needs at least 2 labels, got n_labels={n_labels}")
    if labels.min() < 0 or labels.max() >= n_labels:
        raise ValueError(f"labels must lie in [0, {n_labels}), got [{labels.min()}, {labels.max()}]")
    h, w = labels.shape
    d = dcrf.DenseCRF2D(w, h, n_labels)
    d.setUnaryEnergy(unary_from_labels(labels, n_labels, gt_prob=gt_prob, zero_unsure=False))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=img, compat=bilateral_compat)
    q = np.array(d.inference(t)).reshape(n_labels, h, w)  # [n_labels, H, W] marginals
    return np.argmax(q, axis=0)


def crf_inference_prob(img: np.ndarray, probs: np.ndarray, t: int = 10, gaussian_sxy: float = 1,
                       gaussian_compat: float = 3, bilateral_sxy: float = 67, bilateral_srgb: float = 3,
                       bilateral_compat: float = 4) -> np.ndarray:
    """Refine class probabilities with a dense CRF (deeplab-pytorch's ``DenseCRF``).

    Args:
        img: uint8 [H, W, 3] RGB.
        probs: [C, H, W] class probabilities (softmax output); clipped at 1e-5 for the unary −log p.

    Returns: float32 [C, H, W], the CRF marginals after ``t`` mean-field iterations.
    """
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 3:
        raise ValueError(f"probs must be [C, H, W], got shape {probs.shape}")
    c, h, w = probs.shape
    img = _check_image(img, (h, w))
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=gaussian_sxy, compat=gaussian_compat)
    d.addPairwiseBilateral(sxy=bilateral_sxy, srgb=bilateral_srgb, rgbim=img, compat=bilateral_compat)
    return np.array(d.inference(t), dtype=np.float32).reshape(c, h, w)  # [C, H, W] marginals
