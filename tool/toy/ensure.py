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
        ensure_toy_models(cfg, root)
    dist.barrier()


def ensure_toy_models(cfg: Config, root: Path) -> None:
    """The trained tiny BLIP + CLIP (``toy.vlp_dir``) and the toy "ImageNet" ResNet-50 (``toy.backbone``),
    each cached (a no-op once trained). When both must be trained, the backbone trains in a second process
    beside the VLP (whose two models train on one thread each), its first steps on one thread
    (``ToyBackboneParams.single_thread_steps``)."""
    t = cfg.toy
    background = None
    if t.backbone is not None:
        from tool.toy.backbone import BackgroundBackbone, ToyBackboneParams, cached_toy_backbone, ensure_toy_backbone
        params = ToyBackboneParams(seed=t.seed, source_size=(t.image_size[0], t.image_size[1]))
        if t.vlp_dir is not None and cached_toy_backbone(t.backbone, params) is None:
            background = BackgroundBackbone(t.backbone, params)
    try:
        if t.vlp_dir is not None:
            from tool.toy.vlp.cache import ensure_toy_vlp
            from tool.toy.vlp.params import ToyVlpParams
            ensure_toy_vlp(root, Path(t.vlp_dir), ToyVlpParams(seed=t.seed))
    except BaseException:
        if background is not None:
            background.stop()
        raise
    if background is not None:
        background.wait()
    elif t.backbone is not None:
        ensure_toy_backbone(Path(t.backbone), params)
