"""Typed, frozen configuration loaded from YAML.

Every section is a frozen dataclass; the YAML must use only known keys with values of the declared
type. ``--set section.key=value`` overrides are parsed as YAML scalars and checked the same way.
Errors name the key, the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


# --------------------------------------------------------------------------------------------
# Sections. Defaults are the paper's VOC settings (docs/design.md §5); configs/*.yaml state them anyway.
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepsConfig:
    """Which pipeline steps ``run_sample.py`` runs (the step toggles); ``--steps`` overrides."""

    qape: bool = True
    text_feats: bool = True
    train_cam: bool = True
    train_ritc: bool = True
    make_cam: bool = True
    eval_cam: bool = True
    cam_to_ir_label: bool = True
    train_irn: bool = True
    make_sem_seg: bool = True
    eval_sem_seg: bool = True
    train_deeplab: bool = True
    eval_deeplab: bool = True
    report: bool = True


@dataclass(frozen=True)
class DatasetConfig:
    """Which dataset and which of its splits each stage uses."""

    name: str = "voc12"                 # voc12 | coco14
    root: str = "data/VOCdevkit/VOC2012"
    train_split: str = "train_aug"      # classifier / RITC / IRN training, CAM export
    eval_split: str = "train"           # CAM and pseudo-mask quality (1,464 images on VOC)
    val_split: str = "val"              # DeepLab evaluation
    skip_bad_images: bool = False       # unreadable images: false = stop with the file named
    label_cache: bool = True            # cache XML-derived labels under <work_dir>/cache/


@dataclass(frozen=True)
class CamConfig:
    """``train_cam``: the baseline ResNet-50 CAM classifier, IRN recipe (docs/design.md §5)."""

    pretrained: str | None = "imagenet"   # imagenet | path to a torchvision-keyed .pth | null
    bn: str = "fixed"                          # fixed (frozen statistics, IRN) | batch (trainable, from scratch)
    init_checkpoint: str | None = None    # start from a whole CAM-net state dict (ours or the authors' res50_cam.pth)
    batch_size: int = 16
    epochs: int = 5
    max_steps: int | None = None           # cap on optimiser steps (smoke runs); null = epochs decide
    lr: float = 0.1
    classifier_lr_mult: float = 10.0
    weight_decay: float = 1.0e-4
    # IRN's PolyOptimizer passes weight_decay into SGD's momentum slot: the official runs used
    # momentum 1e-4 (docs/design.md §4 item 8). 0.9 is the fix.
    momentum: float = 1.0e-4
    poly_power: float = 0.9
    crop_size: int = 512
    resize_long: tuple[int, int] = (320, 640)
    hflip: bool = True
    checkpoint_every: int = 500                  # optimiser steps between resumable checkpoints
    log_every: int = 50


@dataclass(frozen=True)
class MakeCamConfig:
    """``make_cam``: multi-scale, flip-summed CAM export (docs/design.md §3 item 5)."""

    source: str = "ritc"                         # ritc (ritc/model.pth) | baseline (cam_baseline/model.pth)
    # Also export the baseline classifier's CAMs of dataset.eval_split (to cam_baseline/cam/) so that
    # eval_cam reports baseline and RITC side by side.
    compare_baseline: bool = True
    split: str | None = None               # null = dataset.train_split
    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)
    dtype: str = "float16"                       # float16 | float32 in the npz files


@dataclass(frozen=True)
class EvalConfig:
    """``eval_cam`` (and later pseudo-mask evaluation)."""

    cam_threshold: float = 0.15                  # the configured background threshold
    sweep_start: float = 0.0
    sweep_stop: float = 0.60                     # inclusive
    sweep_step: float = 0.01
    cam_dir: str | None = None             # evaluate CAMs from another folder (.npz ours or .npy IRN/official)
    # IRN/official .npy CAMs are pickles (loading one can run code): read them only with this set
    allow_pickle_cams: bool = False


@dataclass(frozen=True)
class QapeConfig:
    """``qape`` and ``text_feats``: Question-Answer Prompt Engineering (paper §3.2, Appendix A)."""

    vqa_model: str = "Salesforce/blip-vqa-capfilt-large"   # HF hub id or a local folder
    split: str | None = None                   # images asked about; null = dataset.train_split
    image_size: int = 480
    num_beams: int = 3
    max_length: int = 10
    min_length: int = 1
    precision: str = "float32"                 # float32 | bfloat16 (CUDA only)
    image_batch: int = 8                       # images decoded and encoded together
    prompt_batch: int = 64                     # equal-length prompts per generate call
    skip_bad_images: bool = False
    # Question templates per group, "{}" = the class name as spelled for questions (paper Table 6).
    # Empty = the built-in defaults of tool.qape_text.DEFAULT_QUESTIONS.
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    groups: tuple[str, ...] = ("fine_grained", "alias", "surrounding", "scene")   # Table 5 ablations
    no_qape: bool = False                      # Table 5 "no QAPE": FG = class name, BG = "no {class}"
    prompt: str = "a photo of {}."
    # FG answers that already name an alias of the class get no class name appended.
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipConfig:
    """The frozen CLIP of ``text_feats`` and ``train_ritc`` (open_clip)."""

    model: str = "ViT-L-14"                    # open_clip name, a model folder, or a .json architecture
    pretrained: str | None = "openai"          # tag or checkpoint path
    mask_prompt_checkpoint: str | None = None  # ovseg_swinbase_vitL14_ft_mpt.pth: mask-adapted CLIP (§4.5)
    mask_prompt_depth: int = 3
    normalization: str = "imagenet"            # imagenet (official: CLIP sees the CAM net's input) | clip
    text_batch_size: int = 256
    grad_checkpointing: bool = False           # recompute CLIP activations in backward (less memory)


@dataclass(frozen=True)
class RitcConfig:
    """``train_ritc``: region image-text contrastive training (paper §3.3, Eq. 1–11; docs/design.md §4–5)."""

    init: str = "baseline"                     # baseline (cam_baseline/model.pth) | path to res50_cam.pth
    bn: str = "batch"                          # trainable BN (official; SyncBN under CUDA DDP) | fixed
    batch_size: int = 8
    epochs: int = 15
    max_steps: int | None = None
    lr: float = 3.5e-4
    classifier_lr_mult: float = 10.0
    weight_decay: float = 1.0e-4
    momentum: float = 1.0e-4                   # official PolyOptimizer quirk (docs/design.md §4.8); 0.9 = fix
    poly_power: float = 0.9
    crop_size: int = 512
    resize_long: tuple[int, int] = (320, 640)
    hflip: bool = True
    variant: str = "official"                  # official | paper (docs/design.md §4 items 1, 2, 5)
    reduction: str = "sum"                     # sum (official) | mean over positive pairs
    omega: float = 0.1                         # FAT ratio ω (Eq. 9)
    fat: bool = True                           # FAT on/off
    tau: float = 0.7
    alpha: float = 10.0                        # FRC weight
    beta: float = 8.0                          # BRC weight
    gamma: float = 0.2                         # REG weight
    frc: bool = True                           # Table 4 switches
    brc: bool = True
    reg: bool = True
    precision: str = "float32"                 # float32 | bfloat16 (autocast, CUDA only)
    checkpoint_every: int = 500
    log_every: int = 50


@dataclass(frozen=True)
class DeepLabConfig:
    """``train_deeplab``: DeepLabV2-ResNet-101 (MSC) trained on the pseudo masks (docs/design.md §5).

    ``batch_size`` is images per optimiser step per rank; ``accum_steps`` cuts it into micro-batches
    (same step, less memory; BN is frozen, so only the per-micro-batch loss averaging differs).
    """

    # v2_resnet101: DeepLabV2-ResNet-101 (MSC, ASPP); v1_wr38: DeepLabV1-LargeFOV on the wide ResNet-38
    # (docs/deeplab-wr38.md), trained at one scale; deeplab.blocks / atrous_rates do not apply to it
    arch: str = field(default="v2_resnet101", metadata={"choices": ("v2_resnet101", "v1_wr38")})
    width_div: int = 1                         # v1_wr38 only: channels / this (1 = the published model; tests)
    bn_momentum: float = 0.1                   # running-statistics momentum of trainable BN (v1_wr38; torch's 0.1)
    pretrained: str | None = "imagenet"        # imagenet (torchvision ResNet-101) | path to a state dict | null
    pretrained_format: str = "torchvision"     # torchvision (RGB, ImageNet mean/std) | caffe (deeplab-pytorch, BGR)
    blocks: tuple[int, ...] = (3, 4, 23, 3)    # bottlenecks per stage: ResNet-101
    atrous_rates: tuple[int, ...] = (6, 12, 18, 24)
    msc_scales: tuple[float, ...] = (0.75, 0.5)  # extra input scales of MSC (besides 1.0), fused by max
    bn: str = "fixed"                          # fixed (frozen, not optimised; paper) | batch (from-scratch demo)
    label_dir: str | None = None               # pseudo masks; null = <work_dir>/sem_seg
    batch_size: int = 5
    accum_steps: int = 1
    iterations: int = 30000
    lr: float = 2.5e-4
    aspp_weight_lr_mult: float = 10.0
    aspp_bias_lr_mult: float = 20.0            # ASPP biases also get no weight decay
    weight_decay: float = 5.0e-4
    momentum: float = 0.9
    poly_power: float = 0.9
    crop_size: int = 321
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)
    hflip: bool = True
    precision: str = "float32"                 # float32 | bfloat16 (autocast, CUDA only)
    channels_last: bool = False                # CUDA only
    checkpoint_every: int = 1000
    log_every: int = 50


@dataclass(frozen=True)
class DeepLabEvalConfig:
    """``eval_deeplab``: DeepLab predictions on ``split``, dense CRF, mIoU (or VOC test-server PNGs)."""

    split: str | None = None                   # null = dataset.val_split; a split without GT (VOC test) gets no metrics
    msc: bool = False                          # fuse deeplab.msc_scales by max, as in training
    flip: bool = False                         # average the logits of the image and its mirror
    crf: bool = True
    crf_iterations: int = 10
    crf_gaussian_w: float = 3.0
    crf_gaussian_xy: float = 1.0
    crf_bilateral_w: float = 4.0
    crf_bilateral_xy: float = 67.0
    crf_bilateral_rgb: float = 3.0
    crf_workers: int = 4                       # CRF processes; 0 = in the main process
    submission: bool = False                   # also write the VOC server tree (always for a split without GT)
    voc_comp: str = "comp6"                    # comp5 (VOC data only) | comp6 (outside data, e.g. ImageNet)
    model: str | None = None                   # evaluate this file, not deeplab/model.pth (ours or deeplab-pytorch)


@dataclass(frozen=True)
class ReportConfig:
    """``report``: the run's HTML summary ``report.html`` with its pictures under ``report/``."""

    num_images: int = 6                        # images shown per split (eval split, val split)
    images: tuple[str, ...] = ()               # show these eval-split ids instead of an even spread
    thumb_size: int = 192                      # long side of the pictures, pixels (never upscaled)


