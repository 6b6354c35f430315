"""Mask-prompt CLIP image tower (ovseg "mask prompt tuning", docs/design.md §4 item 5) on an open_clip ViT.

QA-CLIMS trains with the mask-adapted CLIP of ovseg (Liang et al., 2022): the region image is fed
together with a per-patch visibility mask, and the tokens of invisible patches are replaced by a
learned ``mask_embedding[d]``. Following the official vendored CLIP (QA-CLIMS
``third_party/CLIP/clip/model.py``, taken from ovseg) exactly:

- d = 0: right after the patch embedding ``conv1``, *before* the class token and the positional
  embedding are added (so the replaced tokens still receive their position);
- d = 1 .. mask_prompt_depth-1: after transformer block d (1-based), i.e. after blocks 1 and 2 for
  ``mask_prompt_depth = 3``; the class token is never replaced.

A patch is visible when any pixel of its pixel mask is non-zero (ovseg: average-pool then ``ceil``),
see :func:`patch_mask_from_pixels`. With every patch visible the forward equals the plain
``visual(images)`` forward of open_clip.

Checkpoint layout. ``ovseg_swinbase_vitL14_ft_mpt.pth`` is a detectron2 checkpoint ``{"model": sd,
...}``; the CLIP weights sit under ``clip_adapter.clip_model.`` with OpenAI CLIP names, which open_clip
3.3 uses unchanged for the ViT (``visual.conv1.weight``, ``visual.class_embedding``,
``visual.positional_embedding``, ``visual.ln_pre.*``, ``visual.transformer.resblocks.{i}.{ln_1, attn.
in_proj_weight, attn.in_proj_bias, attn.out_proj.*, ln_2, mlp.c_fc.*, mlp.c_proj.*}``, ``visual.ln_post.*``,
``visual.proj``) and for the text tower (``token_embedding.weight``, ``positional_embedding``,
``transformer.resblocks.*``, ``ln_final.*``, ``text_projection``, ``logit_scale``). The only ovseg
addition is ``visual.mask_embedding`` [depth, grid², width] ([3, 256, 1024] for ViT-L/14 at 224).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

if TYPE_CHECKING:
    from open_clip.transformer import VisionTransformer

    from net.clip import OpenClipModel

from net.weights import read_weights

log = logging.getLogger(__name__)

OVSEG_PREFIX = "clip_adapter.clip_model."
MASK_EMBEDDING_KEY = "visual.mask_embedding"
# Keys some OpenAI-format checkpoints carry as ints next to the weights; they are not parameters.
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")
# The open_clip ViT parts the mask-prompt forward re-implements around; a visual without them is
# not an open_clip ``VisionTransformer`` and cannot be wrapped.
_VIT_PARTS = ("conv1", "class_embedding", "positional_embedding", "ln_pre", "transformer", "patch_dropout")


def patch_mask_from_pixels(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Per-patch visibility from a pixel mask: a patch is visible if any of its pixels is non-zero.

    This is ovseg's ``ceil(AvgPool2d(patch_size)(m))`` for a non-negative mask, written as a max-pool
    so it stays exact for any non-negative values.

    Args:
        mask: [B, S, S] or [B, 1, S, S] pixel mask, non-negative (a FAT mask b or 1 − b).
        patch_size: ViT patch size; S must be a multiple of it.

    Returns:
        [B, (S/patch_size)²] bool, row-major over the patch grid (the ViT token order).
    """
    if mask.dim() == 4:
        if mask.shape[1] != 1:
            raise ValueError(f"pixel mask must be [B, S, S] or [B, 1, S, S], got {tuple(mask.shape)}")
        mask = mask[:, 0]
    if mask.dim() != 3 or mask.shape[-1] % patch_size or mask.shape[-2] % patch_size:
        raise ValueError(f"pixel mask {tuple(mask.shape)} must be [B, S, S] with S a multiple of the "
                         f"patch size {patch_size}")
    pooled = F.max_pool2d(mask[:, None].float(), kernel_size=patch_size, stride=patch_size)  # [B, 1, G, G]
    return (pooled > 0).flatten(1)  # [B, G*G]


