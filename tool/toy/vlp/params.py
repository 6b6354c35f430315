"""The toy VLP's parameters (every one stored in the cache marker) and the constants its parts share."""
from __future__ import annotations

from dataclasses import dataclass

WARMUP = 30                 # linear lr warm-up steps of both toy models
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ToyVlpParams:
    """Architecture and training settings of the two tiny models (all stored in the cache marker).

    The defaults train both in about two minutes on two CPU cores (one model per core, ``ensure_toy_vlp``)
    on the demo's toy world (300 images).
    ``threads``: torch threads while training (1 is deterministic and, on a shared 2-core machine,
    far faster than 2). ``max_images``: use only the first N training images (tests).
    """

    seed: int = 0
    threads: int = 1
    max_images: int | None = None
    # CLIP: image tower on region images (ViT, or open_clip's ModifiedResNet, which learns from few
    # images far better), transformer text tower with CLIP's BPE vocabulary.
    clip_tower: str = "resnet"      # resnet | vit
    clip_image_size: int = 64
    clip_patch_size: int = 8        # vit only
    clip_width: int = 16            # resnet: stem width (features 32x wider); vit: token width
    clip_layers: int = 3            # vit only (resnet: one bottleneck per stage)
    clip_text_width: int = 64
    clip_text_layers: int = 2
    clip_embed_dim: int = 64
    clip_context_length: int = 16   # "a photo of {answer}." fits; longer texts are cut
    clip_steps: int = 400
    clip_batch: int = 96
    clip_lr: float = 2e-3
    # BLIP: ViT + BERT question encoder + BERT answer decoder, own word vocabulary.
    blip_image_size: int = 64
    blip_patch_size: int = 8
    blip_width: int = 64
    blip_layers: int = 2
    blip_steps: int = 800
    blip_images: int = 16           # images per step (each encoded once) ...
    blip_questions: int = 6         # ... times questions per image
    blip_lr: float = 1e-3