@dataclass(frozen=True)
class IrnConfig:
    """IRN refinement (Ahn et al. 2019, as QA-CLIMS uses it): ``cam_to_ir_label``, ``train_irn``,
    ``make_sem_seg``, ``eval_sem_seg`` (docs/design.md §5)."""

    # cam_to_ir_label: confident foreground / background, each refined by a dense CRF
    conf_fg_thres: float = 0.30
    conf_bg_thres: float = 0.10
    crf: bool = True
    crf_t: int = 10
    crf_gt_prob: float = 0.7
    crf_gaussian_sxy: float = 3.0
    crf_gaussian_compat: float = 3.0
    crf_bilateral_sxy: float = 50.0
    crf_bilateral_srgb: float = 5.0
    crf_bilateral_compat: float = 10.0
    workers: int = 4                           # CRF processes (0 = in the main process)
    # train_irn
    pretrained: str | None = "imagenet"        # imagenet | cam_baseline (the CAM classifier's backbone) | path | null
    batch_size: int = 32
    epochs: int = 3
    max_steps: int | None = None
    lr: float = 0.1                            # edge branch; the displacement branch gets 10×
    weight_decay: float = 1.0e-4
    momentum: float = 1.0e-4                   # IRN's PolyOptimizer quirk (docs/design.md §4.8); 0.9 = fix
    poly_power: float = 0.9
    crop_size: int = 512
    rescale: tuple[float, float] = (0.5, 1.5)
    hflip: bool = True
    radius_train: int = 10
    checkpoint_every: int = 500
    log_every: int = 50
    # make_sem_seg: random walk from the stride-4 CAMs over the boundary map
    radius_infer: int = 5
    beta: float = 10.0
    exp_times: int = 8
    sem_seg_bg_thres: float = 0.20
    walk_threads: int | None = None            # torch CPU threads for the walk (1 suits shared CPUs)
    infer_scale: int = 1                       # IRNet sees the image ×this (1, 2 or 4); the walk runs on its
    #                                            finer boundary map (CAMs resized to it). 1 = IRN.


