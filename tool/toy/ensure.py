"""Make what the demo configs name before their steps run: the toy world, its random or trained tiny models."""
from __future__ import annotations

from pathlib import Path

from tool.engine import dist
from tool.engine.config import Config


def ensure_toy_world(cfg: Config) -> None:
    """Generate the toy world at ``dataset.root`` when ``toy.generate`` is set (idempotent; rank 0)."""
    t = cfg.toy
    if not t.generate:
        return
    if dist.is_main():
        from tool.toy.world import generate_toy_world
        root = Path(cfg.dataset.root)
        if t.layout == "folder":    # the VOC-layout world first (its "twin"), then exported as a folder dataset
            from tool.toy.folder_layout import default_twin
            folder, root = root, Path(t.voc_twin) if t.voc_twin else default_twin(root)
        generate_toy_world(root, seed=t.seed, num_train=t.num_train, num_val=t.num_val,
                           num_extra_aug=t.num_extra_aug, image_size=t.image_size, classes=t.classes,
                           scene_correlation=t.scene_correlation, max_objects=t.max_objects,
                           layout="voc" if t.layout == "folder" else t.layout)
        if t.layout == "folder":
            from tool.toy.folder_layout import export_folder_world
            export_folder_world(root, folder)
        if t.random_models_dir is not None:
            from tool.toy.tiny_models import write_tiny_blip, write_tiny_clip
            models = Path(t.random_models_dir)
            if not (models / "blip").is_dir():
                write_tiny_blip(models / "blip", seed=t.seed)
            if not (models / "clip" / "open_clip_config.json").is_file():   # written last
                write_tiny_clip(models / "clip", seed=t.seed)
        if t.vlp_dir is not None:   # trained tiny BLIP + CLIP for the demo (cached: a no-op once trained)
            from tool.toy.vlp.cache import ensure_toy_vlp
            from tool.toy.vlp.params import ToyVlpParams
            ensure_toy_vlp(root, Path(t.vlp_dir), ToyVlpParams(seed=t.seed))
        if t.backbone is not None:  # toy "ImageNet" ResNet-50 for cam.pretrained (cached)
            from tool.toy.backbone import ToyBackboneParams, ensure_toy_backbone
            ensure_toy_backbone(Path(t.backbone), ToyBackboneParams(seed=t.seed, source_size=tuple(t.image_size)))
    dist.barrier()
