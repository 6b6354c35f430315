"""RITC maths (net/ritc.py): FAT, region masks/images, FG pooling, FRC/BRC/REG, reduction, text bank.

Expected values are worked out by hand on 2-D vectors (written as the closed-form expressions
below), or computed by a literal per-pair loop written here after the official code.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from net.ritc import (
    TextBank,
    brc_loss,
    build_region_images,
    fat_masks,
    fg_text_pool,
    frc_loss,
    reg_loss,
    region_masks,
    ritc_losses,
    total,
)


def t(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float32)


# ----------------------------------------------------------------------------------------------- FAT


def test_fat_tie_at_theta_counts_as_foreground():
    P = t([0.05, 0.1], [0.5, 1.0])[None]  # max 1.0 → θ = 0.1 exactly; 0.1 ≥ θ
    assert fat_masks(P, 0.1).tolist() == [[[0.0, 1.0], [1.0, 1.0]]]


def test_fat_threshold_per_map():
    # Two maps in one [N, K, H, W] tensor: each uses its own max.
    P = torch.stack([t([0.2, 0.01], [0.03, 0.0]), t([0.9, 0.5], [0.05, 0.1])])[None]  # [1, 2, 2, 2]
    b = fat_masks(P, 0.1)  # θ = 0.02 and 0.09 (no ties here)
    assert b.tolist() == [[[[1.0, 0.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 1.0]]]]


def test_fat_all_zero_map_gives_all_ones():
    assert fat_masks(torch.zeros(1, 3, 3), 0.1).eq(1).all()


def test_fat_omega_zero_and_one():
    P = t([0.0, 0.3], [1.0, 1.0])[None]
    assert fat_masks(P, 0.0).eq(1).all()  # θ = 0 and P ≥ 0
    assert fat_masks(P, 1.0).tolist() == [[[0.0, 0.0], [1.0, 1.0]]]  # only the (tied) maxima


def test_fat_has_no_gradient_and_rejects_bad_omega():
    P = torch.rand(2, 4, 4, requires_grad=True)
    assert not fat_masks(P).requires_grad
    with pytest.raises(ValueError, match="omega"):
        fat_masks(P, 1.5)


def test_region_masks_eq10():
    P = t([0.2, 0.8])
    b = t([0.0, 1.0])
    r_f, r_b = region_masks(P, b)
    assert torch.allclose(r_f, t([0.0, 0.8]))
    assert torch.allclose(r_b, t([0.8, 0.0]))
    r_f, r_b = region_masks(P, torch.ones_like(P), torch.ones_like(P))  # FAT off: CLIMS' P and 1 − P
    assert torch.allclose(r_f, P) and torch.allclose(r_b, 1 - P)


# ------------------------------------------------------------------------------------------ FG pooling


def test_fg_pool_official_and_paper():
    cls = t([1.0, 0.0])
    answers = torch.stack([t([0.0, 1.0], [0.0, 1.0], [1.0, 0.0])])  # [1, 3, 2]; the last is padding
    valid = torch.tensor([[True, True, False]])
    official = fg_text_pool(cls, answers, valid, "official")
    assert torch.allclose(official, t([0.5, 0.5]))  # 0.5·class + 0.5·mean(answers), not re-normalised
    paper = fg_text_pool(cls, answers, valid, "paper")
    assert torch.allclose(paper, t([1.0, 2.0]) / math.sqrt(5))  # (c + a1 + a2)/3 = (1/3, 2/3), normalised


def test_fg_pool_without_answers_is_the_class_text():
    cls = t([0.6, 0.8])
    answers = torch.zeros(1, 2, 2)
    valid = torch.zeros(1, 2, dtype=torch.bool)
    for variant in ("official", "paper"):
        assert torch.allclose(fg_text_pool(cls, answers, valid, variant), cls)


# ------------------------------------------------------------------------------------------ FRC / BRC


def test_frc_by_hand():
    v = t([3.0, 4.0])  # normalised to (0.6, 0.8)
    t_fg = t([1.0, 0.0])  # s_ff = 0.6
    t_bg = torch.stack([t([0.0, 1.0], [1.0, 0.0])])  # s_fb = 0.8 and (padding) 0.6
    valid = torch.tensor([[True, False]])
    # −log(e^{0.6} / (e^{0.6} + e^{0.8})) = log(1 + e^{0.2})
    assert frc_loss(v, t_fg, t_bg, valid, tau=1.0).item() == pytest.approx(math.log(1 + math.exp(0.2)), rel=1e-6)
    # τ = 0.5: log(1 + e^{0.4})
    assert frc_loss(v, t_fg, t_bg, valid, tau=0.5).item() == pytest.approx(math.log(1 + math.exp(0.4)), rel=1e-6)
    both = torch.tensor([[True, True]])  # log((e^{1.2}+e^{1.6}+e^{1.2}) / e^{1.2}) = log(2 + e^{0.4})
    assert frc_loss(v, t_fg, t_bg, both, tau=0.5).item() == pytest.approx(math.log(2 + math.exp(0.4)), rel=1e-6)


def test_brc_by_hand_both_variants():
    v = t([0.0, 2.0])  # normalised to (0, 1)
    t_fg = t([1.0, 0.0])  # s_bf = 0
    t_bg = torch.stack([t([0.0, 1.0], [1.0, 0.0], [0.6, 0.8])])  # s_bb = 1, 0, (padding 0.8)
    valid = torch.tensor([[True, True, False]])
    tau = 0.5
    # official: B = mean(e^{1/τ}, e^{0/τ}) = (e² + 1)/2; L = −log(B / (B + e^0)) = log(1 + 2/(e² + 1))
    official = brc_loss(v, t_fg, t_bg, valid, tau, "official").item()
    assert official == pytest.approx(math.log(1 + 2 / (math.e ** 2 + 1)), rel=1e-6)
    # paper: B = e^{mean(1, 0)/τ} = e; L = log(1 + e^{-1})
    paper = brc_loss(v, t_fg, t_bg, valid, tau, "paper").item()
    assert paper == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)


def test_losses_zero_and_finite_for_pairs_without_bg():
    v = torch.randn(2, 4, requires_grad=True)
    t_fg = F.normalize(torch.randn(2, 4), dim=-1)
    t_bg = torch.zeros(2, 3, 4)  # padding only
    valid = torch.zeros(2, 3, dtype=torch.bool)
    for variant in ("official", "paper"):
        lf = frc_loss(v, t_fg, t_bg, valid)
        lb = brc_loss(v, t_fg, t_bg, valid, variant=variant)
        assert lf.tolist() == [0.0, 0.0] and lb.tolist() == [0.0, 0.0]
        (lf.sum() + lb.sum()).backward()
        assert torch.isfinite(v.grad).all() and v.grad.abs().sum() == 0
        v.grad = None


def test_reg_is_the_mean_over_all_values():
    P = torch.arange(16, dtype=torch.float32).reshape(1, 2, 2, 4) / 16  # mean of 0..15 / 16 = 7.5/16
    assert reg_loss(P).item() == pytest.approx(7.5 / 16)


def test_total_weights():
    losses = {"frc": torch.tensor(1.0), "brc": torch.tensor(2.0), "reg": torch.tensor(3.0)}
    assert total(losses, 10, 8, 0.2).item() == pytest.approx(10 + 16 + 0.6)


# ---------------------------------------------------------------------------------- text bank + losses


def unit(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=gen), dim=-1)


def make_bank(gen: torch.Generator, d: int = 6, k: int = 4):
    """Pairs (dataset image, class): (0,0) 2 BG, (0,2) no BG, (1,1) 3 BG, (2,3) 1 BG."""
    class_feats = unit(k, d, gen)
    pairs = [(0, 0), (0, 2), (1, 1), (2, 3)]
    fg = [unit(6, d, gen), unit(6, d, gen), unit(3, d, gen), unit(6, d, gen)]
    bg = [unit(2, d, gen), None, unit(3, d, gen), unit(1, d, gen)]
    bank = TextBank.from_lists(class_feats, [p[0] for p in pairs], [p[1] for p in pairs], fg, bg, num_images=3)
    return bank, class_feats, dict(zip(pairs, zip(fg, bg)))


def test_text_bank_gather_and_padding():
    gen = torch.Generator().manual_seed(0)
    bank, class_feats, per_pair = make_bank(gen)
    # batch of dataset images [1, 0]; pairs: (batch 0 → image 1, class 1), (batch 1 → image 0, class 0/2)
    texts = bank.gather(torch.tensor([1, 0]), torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2]))
    assert texts.fg_feats.shape == (3, 6, 6) and texts.bg_feats.shape == (3, 3, 6)
    assert texts.fg_valid.sum(1).tolist() == [3, 6, 6]
    assert texts.bg_valid.sum(1).tolist() == [3, 2, 0]
    assert texts.pair_valid.tolist() == [True, True, False]
    assert torch.equal(texts.fg_feats[0, :3], per_pair[(1, 1)][0])
    assert torch.equal(texts.bg_feats[1, :2], per_pair[(0, 0)][1])
    assert texts.fg_feats[0, 3:].abs().sum() == 0  # padding rows are zeros
    assert torch.equal(texts.class_feat, class_feats[[1, 0, 2]])
    # A pair that is not in the bank is skipped, and check_coverage names it.
    unknown = bank.gather(torch.tensor([2]), torch.tensor([0]), torch.tensor([0]))
    assert unknown.pair_valid.tolist() == [False] and not unknown.fg_valid.any()
    labels = torch.tensor([[1, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 1]])
    with pytest.raises(ValueError, match=r"\[2, 0\]"):
        bank.check_coverage(labels)
    bank.check_coverage(labels * torch.tensor([0, 1, 1, 1]))


def test_text_bank_rejects_bad_input():
    gen = torch.Generator().manual_seed(1)
    cls = unit(2, 4, gen)
    with pytest.raises(ValueError, match="L2-normalised"):
        TextBank.from_lists(cls, [0], [0], [2 * unit(2, 4, gen)], [None], num_images=1)
    with pytest.raises(ValueError, match="twice"):
        TextBank.from_lists(cls, [0, 0], [1, 1], [unit(1, 4, gen)] * 2, [None] * 2, num_images=1)


def official_loop(v_if, v_ib, pairs, per_pair, class_feats, tau):
    """The official per-pair loop (clip_loss.py + FG_VQA.forward), exp/log written out."""
    frc = torch.tensor(0.0)
    brc = torch.tensor(0.0)
    for i, (img, c) in enumerate(pairs):
        fg, bg = per_pair[(img, c)]
        if bg is None:
            continue
        t_fg = 0.5 * class_feats[c] + 0.5 * fg.mean(0)
        vf = v_if[i] / v_if[i].norm()
        vb = v_ib[i] / v_ib[i].norm()
        pos = torch.exp(vf @ t_fg / tau)
        frc = frc - torch.log(pos / (pos + torch.exp(bg @ vf / tau).sum()))
        pos_b = torch.exp(bg @ vb / tau).mean()
        brc = brc - torch.log(pos_b / (pos_b + torch.exp(vb @ t_fg / tau)))
    return frc, brc


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_ritc_losses_match_the_official_loop(reduction):
    gen = torch.Generator().manual_seed(2)
    bank, class_feats, per_pair = make_bank(gen)
    image_ids = torch.tensor([1, 0, 2])
    pair_image, pair_class = torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 3])
    pairs = [(1, 1), (0, 0), (0, 2), (2, 3)]  # (dataset image, class) of the four pairs; (0, 2) has no BG
    texts = bank.gather(image_ids, pair_image, pair_class)
    v_if = torch.randn(4, 6, generator=gen)
    v_ib = torch.randn(4, 6, generator=gen)
    P = torch.rand(3, 4, 5, 5, generator=gen)
    out = ritc_losses(P, v_if, v_ib, texts, tau=0.7, reduction=reduction)
    ref_frc, ref_brc = official_loop(v_if, v_ib, pairs, per_pair, class_feats, 0.7)
    n = 3 if reduction == "mean" else 1  # three pairs have BG texts
    assert out["frc"].item() == pytest.approx(ref_frc.item() / n, rel=1e-6)
    assert out["brc"].item() == pytest.approx(ref_brc.item() / n, rel=1e-6)
    assert out["reg"].item() == pytest.approx(P.mean().item(), rel=1e-6)


def test_default_reduction_is_the_official_sum():
    # train_ritc relies on the default: the official loop sums over the batch's pairs, so on several
    # valid pairs the default must equal that sum (a mean would shrink the loss by the pair count)
    gen = torch.Generator().manual_seed(2)
    bank, class_feats, per_pair = make_bank(gen)
    texts = bank.gather(torch.tensor([1, 0, 2]), torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 3]))
    v_if = torch.randn(4, 6, generator=gen)
    v_ib = torch.randn(4, 6, generator=gen)
    out = ritc_losses(torch.rand(3, 4, 5, 5, generator=gen), v_if, v_ib, texts)
    ref_frc, ref_brc = official_loop(v_if, v_ib, [(1, 1), (0, 0), (0, 2), (2, 3)], per_pair, class_feats, 0.7)
    assert int(texts.pair_valid.sum()) == 3
    assert out["frc"].item() == pytest.approx(ref_frc.item(), rel=1e-6)
    assert out["brc"].item() == pytest.approx(ref_brc.item(), rel=1e-6)


def test_skipped_pair_gets_no_gradient():
    gen = torch.Generator().manual_seed(3)
    bank, _, _ = make_bank(gen)
    texts = bank.gather(torch.tensor([0]), torch.tensor([0, 0]), torch.tensor([0, 2]))  # (0, 2) has no BG
    v_if = torch.randn(2, 6, generator=gen, requires_grad=True)
    v_ib = torch.randn(2, 6, generator=gen, requires_grad=True)
    out = ritc_losses(torch.rand(1, 4, 2, 2), v_if, v_ib, texts)
    (out["frc"] + out["brc"]).backward()
    assert v_if.grad[1].abs().sum() == 0 and v_ib.grad[1].abs().sum() == 0
    assert v_if.grad[0].abs().sum() > 0 and v_ib.grad[0].abs().sum() > 0


def test_no_positive_pair_gives_zero_loss_with_a_gradient_path():
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    P = logits.sigmoid()
    region = build_region_images(torch.randn(2, 3, 8, 8), P, torch.zeros(2, 4), size=8, patch_size=4)
    assert region.num_pairs == 0 and region.images.shape == (0, 3, 8, 8)
    bank, _, _ = make_bank(torch.Generator().manual_seed(4))
    texts = bank.gather(torch.tensor([0, 1]), region.pair_image, region.pair_class)
    empty = torch.zeros(0, 6)
    out = ritc_losses(P, empty, empty, texts)
    assert out["frc"].item() == 0 and out["brc"].item() == 0
    assert out["frc"].requires_grad and out["brc"].requires_grad
    total(out, 10, 8, 0.0).backward()  # REG off: only FRC/BRC hold the graph
    assert logits.grad is not None and logits.grad.abs().sum() == 0


def test_bad_switches_fail_clearly():
    with pytest.raises(ValueError, match="variant"):
        fg_text_pool(torch.zeros(1, 2), torch.zeros(1, 1, 2), torch.ones(1, 1, dtype=torch.bool), "papr")
    gen = torch.Generator().manual_seed(5)
    bank, _, _ = make_bank(gen)
    texts = bank.gather(torch.tensor([0]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="reduction"):
        ritc_losses(torch.rand(1, 4, 2, 2), torch.randn(1, 6), torch.randn(1, 6), texts, reduction="avg")


# ------------------------------------------------------------------------------------------ region images


def test_region_images_by_hand():
    x = torch.ones(1, 3, 4, 4)
    P = torch.zeros(1, 2, 4, 4)
    P[0, 1] = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.5, 0.05, 0.0, 0.0], [0.0] * 4, [0.0, 0.0, 0.0, 0.2]])
    labels = torch.tensor([[0, 1]])
    b = (P[0, 1] >= 0.1).float()  # θ = 0.1·1.0
    plain = build_region_images(x, P, labels, size=4, patch_size=2)
    assert plain.pair_image.tolist() == [0] and plain.pair_class.tolist() == [1]
    assert plain.patch_mask is None
    assert torch.allclose(plain.images[0], (P[0, 1] * b).expand(3, 4, 4))  # X·R_f
    assert torch.allclose(plain.images[1], ((1 - P[0, 1]) * (1 - b)).expand(3, 4, 4))  # X·R_b

    masked = build_region_images(x, P, labels, size=4, mask_clip=True, patch_size=2)
    assert torch.allclose(masked.images[0], P[0, 1].expand(3, 4, 4))  # official: X·P
    assert torch.allclose(masked.images[1], (1 - P[0, 1]).expand(3, 4, 4))  # and X·(1 − P)
    # 2×2 patches, row-major: FG visible where any pixel of b is 1; BG where any pixel of 1 − b is.
    assert masked.patch_mask.tolist() == [[True, False, False, True], [True, True, True, True]]

    paper = build_region_images(x, P, labels, size=4, mask_clip=True, patch_size=2, variant="paper")
    assert torch.allclose(paper.images, plain.images) and torch.equal(paper.patch_mask, masked.patch_mask)

    no_fat = build_region_images(x, P, labels, size=4, fat=False, mask_clip=True, patch_size=2)
    assert torch.allclose(no_fat.images, masked.images) and no_fat.patch_mask.all()


def test_region_images_match_a_per_pair_loop():
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(2, 3, 16, 16, generator=gen)
    logits = torch.randn(2, 3, 4, 4, generator=gen, requires_grad=True)
    P = logits.sigmoid()
    labels = torch.tensor([[1, 0, 1], [0, 1, 0]])
    region = build_region_images(x, P, labels, size=12, omega=0.3, patch_size=4)
    # Reference, official structure: upsample every map and the images, then loop over pairs.
    P12 = F.interpolate(P, size=(12, 12), mode="bilinear", align_corners=True)
    x12 = F.interpolate(x, size=(12, 12), mode="bilinear", align_corners=True)
    fgs, bgs = [], []
    for n, k in [(0, 0), (0, 2), (1, 1)]:
        p = P12[n, k]
        b = (p >= p.max() * 0.3).float()
        fgs.append(p * x12[n] * b)
        bgs.append((1 - p) * x12[n] * (1 - b))
    ref = torch.cat([torch.stack(fgs), torch.stack(bgs)])
    assert region.num_pairs == 3
    assert torch.allclose(region.images, ref, atol=1e-6)
    w = torch.randn_like(ref)
    g_ours, = torch.autograd.grad((region.images * w).sum(), logits, retain_graph=True)
    g_ref, = torch.autograd.grad((ref * w).sum(), logits)
    assert torch.allclose(g_ours, g_ref, atol=1e-6)


def test_no_qape_bank_uses_the_class_text():
    # Table 5 "no QAPE": FG = the class name only, BG = one text ("no {class}").
    gen = torch.Generator().manual_seed(7)
    class_feats = unit(3, 4, gen)
    bg = unit(1, 4, gen)
    bank = TextBank.from_lists(class_feats, [0], [2], [torch.zeros(0, 4)], [bg], num_images=1)
    texts = bank.gather(torch.tensor([0]), torch.tensor([0]), torch.tensor([2]))
    v = torch.randn(1, 4, generator=gen)
    out = ritc_losses(torch.rand(1, 3, 2, 2), v, v, texts, tau=0.7)
    vn = v[0] / v[0].norm()
    s_f, s_b = (vn @ class_feats[2]).item() / 0.7, (vn @ bg[0]).item() / 0.7
    assert out["frc"].item() == pytest.approx(math.log(1 + math.exp(s_b - s_f)), rel=1e-5)
    assert out["brc"].item() == pytest.approx(math.log(1 + math.exp(s_f - s_b)), rel=1e-5)