@dataclass(frozen=True)
class TrackingConfig:
    """Training scalars (docs/tracking.md). ``<work_dir>/events/<step>.jsonl`` is always written; these
    add optional writers. In no step's digest: switching them never reruns a step."""

    tensorboard: bool = False                  # also torch.utils.tensorboard event files under <work_dir>/tb/<step>/
    # also log to Weights & Biases: wandb.init keywords, e.g. {project: qa-clims, entity: me}; {} = off
    wandb: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ToyConfig:
    """The generated toy world (docs/design.md §6): made at ``dataset.root`` before the steps when ``generate``."""

    generate: bool = False
    seed: int = 0
    num_train: int = 200
    num_val: int = 60
    num_extra_aug: int = 0
    image_size: tuple[int, int] = (128, 160)     # H, W
    scene_correlation: float = 0.85
    max_objects: int = 3
    classes: tuple[str, ...] | None = None       # XML class names; null = all 20
    layout: str = "voc"                          # voc (VOC2012 folder) | coco (COCO 2014 folder, dataset.name coco14)
    # Write tiny randomly initialised BLIP (<dir>/blip) and CLIP (<dir>/clip) models here when absent:
    # the smoke run exercises the real loading code with them (their answers are noise).
    random_models_dir: str | None = None
    # Train tiny BLIP VQA (<dir>/blip) and CLIP (<dir>/clip) models on the world's train images here
    # (tool.toy_vlp; cached): the demo's QAPE and RITC then see sensible answers and region features.
    vlp_dir: str | None = None
    # Pretrain a ResNet-50 on object crops of a separately drawn toy collection and save its state dict
    # at this .pth path (tool.toy_backbone; cached): the offline stand-in for ImageNet weights, for
    # cam.pretrained. Made with the world (toy.generate).
    backbone: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole run. Paths are relative to the current working directory unless absolute."""

    work_dir: str = "work/voc12"
    device: str = "auto"                         # auto | cpu | cuda | cuda:N
    seed: int = 0                                # -1 = a random seed (logged)
    num_workers: int = 4
    toy: ToyConfig = field(default_factory=ToyConfig)
    steps: StepsConfig = field(default_factory=StepsConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    qape: QapeConfig = field(default_factory=QapeConfig)
    clip: ClipConfig = field(default_factory=ClipConfig)
    cam: CamConfig = field(default_factory=CamConfig)
    ritc: RitcConfig = field(default_factory=RitcConfig)
    make_cam: MakeCamConfig = field(default_factory=MakeCamConfig)
    irn: IrnConfig = field(default_factory=IrnConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    deeplab: DeepLabConfig = field(default_factory=DeepLabConfig)
    deeplab_eval: DeepLabEvalConfig = field(default_factory=DeepLabEvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------

def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path``, apply ``--set`` style overrides (``"cam.lr=0.05"``) and build the Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    for item in overrides:
        _apply_override(raw, item, path)
    return build(Config, raw, source=str(path))


def _apply_override(raw: dict, item: str, path: Path) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    dotted, _, text = item.partition("=")
    keys = dotted.strip().split(".")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {item!r}: value is not valid YAML: {e}") from e
    node = raw
    for k in keys[:-1]:
        node = node.setdefault(k, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {k!r} is not a section in {path}")
    node[keys[-1]] = value


def build(cls: type, raw: Any, source: str, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and value type."""
    where = prefix.rstrip(".") or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where} must be a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{source}: unknown key '{prefix}{unknown[0]}' (known keys in {where}: "
                          f"{', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, source, f"{prefix}{name}")
        choices = fields[name].metadata.get("choices")
        if choices is not None and kwargs[name] not in choices:
            raise ConfigError(f"{source}: key '{prefix}{name}' must be one of {', '.join(choices)}, got {value!r}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value if value is not None else {}, source, key + ".")
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, source, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' expects a list ({_type_name(tp)}), got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{source}: key '{key}' expects {len(args)} values ({_type_name(tp)}), got {value!r}")
        return tuple(_coerce(a, v, source, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        kt, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: key '{key}' expects a mapping, got {value!r}")
        return types.MappingProxyType({_coerce(kt, k, source, f"{key}.{k}"): _coerce(vt, v, source, f"{key}.{k}")
                                       for k, v in value.items()})
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
            return float(value)   # YAML 1.1 reads 1e-2 (no dot) as a string
    elif tp is str:
        if isinstance(value, str):
            return value
    else:  # pragma: no cover - a field type this loader does not know is a programming error
        raise TypeError(f"config field {key} has unsupported type {tp}")
    raise ConfigError(f"{source}: key '{key}' expects {_type_name(tp)}, got {value!r} ({type(value).__name__})")


_FLOAT_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


# --------------------------------------------------------------------------------------------
# Serialisation and digests
# --------------------------------------------------------------------------------------------

def to_dict(obj: Any) -> Any:
    """A plain-YAML/JSON view of a config (tuples as lists, mappings as dicts)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def dump_yaml(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def section_digest(cfg: Config, sections: tuple[str, ...], extra: Any = None) -> str:
    """sha256 over the named sections (and ``extra``): what a done marker compares."""
    payload = {s: to_dict(getattr(cfg, s)) for s in sections}
    payload["__extra__"] = extra
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
