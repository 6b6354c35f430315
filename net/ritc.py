"""RITC maths (paper §3.3, Eq. 1–11): FAT, region images, FG text pooling, FRC / BRC / REG losses.

Everything here is batched over the positive (image, class) pairs of a batch — no Python loop over
samples or pairs — and follows docs/design.md §4. The default ``variant="official"`` reproduces the
official code (CVI-SZU/QA-CLIMS: ``clip_loss.py``, ``step/train_qa_clims.py``, ``net/vqa_fg.py``,
``net/mask_adapter.py``); ``variant="paper"`` switches to the equations as printed:

====================  ==========================================  =====================================
item                  official (default)                          paper
====================  ==========================================  =====================================
FG text v̄_tf (1)      0.5·f_t(class) + 0.5·mean(answers), not      mean of the L+1 texts, re-normalised
                      re-normalised                               (so sim is a cosine)
BRC numerator (2)     mean_n e^{s_bb,n/τ} (log-mean-exp)          e^{mean_n s_bb,n / τ}
reduction (3)         ``reduction="sum"`` over pairs               ``reduction="mean"`` (separate switch)
mask-CLIP input (5)   X·P with patch mask b (BG: X·(1−P), 1−b)     X·R_f / X·R_b (Eq. 10) with the mask
====================  ==========================================  =====================================

Similarities, both variants: s = ⟨v/‖v‖, t⟩ with v the CLIP image embedding (normalised here, as the
official loss does) and t the stored text features (unit-norm per text, from the text tower); only
the pooled FG text differs as above. τ divides every similarity (the paper's missing τ in one BRC
term is a typo, docs/design.md §4). Losses are computed in fp32 with autocast off.

Typical step (the integrator's ``train_ritc``)::

    region = build_region_images(x, P, labels, size=224, mask_clip=True, patch_size=14)
    feats = clip_visual(region.images, region.patch_mask)          # FG and BG in one forward
    v_if, v_ib = region.split(feats)
    texts = bank.gather(image_ids, region.pair_image, region.pair_class)
    losses = ritc_losses(P, v_if, v_ib, texts, tau=0.7)
    loss = total(losses, alpha=10, beta=8, gamma=0.2)
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from net.clip_mask import patch_mask_from_pixels

log = logging.getLogger(__name__)

VARIANTS = ("official", "paper")
REDUCTIONS = ("sum", "mean")
# Text features are expected unit-norm (CLIP text embeddings divided by their norm); fp16 storage
# stays well inside this tolerance.
_NORM_TOL = 1e-2


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown RITC variant {variant!r}: expected one of {VARIANTS}")


# ----------------------------------------------------------------------------------------- FAT (Eq. 9–10)

def fat_masks(P: torch.Tensor, omega: float = 0.1) -> torch.Tensor:
    """Foreground adaptive thresholding, Eq. 9: θ_k = ω·max(P_k), b_k = 1[P_k ≥ θ_k].

    The max is over the spatial map of each (image, class) separately. ``>=`` as in the paper and the
    official ``MaskAdapter_DynamicThreshold``: pixels equal to θ are foreground. Edge cases (same in
    the official code): an all-zero map has θ = ω·0 = 0, so every pixel passes and b is all ones
    (R_f = P·b = 0 and R_b = (1−P)·(1−b) = 0: both region images are black); ω = 0 gives b = 1
    everywhere for any non-negative map; ω = 1 keeps only the pixels at the maximum.

    No gradient flows through b (a step function); it is returned detached.

    Args:
        P: [..., H, W] activation maps in [0, 1] (sigmoid CAMs at the CLIP input size, Eq. 2).
        omega: filtering ratio ω ∈ [0, 1] (paper 0.1).

    Returns:
        b: [..., H, W] float 0/1 mask, P's dtype.
    """
    if not 0.0 <= omega <= 1.0:
        raise ValueError(f"FAT ratio omega={omega} must be in [0, 1]")
    P = P.detach()
    theta = omega * P.amax(dim=(-2, -1), keepdim=True)  # [..., 1, 1]
    return (P >= theta).to(P.dtype)


def region_masks(P: torch.Tensor, b: torch.Tensor,
                 b_bg: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Region masks, Eq. 10: R_f = P·b, R_b = (1 − P)·(1 − b).

    Args:
        P: [..., H, W] activation maps in [0, 1].
        b: [..., H, W] FAT mask (:func:`fat_masks`).
        b_bg: [..., H, W] background binary mask; None → 1 − b (Eq. 10). FAT off passes ones for
            both, which gives CLIMS' R_f = P, R_b = 1 − P.

    Returns:
        (R_f, R_b), each [..., H, W], differentiable w.r.t. P.
    """
    if b_bg is None:
        b_bg = 1 - b
    return P * b, (1 - P) * b_bg


