"""Mask-prompt CLIP (net/clip_mask.py) on a tiny open_clip ViT built here (width 64, 3 blocks, 16 patches).

The reference forward below is ovseg's ``VisionTransformer.forward(x, m)`` written out literally
(LND layout, ``x*m + e*(1-m)``), run on the same open_clip weights.
"""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from net.clip_mask import MaskPromptCLIPVisual, load_ovseg_mask_prompt, patch_mask_from_pixels

TINY_CFG = {
    "embed_dim": 32,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 64, "layers": 3, "width": 64, "head_width": 32, "patch_size": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 100, "width": 32, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny_clip")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG}))
    return d


def tiny_clip(model_dir, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = open_clip.create_model(f"local-dir:{model_dir}")
    # open_clip leaves some parameters at zero; randomise so every weight matters in the checks.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


def ovseg_reference(visual, x: torch.Tensor, m: torch.Tensor, emb: torch.Tensor, depth: int) -> torch.Tensor:
    """ovseg / QA-CLIMS third_party CLIP ViT forward with a patch mask m [B, P] (1 = visible)."""
    x = visual.conv1(x)
    x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)  # [B, P, D]
    m = m.float().unsqueeze(-1)  # [B, P, 1]
    x = x * m + emb[0].unsqueeze(0) * (1 - m)
    cls = visual.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = torch.cat([cls, x], dim=1) + visual.positional_embedding
    x = visual.ln_pre(x).permute(1, 0, 2)  # LND
    for i, blk in enumerate(visual.transformer.resblocks):
        x = blk(x.permute(1, 0, 2)).permute(1, 0, 2)  # open_clip blocks are batch-first
        d = i + 1
        if d < depth:
            masked = x[1:] * m.permute(1, 0, 2) + emb[d].unsqueeze(0).permute(1, 0, 2) * (1 - m.permute(1, 0, 2))
            x = torch.cat([x[:1], masked], dim=0)
    x = visual.ln_post(x.permute(1, 0, 2)[:, 0])
    return x @ visual.proj


@pytest.fixture(scope="module")
def setup(model_dir):
    model = tiny_clip(model_dir, 0)
    emb = torch.randn(3, 16, 64)
    images = torch.randn(3, 3, 64, 64)
    return model, MaskPromptCLIPVisual(model.visual, emb, mask_prompt_depth=3), emb, images


def random_mask(seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    m = torch.rand(3, 16, generator=gen) > 0.5
    m[:, 0] = True
    return m


def test_all_visible_equals_plain_forward(setup):
    model, wrapped, _, images = setup
    with torch.no_grad():
        plain = model.visual(images)
        assert torch.allclose(wrapped(images, torch.ones(3, 16, dtype=torch.bool)), plain, atol=1e-5)
        assert torch.allclose(wrapped(images), plain, atol=1e-5)


def test_masked_forward_matches_ovseg_reference(setup):
    model, wrapped, emb, images = setup
    m = random_mask(0)
    with torch.no_grad():
        ours = wrapped(images, m)
        ref = ovseg_reference(model.visual, images, m, emb, depth=3)
        plain = model.visual(images)
    assert torch.allclose(ours, ref, atol=1e-5)
    assert (ours - plain).abs().max() > 1e-3  # the mask changes the output


def test_replacement_depths(setup):
    model, _, emb, images = setup
    m = random_mask(1)
    with torch.no_grad():
        base = MaskPromptCLIPVisual(model.visual, emb, 3)(images, m)
        # mask_embedding[2] is used (after block 2) ...
        emb2 = emb.clone()
        emb2[2] += torch.randn(16, 64)  # not a constant shift: LayerNorm would remove that
        assert (MaskPromptCLIPVisual(model.visual, emb2, 3)(images, m) - base).abs().max() > 1e-4
        # ... and pixels of invisible patches never matter (their tokens are replaced before any block).
        pix = patch_pixels(~m)  # [B, 64, 64] True inside invisible patches
        noisy = images + 5 * pix[:, None] * torch.randn_like(images)
        assert torch.allclose(MaskPromptCLIPVisual(model.visual, emb, 3)(noisy, m), base, atol=1e-5)


def patch_pixels(patch_mask: torch.Tensor) -> torch.Tensor:
    """[B, 16] patch mask on a 4×4 grid of 16-pixel patches → [B, 64, 64] pixel mask."""
    grid = patch_mask.reshape(-1, 4, 4).float()
    return grid.repeat_interleave(16, 1).repeat_interleave(16, 2).bool()


def test_patch_mask_from_pixels_any_pixel_visible():
    b = torch.zeros(2, 4, 4)
    b[0, 0, 0] = 1.0  # one pixel of patch 0
    b[1] = 1.0
    b[1, 2:, 2:] = 0.0  # patch 3 fully empty
    assert patch_mask_from_pixels(b, 2).tolist() == [[True, False, False, False], [True, True, True, False]]
    assert patch_mask_from_pixels(b[:, None], 2).shape == (2, 4)
    with pytest.raises(ValueError, match="multiple"):
        patch_mask_from_pixels(torch.zeros(1, 5, 5), 2)


def test_bad_shapes_fail_clearly(setup):
    model, wrapped, _, images = setup
    with pytest.raises(ValueError, match="mask_embedding"):
        MaskPromptCLIPVisual(model.visual, torch.zeros(3, 15, 64), 3)
    with pytest.raises(ValueError, match="patch_mask"):
        wrapped(images, torch.ones(3, 9, dtype=torch.bool))


def ovseg_checkpoint(model: torch.nn.Module, emb: torch.Tensor) -> dict:
    sd = {f"clip_adapter.clip_model.{k}": v.clone() for k, v in model.state_dict().items()}
    sd["clip_adapter.clip_model.visual.mask_embedding"] = emb.clone()
    sd["clip_adapter.non_object_embedding"] = torch.randn(1, 32)  # ovseg, not CLIP: ignored
    sd["backbone.patch_embed.proj.weight"] = torch.randn(8, 3, 4, 4)  # Swin backbone: ignored
    return {"model": sd, "iteration": 1000}


def test_load_ovseg_checkpoint(model_dir, tmp_path):
    source = tiny_clip(model_dir, 1)
    emb = torch.randn(3, 16, 64)
    path = tmp_path / "ovseg.pth"
    torch.save(ovseg_checkpoint(source, emb), path)
    target = tiny_clip(model_dir, 2)
    wrapped = load_ovseg_mask_prompt(target, path)
    for k, v in source.state_dict().items():
        assert torch.equal(target.state_dict()[k], v), k
    assert torch.equal(wrapped.mask_embedding, emb)
    images = torch.randn(2, 3, 64, 64)
    m = random_mask(2)[:2]
    with torch.no_grad():
        ref = ovseg_reference(source.visual, images, m, emb, depth=3)
        assert torch.allclose(wrapped(images, m), ref, atol=1e-5)


def test_load_keeps_own_text_tower_when_asked(model_dir, tmp_path):
    source = tiny_clip(model_dir, 1)
    path = tmp_path / "ovseg.pth"
    torch.save(ovseg_checkpoint(source, torch.zeros(3, 16, 64)), path)
    target = tiny_clip(model_dir, 3)
    own_text = target.token_embedding.weight.clone()
    load_ovseg_mask_prompt(target, path, load_text_tower=False)
    assert torch.equal(target.token_embedding.weight, own_text)
    assert torch.equal(target.visual.proj, source.visual.proj)


@pytest.mark.parametrize(("drop", "error", "match"), [
    ("clip_adapter.clip_model.visual.mask_embedding", KeyError, "visual.mask_embedding"),
    ("clip_adapter.clip_model.visual.ln_post.weight", KeyError, "visual.ln_post.weight"),
    ("clip_adapter.clip_model.ln_final.bias", KeyError, "ln_final.bias"),
])
def test_load_missing_key_is_named(model_dir, tmp_path, drop, error, match):
    source = tiny_clip(model_dir, 1)
    ckpt = ovseg_checkpoint(source, torch.zeros(3, 16, 64))
    del ckpt["model"][drop]
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(error, match=match):
        load_ovseg_mask_prompt(tiny_clip(model_dir, 2), path)


def test_load_unexpected_clip_key_fails(model_dir, tmp_path):
    source = tiny_clip(model_dir, 1)
    ckpt = ovseg_checkpoint(source, torch.zeros(3, 16, 64))
    ckpt["model"]["clip_adapter.clip_model.visual.extra_head.weight"] = torch.zeros(2)
    path = tmp_path / "bad.pth"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="visual.extra_head.weight"):
        load_ovseg_mask_prompt(tiny_clip(model_dir, 2), path)
    with pytest.raises(FileNotFoundError, match="ovseg"):
        load_ovseg_mask_prompt(source, tmp_path / "absent.pth")


def test_gradient_reaches_visible_pixels_only(setup):
    _, wrapped, _, images = setup
    m = random_mask(3)
    pix = images.clone().requires_grad_(True)
    grad, = torch.autograd.grad(wrapped(pix, m).sum(), pix)
    grad_per_pixel = grad.abs().sum(1)  # [B, 64, 64]
    visible = patch_pixels(m)
    assert grad_per_pixel[~visible].max() == 0  # replaced before the first block
    assert grad_per_pixel[visible].min() > 0
    assert not wrapped.mask_embedding.requires_grad