class MaskPromptCLIPVisual(nn.Module):
    """open_clip ViT image tower with ovseg mask prompts (frozen; gradients flow to the input).

    Args:
        visual: ``model.visual`` of an open_clip CLIP (a ``VisionTransformer``), e.g. ViT-L-14
            with QuickGELU. Its parameters are shared, not copied.
        mask_embedding: [depth, P, D] learned replacement tokens (P = grid², or 1 to broadcast);
            None → zeros (ovseg's initialisation), to be filled by :func:`load_ovseg_mask_prompt`.
        mask_prompt_depth: number of replacement points (ovseg and QA-CLIMS use 3).
    """

    def __init__(self, visual: VisionTransformer, mask_embedding: torch.Tensor | None = None,
                 mask_prompt_depth: int = 3):
        super().__init__()
        missing = [name for name in _VIT_PARTS if not hasattr(visual, name)]
        if missing:
            raise TypeError(f"visual ({type(visual).__name__}) lacks {missing}: MaskPromptCLIPVisual needs "
                            f"an open_clip VisionTransformer (a ViT model, not a ResNet/timm tower)")
        if float(getattr(visual.patch_dropout, "prob", 0.0)) > 0:
            # Patch dropout drops tokens after the d=0 replacement, so the d>=1 replacements would
            # hit the wrong positions; ovseg's ViT has none.
            raise ValueError("MaskPromptCLIPVisual does not support patch dropout: build the CLIP with "
                             "patch_dropout=0")
        num_blocks = len(visual.transformer.resblocks)
        if not 1 <= mask_prompt_depth <= num_blocks + 1:
            raise ValueError(f"mask_prompt_depth={mask_prompt_depth} must be in [1, {num_blocks + 1}] "
                             f"for a ViT with {num_blocks} blocks")
        self.visual = visual
        self.mask_prompt_depth = mask_prompt_depth
        self.patch_size = int(visual.conv1.kernel_size[0])
        self.num_patches = int(visual.positional_embedding.shape[0]) - 1
        width = int(visual.class_embedding.shape[-1])
        if mask_embedding is None:
            mask_embedding = torch.zeros(mask_prompt_depth, self.num_patches, width)
        self._check_mask_embedding(mask_embedding.shape, width)
        # Frozen like the rest of CLIP: it is a learned prompt from ovseg, not trained here.
        self.mask_embedding = nn.Parameter(mask_embedding.detach().clone().to(visual.class_embedding),
                                           requires_grad=False)

    def _check_mask_embedding(self, shape: torch.Size, width: int) -> None:
        ok = (len(shape) == 3 and shape[0] == self.mask_prompt_depth and shape[1] in (1, self.num_patches)
              and shape[2] == width)
        if not ok:
            raise ValueError(f"mask_embedding has shape {tuple(shape)}, expected "
                             f"[{self.mask_prompt_depth}, {self.num_patches} (or 1), {width}]")

    def _replace(self, tokens: torch.Tensor, visible: torch.Tensor | None, depth: int) -> torch.Tensor:
        """tokens: [B, P, D] patch tokens; visible: [B, P] bool → invisible ones set to mask_embedding[depth]."""
        if visible is None:
            return tokens
        emb = self.mask_embedding[depth].to(tokens.dtype)  # [P or 1, D]
        # torch.where equals ovseg's x*m + e*(1-m) for a 0/1 mask, and is exact for visible tokens.
        return torch.where(visible[..., None], tokens, emb[None])

    def forward(self, images: torch.Tensor, patch_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Image embeddings of (masked) region images.

        Args:
            images: [B, 3, S, S] pixels as CLIP receives them (S = the ViT's image size).
            patch_mask: [B, P] bool, True = visible patch (P = (S/patch)²); None = all visible.

        Returns:
            [B, E] un-normalised image embeddings (``ln_post`` of the class token, then ``proj``).
        """
        v = self.visual
        x = v.conv1(images)  # [B, D, G, G]
        x = x.flatten(2).transpose(1, 2)  # [B, G*G, D]
        if patch_mask is not None:
            if patch_mask.shape != x.shape[:2]:
                raise ValueError(f"patch_mask has shape {tuple(patch_mask.shape)}, expected {tuple(x.shape[:2])} "
                                 f"for images {tuple(images.shape)} and patch size {self.patch_size}")
            patch_mask = patch_mask.to(device=x.device, dtype=torch.bool)
        x = self._replace(x, patch_mask, 0)
        cls = v.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)  # [B, 1, D]
        x = torch.cat([cls, x], dim=1)  # [B, 1+G*G, D]
        x = x + v.positional_embedding.to(x.dtype)
        x = v.ln_pre(x)

        batch_first = getattr(v.transformer, "batch_first", True)
        if not batch_first:
            x = x.transpose(0, 1)  # [1+G*G, B, D]
        # CLIP is frozen and in eval mode, but gradients flow to its input: checkpoint whenever autograd records.
        use_ckpt = bool(getattr(v.transformer, "grad_checkpointing", False)) and torch.is_grad_enabled()
        for i, block in enumerate(v.transformer.resblocks):
            x = checkpoint(block, x, use_reentrant=False) if use_ckpt else block(x)
            d = i + 1
            if patch_mask is not None and d < self.mask_prompt_depth:
                if batch_first:
                    x = torch.cat([x[:, :1], self._replace(x[:, 1:], patch_mask, d)], dim=1)
                else:
                    patches = self._replace(x[1:].transpose(0, 1), patch_mask, d)  # [B, G*G, D]
                    x = torch.cat([x[:1], patches.transpose(0, 1)], dim=0)
        if not batch_first:
            x = x.transpose(0, 1)  # [B, 1+G*G, D]

        if hasattr(v, "_pool"):
            pooled, _ = v._pool(x)  # open_clip's own pooling (ln_post + class token for CLIP ViTs)
        else:  # open_clip < 2.26 inlined the pooling: class token after ln_post
            pooled = v.ln_post(x)[:, 0]
        if v.proj is not None:
            pooled = pooled @ v.proj
        return pooled


def _read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"ovseg mask-prompt checkpoint {path} not found: download "
                                f"ovseg_swinbase_vitL14_ft_mpt.pth (facebookresearch/ov-seg) and set its path "
                                f"in the config (clip.mask_prompt_checkpoint)")
    ckpt = read_weights(path, "clip.mask_prompt_checkpoint")
    # detectron2 checkpoints hold the weights under "model"; accept a bare state dict too.
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise TypeError(f"{path}: expected a dict with a 'model' state dict (ovseg/detectron2 layout)")
    return state


def load_ovseg_mask_prompt(clip_model: OpenClipModel, checkpoint_path: str | Path, mask_prompt_depth: int = 3,
                           load_text_tower: bool = True) -> MaskPromptCLIPVisual:
    """Load an ovseg mask-prompt-tuned CLIP checkpoint into an open_clip CLIP and wrap its ViT.

    Key rule (explicit; the final load is strict):

    - keys outside ``clip_adapter.clip_model.`` (ovseg's Swin backbone, MaskFormer head,
      ``clip_adapter.non_object_embedding`` ...) are not CLIP weights and are ignored (counted in the log);
    - the prefix is stripped; OpenAI meta keys (``input_resolution``, ``context_length``, ``vocab_size``)
      are dropped; ``visual.mask_embedding`` goes to the wrapper;
    - every other key must name a parameter/buffer of ``clip_model`` with the same name (open_clip and
      ovseg share OpenAI's names) and the same shape, else ValueError naming it;
    - every ``visual.*`` entry of ``clip_model.state_dict()`` must be present, and so must
      ``visual.mask_embedding``, else KeyError naming the key;
    - text tower (``load_text_tower``): the official code loads whatever the checkpoint holds into the
      CLIP it also uses for the class-name text features, so by default text keys present are loaded
      and must then be complete; a checkpoint without any text key keeps ``clip_model``'s text tower.

    Args:
        clip_model: an open_clip ``CLIP`` (ViT image tower), modified in place.
        checkpoint_path: the ovseg ``.pth`` file.
        mask_prompt_depth: expected depth of ``visual.mask_embedding`` (3 for the released file).
        load_text_tower: False → load only the image tower (text keys ignored).

    Returns:
        The :class:`MaskPromptCLIPVisual` around ``clip_model.visual`` with the loaded mask embedding.
    """
    path = Path(checkpoint_path)
    raw = _read_checkpoint(path)
    clip_state: dict[str, torch.Tensor] = {}
    ignored = 0
    for key, value in raw.items():
        if not key.startswith(OVSEG_PREFIX):
            ignored += 1
            continue
        name = key[len(OVSEG_PREFIX):]
        if name in _OPENAI_META_KEYS:
            continue
        clip_state[name] = value
    if not clip_state:
        raise KeyError(f"{path}: no key starts with {OVSEG_PREFIX!r}; is this an ovseg checkpoint?")
    if MASK_EMBEDDING_KEY not in clip_state:
        raise KeyError(f"{path}: missing {OVSEG_PREFIX + MASK_EMBEDDING_KEY!r} (the mask prompt); a plain CLIP "
                       f"checkpoint cannot drive the mask-prompt encoder")
    mask_embedding = clip_state.pop(MASK_EMBEDDING_KEY)

    target = clip_model.state_dict()
    unexpected = sorted(k for k in clip_state if k not in target)
    if unexpected:
        raise ValueError(f"{path}: CLIP keys with no counterpart in the open_clip model: {unexpected[:10]}"
                         f"{' ...' if len(unexpected) > 10 else ''} (is clip_model the right architecture?)")
    bad_shape = [f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
                 for k, v in clip_state.items() if tuple(v.shape) != tuple(target[k].shape)]
    if bad_shape:
        raise ValueError(f"{path}: shape mismatch: {bad_shape[:5]}")

    visual_keys = [k for k in target if k.startswith("visual.")]
    text_keys = [k for k in target if not k.startswith("visual.")]
    missing_visual = [k for k in visual_keys if k not in clip_state]
    if missing_visual:
        raise KeyError(f"{path}: missing visual key(s) {[OVSEG_PREFIX + k for k in missing_visual[:10]]}")
    present_text = [k for k in text_keys if k in clip_state]
    load = {k: clip_state[k] for k in visual_keys}
    if load_text_tower and present_text:
        missing_text = [k for k in text_keys if k not in clip_state]
        if missing_text:
            raise KeyError(f"{path}: text tower only partly present, missing {missing_text[:10]}; pass "
                           f"load_text_tower=False to keep the model's own text tower")
        load.update({k: clip_state[k] for k in text_keys})
    else:
        # The model's own text weights stay: re-insert them so the load below is strict and complete.
        load.update({k: target[k] for k in text_keys})
    clip_model.load_state_dict(load, strict=True)
    log.info("loaded ovseg mask-prompt CLIP from %s (%d visual, %d text tensors loaded; %d non-CLIP keys "
             "ignored; mask_embedding %s)", path, len(visual_keys),
             len(text_keys) if (load_text_tower and present_text) else 0, ignored, tuple(mask_embedding.shape))
    return MaskPromptCLIPVisual(clip_model.visual, mask_embedding.float(), mask_prompt_depth=mask_prompt_depth)