# ------------------------------------------------------------------------------- region images (Eq. 3–4)

@dataclass(frozen=True)
class RegionBatch:
    """FG and BG region images of the positive pairs of a batch, ready for ONE CLIP forward.

    Attributes:
        images: [2Q, 3, S, S]; rows [0, Q) are the FG images of the pairs, rows [Q, 2Q) their BG images.
        patch_mask: [2Q, (S/patch)²] bool visible patches for the mask-prompt CLIP, or None.
        pair_image: [Q] int64 index of each pair's image in the batch.
        pair_class: [Q] int64 class index (0-based, no background) of each pair.
    """

    images: torch.Tensor
    patch_mask: torch.Tensor | None
    pair_image: torch.Tensor
    pair_class: torch.Tensor

    @property
    def num_pairs(self) -> int:
        return int(self.pair_image.numel())

    def split(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: [2Q, E] CLIP embeddings of ``images`` → (v_if [Q, E], v_ib [Q, E])."""
        q = self.num_pairs
        if feats.shape[0] != 2 * q:
            raise ValueError(f"expected {2 * q} CLIP embeddings (FG then BG), got {feats.shape[0]}")
        return feats[:q], feats[q:]


def resize_bilinear(t: torch.Tensor, size: int) -> torch.Tensor:
    """t: [B, C, H, W] → [B, C, size, size], bilinear with align_corners=True (docs/design.md §4 item 4)."""
    if t.shape[-2:] == (size, size):
        return t
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=True)


def positive_pairs(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """labels: [N, K] multi-hot → (pair_image [Q], pair_class [Q]) int64, image-major order.

    Image-major order equals the official ``nonzero(label == 1)`` order. Computed on the labels'
    device: with CPU labels (as the loader yields them) no GPU synchronisation is needed.
    """
    if labels.dim() != 2:
        raise ValueError(f"labels must be [N, K] multi-hot, got shape {tuple(labels.shape)}")
    pair_image, pair_class = (labels > 0).nonzero(as_tuple=True)
    return pair_image, pair_class


def build_region_images(x: torch.Tensor, P: torch.Tensor, labels: torch.Tensor, *, size: int = 224,
                        omega: float = 0.1, fat: bool = True, mask_clip: bool = False, patch_size: int = 14,
                        variant: str = "official") -> RegionBatch:
    """FG / BG region images of every positive (image, class) pair, stacked for one CLIP forward.

    Eq. 9–10 and Eq. 3–4's inputs: P and x are brought to the CLIP size S by bilinear
    interpolation (align_corners=True; skipped when already S), only the Q positive maps are
    upsampled (interpolation is per channel, so this equals upsampling all N·K maps first), FAT runs
    on the upsampled maps, then

    - plain CLIP (``mask_clip=False``), both variants: FG = X·R_f, BG = X·R_b (Eq. 10);
    - mask-prompt CLIP, ``variant="official"``: FG = X·P with patch mask from b, BG = X·(1−P) with
      patch mask from 1−b (docs/design.md §4 item 5; the official ``encode_image(fg, m=fg_mask)``);
    - mask-prompt CLIP, ``variant="paper"``: FG = X·R_f, BG = X·R_b, with the same patch masks.

    ``fat=False`` is the "no FAT" ablation: the official repo has no such switch (its FAT module is
    always on, and ω = 0 would make b ≡ 1 and the BG image black), so it follows the paper's
    description of the baseline it improves on (CLIMS): FG = X·P, BG = X·(1−P), every patch visible.

    Args:
        x: [N, 3, H, W] images as the CAM net receives them (ImageNet-normalised, docs/design.md §4 item 4).
        P: [N, K, h, w] sigmoid activation maps (Eq. 2), any resolution.
        labels: [N, K] multi-hot image labels (any device).
        size: CLIP input size S. omega: FAT ratio ω. fat: FAT on/off.
        mask_clip: build patch masks for :class:`net.clip_mask.MaskPromptCLIPVisual`.
        patch_size: the ViT patch size (for the patch masks; S must be a multiple of it).
        variant: "official" | "paper" (see above).

    Returns:
        :class:`RegionBatch` with images [2Q, 3, S, S] (FG rows then BG rows), patch masks
        [2Q, (S/patch)²] or None, and the pair → image / class indices [Q].
    """
    _check_variant(variant)
    if x.shape[0] != P.shape[0] or labels.shape != P.shape[:2]:
        raise ValueError(f"batch mismatch: x {tuple(x.shape)}, P {tuple(P.shape)}, labels {tuple(labels.shape)}")
    pair_image, pair_class = positive_pairs(labels)
    pair_image = pair_image.to(P.device, non_blocking=True)
    pair_class = pair_class.to(P.device, non_blocking=True)

    p = resize_bilinear(P[pair_image, pair_class].unsqueeze(1), size)  # [Q, 1, S, S]
    if fat:
        b = fat_masks(p, omega)
        b_bg = 1 - b
    else:
        b = b_bg = torch.ones_like(p)
    if mask_clip and variant == "official":
        m_fg, m_bg = p, 1 - p
    else:
        m_fg, m_bg = region_masks(p, b, b_bg)
    # Stack the 1-channel masks, not the 3-channel images: one gather and one product build all 2Q images.
    masks = torch.cat([m_fg, m_bg], dim=0)  # [2Q, 1, S, S]
    images = resize_bilinear(x, size)[torch.cat([pair_image, pair_image])] * masks  # [2Q, 3, S, S]
    patch_mask = None
    if mask_clip:
        patch_mask = torch.cat([patch_mask_from_pixels(b, patch_size),
                                patch_mask_from_pixels(b_bg, patch_size)], dim=0)  # [2Q, (S/patch)²]
    return RegionBatch(images=images, patch_mask=patch_mask, pair_image=pair_image, pair_class=pair_class)


# ------------------------------------------------------------------------------------------ text bank

@dataclass(frozen=True)
class PairTexts:
    """Text features of Q pairs, gathered from a :class:`TextBank`.

    Attributes:
        class_feat: [Q, D] f_t("a photo of {class}.") of each pair's class.
        fg_feats: [Q, L, D] FG answer features (padding rows are zeros); fg_valid: [Q, L] bool.
        bg_feats: [Q, N, D] BG answer features; bg_valid: [Q, N] bool.
        pair_valid: [Q] bool, the pair is in the bank and has ≥ 1 BG text (others are skipped).
    """

    class_feat: torch.Tensor
    fg_feats: torch.Tensor
    fg_valid: torch.Tensor
    bg_feats: torch.Tensor
    bg_valid: torch.Tensor
    pair_valid: torch.Tensor


def _check_unit_norm(feats: torch.Tensor, what: str) -> None:
    if feats.numel() == 0:
        return
    norms = feats.float().norm(dim=-1)
    worst = (norms - 1).abs().max().item()
    if worst > _NORM_TOL:
        raise ValueError(f"{what}: text features must be L2-normalised (CLIP text embedding / its norm); "
                         f"a norm differs from 1 by {worst:.3g}")


def _pad_index(rows: Sequence[Sequence[int]], pad: int) -> torch.Tensor:
    width = max((len(r) for r in rows), default=0)
    out = np.full((len(rows) + 1, width), pad, dtype=np.int64)  # +1: the all-padding row of unknown pairs
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return torch.from_numpy(out)


class TextBank:
    """Padded, on-device text features of every (image, class) pair, built once per training run.

    Storage is one table of text features plus per-pair index rows (not [num_pairs, L, D] copies), so
    a COCO-sized corpus fits in memory when the texts are the unique texts of the ``text_feats`` step:

    - ``feats`` [T+1, D]: text features; the last row is zeros and is the padding target;
    - ``class_feats`` [K, D]: f_t of the class-name prompt per class;
    - ``fg_index`` [M+1, L_max], ``bg_index`` [M+1, N_max] int64 rows into ``feats`` (pad = T);
      row M is all padding and stands for a pair that is not in the bank;
    - ``pair_index`` [num_images, K] int64: pair row of (image, class), M when absent.

    :meth:`gather` turns a step's pairs into :class:`PairTexts` with a handful of device gathers and
    no host→device copy of features.
    """

    def __init__(self, feats: torch.Tensor, class_feats: torch.Tensor, fg_index: torch.Tensor,
                 bg_index: torch.Tensor, pair_index: torch.Tensor):
        self.feats = feats
        self.class_feats = class_feats
        self.fg_index = fg_index
        self.bg_index = bg_index
        self.pair_index = pair_index

    @property
    def num_pairs(self) -> int:
        return int(self.fg_index.shape[0]) - 1

    @property
    def device(self) -> torch.device:
        return self.feats.device

    @classmethod
    def from_indexed(cls, feats: torch.Tensor, class_feats: torch.Tensor, pair_image: Sequence[int],
                     pair_class: Sequence[int], fg_index: Sequence[Sequence[int]], bg_index: Sequence[Sequence[int]],
                     num_images: int, device: torch.device | str = "cpu",
                     dtype: torch.dtype | None = None) -> TextBank:
        """Bank from a feature table and per-pair index lists (the ``text_feats`` artefact layout).

        Args:
            feats: [T, D] unit-norm text features (e.g. the unique texts, each encoded once).
            class_feats: [K, D] unit-norm class-name prompt features.
            pair_image / pair_class: [M] dataset image index and 0-based class of each pair.
            fg_index / bg_index: M lists of rows of ``feats`` (FG answers; BG answers, may be empty).
            num_images: number of dataset images (rows of ``pair_index``).
            device / dtype: where and how to keep the bank (dtype None keeps feats' dtype).
        """
        m = len(pair_image)
        if not (len(pair_class) == len(fg_index) == len(bg_index) == m):
            raise ValueError(f"per-pair lists differ in length: pair_image {m}, pair_class {len(pair_class)}, "
                             f"fg_index {len(fg_index)}, bg_index {len(bg_index)}")
        if feats.dim() != 2 or class_feats.dim() != 2 or feats.shape[1] != class_feats.shape[1]:
            raise ValueError(f"feats {tuple(feats.shape)} and class_feats {tuple(class_feats.shape)} must be "
                             f"[T, D] and [K, D] with the same D")
        t, k = feats.shape[0], class_feats.shape[0]
        _check_unit_norm(feats, "TextBank feats")
        _check_unit_norm(class_feats, "TextBank class_feats")
        for name, rows in (("fg_index", fg_index), ("bg_index", bg_index)):
            for i, r in enumerate(rows):
                if any(not 0 <= j < t for j in r):
                    raise ValueError(f"{name}[{i}] = {list(r)} has a row outside [0, {t})")
        pair_index = np.full((num_images, k), m, dtype=np.int64)
        for i, (img, c) in enumerate(zip(pair_image, pair_class)):
            if not (0 <= img < num_images and 0 <= c < k):
                raise ValueError(f"pair {i}: (image {img}, class {c}) outside {num_images} images × {k} classes")
            if pair_index[img, c] != m:
                raise ValueError(f"pair {i}: (image {img}, class {c}) appears twice")
            pair_index[img, c] = i
        dtype = dtype or feats.dtype
        table = torch.cat([feats, feats.new_zeros(1, feats.shape[1])])  # [T+1, D]; row T = padding
        return cls(feats=table.to(device=device, dtype=dtype),
                   class_feats=class_feats.to(device=device, dtype=dtype),
                   fg_index=_pad_index(fg_index, t).to(device),
                   bg_index=_pad_index(bg_index, t).to(device),
                   pair_index=torch.from_numpy(pair_index).to(device))

    @classmethod
    def from_lists(cls, class_feats: torch.Tensor, pair_image: Sequence[int], pair_class: Sequence[int],
                   fg_feats: Sequence[torch.Tensor], bg_feats: Sequence[torch.Tensor | None], num_images: int,
                   device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> TextBank:
        """Bank from per-pair feature tensors: fg_feats[i] [L_i, D], bg_feats[i] [N_i, D] or None (no BG).

        The tensors are concatenated into one table (no de-duplication); see :meth:`from_indexed`
        for the other arguments.
        """
        chunks: list[torch.Tensor] = []
        fg_rows: list[list[int]] = []
        bg_rows: list[list[int]] = []
        start = 0
        for rows, feats_list in ((fg_rows, fg_feats), (bg_rows, bg_feats)):
            for f in feats_list:
                n = 0 if f is None else int(f.shape[0])
                rows.append(list(range(start, start + n)))
                if f is not None and n:
                    chunks.append(f)
                start += n
        d = class_feats.shape[1]
        table = torch.cat(chunks) if chunks else class_feats.new_zeros(0, d)
        return cls.from_indexed(table, class_feats, pair_image, pair_class, fg_rows, bg_rows, num_images,
                                device=device, dtype=dtype)

    def to(self, device: torch.device | str) -> TextBank:
        return TextBank(self.feats.to(device), self.class_feats.to(device), self.fg_index.to(device),
                        self.bg_index.to(device), self.pair_index.to(device))

    def check_coverage(self, labels: torch.Tensor) -> None:
        """Raise if a positive (image, class) of ``labels`` [num_images, K] has no pair in the bank.

        Run once after building: :meth:`gather` skips unknown pairs silently (it must not
        synchronise the GPU), so this is where a corpus that misses pairs is caught.
        """
        pos = (labels.to(self.pair_index.device) > 0)
        missing = (pos & (self.pair_index == self.num_pairs)).nonzero().tolist()
        if missing:
            raise ValueError(f"{len(missing)} labelled (image, class) pairs have no texts in the bank, e.g. "
                             f"{missing[:5]}; rerun the qape / text_feats steps for this image list")

    def gather(self, image_ids: torch.Tensor, pair_image: torch.Tensor, pair_class: torch.Tensor) -> PairTexts:
        """Texts of a step's pairs.

        Args:
            image_ids: [N] dataset index of each batch image.
            pair_image: [Q] batch index of each pair's image; pair_class: [Q] its class.

        Returns:
            :class:`PairTexts` on the bank's device.
        """
        dev = self.device
        image_ids = image_ids.to(dev, non_blocking=True)
        pair_image = pair_image.to(dev, non_blocking=True)
        pair_class = pair_class.to(dev, non_blocking=True)
        rows = self.pair_index[image_ids[pair_image], pair_class]  # [Q]
        fg_idx = self.fg_index[rows]  # [Q, L]
        bg_idx = self.bg_index[rows]  # [Q, N]
        pad = self.feats.shape[0] - 1
        bg_valid = bg_idx != pad
        return PairTexts(class_feat=self.class_feats[pair_class], fg_feats=self.feats[fg_idx], fg_valid=fg_idx != pad,
                         bg_feats=self.feats[bg_idx], bg_valid=bg_valid,
                         pair_valid=(rows != self.num_pairs) & bg_valid.any(dim=1))


# -------------------------------------------------------------------------------------- losses (Eq. 1–11)

def fg_text_pool(class_feat: torch.Tensor, answer_feats: torch.Tensor, answer_valid: torch.Tensor,
                 variant: str = "official") -> torch.Tensor:
    """Pooled FG text feature v̄_tf of Eq. 6/8 (docs/design.md §4 item 1).

    official: 0.5·f_t(class) + 0.5·mean of the valid answers, not re-normalised (``FG_VQA.forward``,
    label weight 0.5, answer weights 1/L); a pair with no valid answer ("no QAPE": FG = class name)
    gets f_t(class).
    paper: mean of the L+1 texts (class name and answers), re-normalised to unit norm.

    Args:
        class_feat: [Q, D] unit-norm class-name features.
        answer_feats: [Q, L, D] unit-norm answer features (invalid rows ignored).
        answer_valid: [Q, L] bool.
        variant: "official" | "paper".

    Returns:
        [Q, D] pooled FG text features.
    """
    _check_variant(variant)
    valid = answer_valid.to(answer_feats.dtype).unsqueeze(-1)  # [Q, L, 1]
    count = valid.sum(dim=1)  # [Q, 1]
    answer_sum = (answer_feats * valid).sum(dim=1)  # [Q, D]
    if variant == "official":
        pooled = 0.5 * class_feat + 0.5 * (answer_sum / count.clamp_min(1))
        return torch.where(count > 0, pooled, class_feat)
    return F.normalize((class_feat + answer_sum) / (1 + count), dim=-1)


def _similarities(v: torch.Tensor, t_fg: torch.Tensor, t_bg: torch.Tensor,
                  tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """v: [Q, E] image embeddings → (s_fg [Q], s_bg [Q, N]) = ⟨v/‖v‖, t⟩ / τ."""
    v = F.normalize(v, dim=-1)
    s_fg = (v * t_fg).sum(dim=-1) / tau  # [Q]
    s_bg = torch.einsum("qd,qnd->qn", v, t_bg) / tau  # [Q, N]
    return s_fg, s_bg


def frc_loss(v_if: torch.Tensor, t_fg: torch.Tensor, t_bg: torch.Tensor, bg_valid: torch.Tensor,
             tau: float = 0.7) -> torch.Tensor:
    """Foreground region contrastive loss per pair, Eq. 5–6.

    L_FRC = −log( e^{s_ff/τ} / (e^{s_ff/τ} + Σ_n e^{s_fb,n/τ}) ) with s_ff = sim(v_if, v̄_tf),
    s_fb,n = sim(v_if, v_tb,n); computed as logsumexp(...) − s_ff/τ. The same in both variants (the
    variant acts through t_fg). A pair without valid BG text gets 0 (it is skipped upstream).

    Args:
        v_if: [Q, E] CLIP embeddings of the FG region images (normalised here).
        t_fg: [Q, E] pooled FG texts (:func:`fg_text_pool`). t_bg: [Q, N, E] BG texts.
        bg_valid: [Q, N] bool. tau: temperature τ.

    Returns:
        [Q] per-pair losses.
    """
    s_ff, s_fb = _similarities(v_if, t_fg, t_bg, tau)
    s_fb = s_fb.masked_fill(~bg_valid, float("-inf"))
    logits = torch.cat([s_ff.unsqueeze(1), s_fb], dim=1)  # [Q, 1+N]
    loss = torch.logsumexp(logits, dim=1) - s_ff
    return torch.where(bg_valid.any(dim=1), loss, torch.zeros_like(loss))


def brc_loss(v_ib: torch.Tensor, t_fg: torch.Tensor, t_bg: torch.Tensor, bg_valid: torch.Tensor,
             tau: float = 0.7, variant: str = "official") -> torch.Tensor:
    """Background region contrastive loss per pair, Eq. 7–8.

    L_BRC = −log( B / (B + e^{s_bf/τ}) ), s_bf = sim(v_ib, v̄_tf), s_bb,n = sim(v_ib, v_tb,n), with
    official: B = mean_n e^{s_bb,n/τ} (``InfoNCELossBG``: log-mean-exp over the valid BG texts);
    paper:    B = e^{mean_n s_bb,n / τ}.
    Computed in log space: log B, then logaddexp(log B, s_bf/τ) − log B. A pair without valid BG text
    gets 0 (its terms are made finite first so that no NaN reaches the gradient).

    Args:
        v_ib: [Q, E] CLIP embeddings of the BG region images (normalised here).
        t_fg: [Q, E], t_bg: [Q, N, E], bg_valid: [Q, N] as in :func:`frc_loss`.
        tau: temperature τ. variant: "official" | "paper".

    Returns:
        [Q] per-pair losses.
    """
    _check_variant(variant)
    has_bg = bg_valid.any(dim=1)  # [Q]
    if t_bg.shape[1] == 0:  # no pair has BG text: one padding column keeps the maths well-formed
        t_bg = t_bg.new_zeros(t_bg.shape[0], 1, t_bg.shape[2])
        bg_valid = bg_valid.new_zeros(bg_valid.shape[0], 1)
    # A BG-less pair uses its first (padding) column as a dummy text: finite, then zeroed below.
    safe_valid = bg_valid.clone()
    safe_valid[:, 0] |= ~has_bg
    s_bf, s_bb = _similarities(v_ib, t_fg, t_bg, tau)
    count = safe_valid.sum(dim=1).to(s_bb.dtype)  # [Q]
    if variant == "official":
        log_b = torch.logsumexp(s_bb.masked_fill(~safe_valid, float("-inf")), dim=1) - count.log()
    else:
        log_b = (s_bb * safe_valid).sum(dim=1) / count
    loss = torch.logaddexp(log_b, s_bf) - log_b
    return torch.where(has_bg, loss, torch.zeros_like(loss))


def reg_loss(P: torch.Tensor) -> torch.Tensor:
    """Area regularisation, Eq. 11: mean of P over all N·K·h·w values (absent classes included).

    P: [N, K, h, w] sigmoid maps at the network's output stride (not upsampled). Returns a scalar.
    """
    return P.float().mean()


def ritc_losses(P: torch.Tensor, v_if: torch.Tensor, v_ib: torch.Tensor, texts: PairTexts, *,
                tau: float = 0.7, variant: str = "official", reduction: str = "sum") -> dict[str, torch.Tensor]:
    """FRC (Eq. 5–6), BRC (Eq. 7–8) and REG (Eq. 11) of one batch.

    Pairs with ``texts.pair_valid`` False (no BG text, or not in the bank) are masked out, as the
    official loop ``continue``s. ``reduction``: "sum" over the valid pairs (official, docs/design.md §4 item 3)
    or "mean" (sum / max(#valid, 1)). A batch with no positive pair (Q = 0: pass empty v_if / v_ib and
    skip CLIP) returns FRC = BRC = 0·ΣP, zeros that still backpropagate into the CAM net so that DDP
    ranks stay in step.

    Args:
        P: [N, K, h, w] sigmoid activation maps (Eq. 2) the region images were built from.
        v_if, v_ib: [Q, E] CLIP embeddings of the FG / BG region images (:meth:`RegionBatch.split`).
        texts: the pairs' texts (:meth:`TextBank.gather`), Q rows in the same order.
        tau: temperature τ (0.7). variant: "official" | "paper". reduction: "sum" | "mean".

    Returns:
        {"frc": scalar, "brc": scalar, "reg": scalar}, fp32.
    """
    _check_variant(variant)
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown RITC reduction {reduction!r}: expected one of {REDUCTIONS}")
    if tau <= 0 or not math.isfinite(tau):
        raise ValueError(f"temperature tau={tau} must be a positive number")
    with torch.autocast(device_type=P.device.type, enabled=False):
        reg = reg_loss(P)
        q = v_if.shape[0]
        if q == 0:
            zero = P.float().sum() * 0.0
            return {"frc": zero, "brc": zero.clone(), "reg": reg}
        if v_ib.shape[0] != q or texts.pair_valid.shape[0] != q:
            raise ValueError(f"pair count mismatch: v_if {q}, v_ib {v_ib.shape[0]}, texts {texts.pair_valid.shape[0]}")
        v_if, v_ib = v_if.float(), v_ib.float()
        t_fg = fg_text_pool(texts.class_feat.float(), texts.fg_feats.float(), texts.fg_valid, variant)
        t_bg = texts.bg_feats.float()
        # Invalid pairs contribute exactly zero (and zero gradient) but keep v connected to the graph.
        bg_valid = texts.bg_valid & texts.pair_valid.unsqueeze(1)
        valid = texts.pair_valid.to(v_if.dtype)
        frc = frc_loss(v_if, t_fg, t_bg, bg_valid, tau) * valid
        brc = brc_loss(v_ib, t_fg, t_bg, bg_valid, tau, variant) * valid
        frc, brc = frc.sum(), brc.sum()
        if reduction == "mean":
            n = valid.sum().clamp_min(1)
            frc, brc = frc / n, brc / n
    return {"frc": frc, "brc": brc, "reg": reg}


def total(losses: dict[str, torch.Tensor], alpha: float, beta: float, gamma: float) -> torch.Tensor:
    """Eq. 1: L = α·L_FRC + β·L_BRC + γ·L_REG (VOC 10, 8, 0.2; COCO 30, 24, 0.2).

    A zero weight switches a term off (Table 4 ablations) while keeping it in the graph.
    """
    return alpha * losses["frc"] + beta * losses["brc"] + gamma * losses["reg"]
