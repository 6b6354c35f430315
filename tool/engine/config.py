"""Typed, frozen configuration loaded from YAML.

Every section is a frozen dataclass; the YAML must use only known keys with values of the declared
type. ``--set section.key=value`` overrides are parsed as YAML scalars and checked the same way.
Errors name the key, the file and what was expected.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A configuration problem; the message names the file and the key."""


# Allowed values, checked when the config loads (a wrong one names its key and the choices).
Precision = Literal["float32", "bfloat16"]           # bfloat16 = autocast on the run's device (CUDA or CPU)
BnMode = Literal["fixed", "batch"]                   # fixed: frozen statistics, not optimised | batch: trainable
FrozenStages = Literal[0, 1, 2, 3, 4]                # the stem + layer1, then layer2, 3, 4 kept fixed


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


# The ordered step table (docs/design.md §3), stated once: the toggles above in their order. Each name is
# a module ``step.<name>`` that the runner imports when it runs.
STEPS: tuple[str, ...] = tuple(StepsConfig.__dataclass_fields__)
# The training steps and the config section whose ``train`` recipe each one runs.
TRAIN_SECTIONS: dict[str, str] = {"train_cam": "cam", "train_ritc": "ritc", "train_irn": "irn",
                                  "train_deeplab": "deeplab"}
# Every precision key and the steps it applies to (docs/configuration.md, "Precision").
PRECISION_KEYS: dict[str, tuple[str, ...]] = {
    "qape.precision": ("qape",), "cam.precision": ("train_cam",), "ritc.precision": ("train_ritc",),
    "make_cam.precision": ("make_cam",), "irn.precision": ("train_irn", "make_sem_seg"),
    "deeplab.precision": ("train_deeplab",), "deeplab_eval.precision": ("eval_deeplab",)}


def select_steps(toggles: dict[str, bool], steps: str | None, start: str | None, until: str | None) -> list[str]:
    """The steps to run, in table order: ``--steps`` if given, else the config toggles; then --from/--until."""
    for flag, name in (("--from", start), ("--until", until)):
        if name is not None and name not in STEPS:
            raise SystemExit(f"{flag} {name!r}: unknown step; steps are {', '.join(STEPS)}")
    if steps:
        wanted = [s.strip() for s in steps.split(",") if s.strip()]
        bad = [s for s in wanted if s not in STEPS]
        if bad:
            raise SystemExit(f"--steps: unknown step(s) {bad}; steps are {', '.join(STEPS)}")
        chosen = [s for s in STEPS if s in wanted]
    else:
        chosen = [s for s in STEPS if toggles.get(s, False)]
    lo = STEPS.index(start) if start else 0
    hi = STEPS.index(until) if until else len(STEPS) - 1
    return [s for s in chosen if lo <= STEPS.index(s) <= hi]


_FOLDER = {"only_for": "folder"}      # a key of one dataset.name only (section_digest leaves it out elsewhere)


@dataclass(frozen=True)
class DatasetConfig:
    """Which dataset and which of its splits each stage uses."""

    name: Literal["voc12", "coco14", "folder"] = "voc12"   # voc12/, coco14/, or your own images (folder)
    root: str = "data/VOCdevkit/VOC2012"       # dataset folder
    train_split: str = "train_aug"      # classifier / RITC / IRN training, CAM export
    eval_split: str = "train"           # CAM and pseudo-mask quality (1,464 images on VOC)
    val_split: str = "val"              # DeepLab evaluation
    skip_bad_images: bool = False       # unreadable images: false = stop with the file named
    label_cache: bool = True            # cache XML-derived labels under <work_dir>/cache/
    # name folder only: your own images and labels (tool/data/folder.py, docs/own-data.md); paths under root.
    # Left out of other datasets' digests (section_digest), so runs made before these keys existed stay done.
    images: str = field(default="images", metadata=_FOLDER)   # the images (sub-folders allowed)
    labels: str = field(default="labels.csv", metadata=_FOLDER)   # CSV (image,labels | image,<class>...) or JSON
    classes: tuple[str, ...] = field(default=(), metadata=_FOLDER)   # in index order; () = <root>/classes.txt
    question_names: dict[str, str] = field(default_factory=dict, metadata=_FOLDER)   # class -> its QAPE spelling
    masks: str = field(default="masks", metadata=_FOLDER)      # optional GT <masks>/<id>.png: 0 bg, 1..K, 255 ignore
    lists: str = field(default="splits", metadata=_FOLDER)     # split list files <lists>/<split>.txt
    # splits drawn once into <work_dir>/splits/ when no list exists, e.g. {train: 0.8, val: 0.2, seed: 0}
    split: dict[str, float] = field(default_factory=dict, metadata=_FOLDER)


@dataclass(frozen=True)
class CrfConfig:
    """A dense CRF (pydensecrf): a smoothness (Gaussian) and an appearance (bilateral) kernel.

    One section type for both uses: ``irn.crf`` refines the confident IR labels (unary from labels,
    ``gt_prob``; IRN's settings) and ``deeplab_eval.crf`` the DeepLab probabilities (deeplab-pytorch's
    settings; ``gt_prob`` unused)."""

    enabled: bool = True                       # off: the step uses its input unrefined
    iterations: int = 10                       # mean-field iterations
    gaussian_sxy: float = 3.0                  # smoothness kernel: spatial std (px)
    gaussian_compat: float = 3.0               # smoothness kernel: weight
    bilateral_sxy: float = 50.0                # appearance kernel: spatial std (px)
    bilateral_srgb: float = 5.0                # appearance kernel: colour std
    bilateral_compat: float = 10.0             # appearance kernel: weight
    gt_prob: float = 0.7                       # confidence of a label in the unary (labels only)


@dataclass(frozen=True)
class TrainRecipe:
    """How a training step trains (``cam.train``, ``ritc.train``, ``irn.train``, ``deeplab.train``): the SGD
    optimiser and its poly schedule, the crop and flip, and the checkpoint and log intervals. The whole recipe
    goes to the one training loop (``tool.engine.train_loop.fit``); each section's defaults are its paper settings."""

    batch_size: int = 16                       # images (crops) per optimiser step per rank
    epochs: int | None = 5                     # passes over dataset.train_split; null = as many as max_steps needs
    max_steps: int | None = None               # cap on optimiser steps (DeepLab: its iterations); null = epochs decide
    lr: float = 0.1                            # base lr of the backbone (heads: the section's multipliers)
    weight_decay: float = 1.0e-4               # SGD weight decay
    # IRN's PolyOptimizer passes weight_decay into SGD's momentum slot: the official CAM, RITC and IRN runs
    # used momentum 1e-4 (docs/design.md §4 item 8). 0.9 is the fix.
    momentum: float = 1.0e-4
    poly_power: float = 0.9                    # lr = base * (1 - step / max_step) ^ power
    crop_size: int = 512                       # square random crop (padded)
    hflip: bool = True                         # random horizontal flip
    checkpoint_every: int = 500                # optimiser steps between resumable checkpoints
    log_every: int = 50                        # optimiser steps between log lines (and training events)
    # also save the model after these optimiser steps (0 = before training) beside the final one, as
    # <model>.iter<k>.pth: the learning curve of tool.stage_study
    snapshots: tuple[int, ...] = ()


@dataclass(frozen=True)
class CamConfig:
    """``train_cam``: the baseline ResNet-50 CAM classifier, IRN recipe (docs/design.md §5)."""

    pretrained: str | None = "imagenet"   # imagenet | path to a torchvision-keyed .pth | null
    bn: BnMode = "fixed"                       # fixed (frozen statistics, IRN) | batch (trainable, from scratch)
    # the stem + layer1, layer2, ... kept fixed, weights and BN statistics: 0 = QA-CLIMS (all but the stem
    # train), 2 = IRN's own CAM net (no gradient below layer3); fewer trained stages, cheaper steps
    frozen_stages: FrozenStages = 0
    init_checkpoint: str | None = None    # start from a whole CAM-net state dict (ours or the authors' res50_cam.pth)
    train: TrainRecipe = field(default_factory=TrainRecipe)
    classifier_lr_mult: float = 10.0           # lr multiplier of the 1x1 classifier
    resize_long: tuple[int, int] = (320, 640)  # random long-side resize range before the crop
    precision: Precision = "float32"           # float32 | bfloat16 (autocast; the loss stays float32)


@dataclass(frozen=True)
class MakeCamConfig:
    """``make_cam``: multi-scale, flip-summed CAM export (docs/design.md §3 item 5)."""

    source: Literal["ritc", "baseline"] = "ritc"   # ritc (ritc/model.pth) | baseline (cam_baseline/model.pth)
    # Also export the baseline classifier's CAMs of dataset.eval_split (to cam_baseline/cam/) so that
    # eval_cam reports baseline and RITC side by side.
    compare_baseline: bool = True
    split: str | None = None               # null = dataset.train_split
    scales: tuple[float, ...] = (1.0, 0.5, 1.5, 2.0)   # input scales whose (flip-summed) CAMs are added (IRN's four)
    dtype: Literal["float16", "float32"] = "float16"   # of the maps in the npz files
    precision: Precision = "float32"           # float32 | bfloat16 (autocast of the CAM net; scales fused in float32)


@dataclass(frozen=True)
class EvalConfig:
    """``eval_cam`` (and later pseudo-mask evaluation)."""

    cam_threshold: float = 0.15                  # the configured background threshold
    sweep_start: float = 0.0                   # the threshold sweep's first value
    sweep_stop: float = 0.60                     # inclusive
    sweep_step: float = 0.01                   # its step
    cam_dir: str | None = None             # evaluate CAMs from another folder (.npz ours or .npy IRN/official)
    # IRN/official .npy CAMs are pickles (loading one can run code): read them only with this set
    allow_pickle_cams: bool = False


@dataclass(frozen=True)
class QapeConfig:
    """``qape`` and ``text_feats``: Question-Answer Prompt Engineering (paper §3.2, Appendix A)."""

    vqa_model: str = "Salesforce/blip-vqa-capfilt-large"   # HF hub id or a local folder
    split: str | None = None                   # images asked about; null = dataset.train_split
    image_size: int = 480                      # BLIP's input side (official 480)
    num_beams: int = 3                         # beam search width (official BLIP VQA settings)
    max_length: int = 10                       # answer tokens, at most
    min_length: int = 1                        # answer tokens, at least
    precision: Precision = "float32"           # float32 | bfloat16 (autocast of BLIP's encoder and decoder)
    image_batch: int = 8                       # images decoded and encoded together
    prompt_batch: int = 64                     # equal-length prompts per generate call
    skip_bad_images: bool = False              # skip unreadable images here even if dataset.skip_bad_images is off
    # Question templates per group, "{}" = the class name as spelled for questions (paper Table 6).
    # Empty = the built-in defaults of net.qape_text.DEFAULT_QUESTIONS.
    questions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Table 5 ablations: the question groups asked; without a BG group the BG text is "no {class}"
    groups: tuple[str, ...] = ("fine_grained", "alias", "surrounding", "scene")
    no_qape: bool = False                      # Table 5 "no QAPE": FG = class, BG = "no {class}"; qape skipped
    prompt: str = "a photo of {}."             # the CLIP prompt around each corpus text, {} = the text
    # FG answers that already name an alias of the class get no class name appended.
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class ClipConfig:
    """The frozen CLIP of ``text_feats`` and ``train_ritc`` (open_clip)."""

    model: str = "ViT-L-14"                    # open_clip name, a model folder, or a .json architecture
    pretrained: str | None = "openai"          # tag or checkpoint path
    # activation the weights were trained with; null = from the tag / file (net/clip.py quick_gelu_for).
    # A plain state dict for an OpenAI architecture must declare it: true for OpenAI's weights.
    quick_gelu: bool | None = None
    mask_prompt_checkpoint: str | None = None  # ovseg_swinbase_vitL14_ft_mpt.pth: mask-adapted CLIP (§4.5)
    mask_prompt_depth: int = 3                 # transformer blocks that get the mask prompt (ovseg: 3)
    normalization: Literal["imagenet", "clip"] = "imagenet"   # imagenet (official: CLIP sees the CAM net's input)
    text_batch_size: int = 256                 # texts encoded together by text_feats
    grad_checkpointing: bool = False           # recompute CLIP activations in backward (less memory)


@dataclass(frozen=True)
class RitcConfig:
    """``train_ritc``: region image-text contrastive training (paper §3.3, Eq. 1–11; docs/design.md §4–5)."""

    init: str = "baseline"                     # baseline (cam_baseline/model.pth) | path to res50_cam.pth
    bn: BnMode = "batch"                       # trainable BN (official; SyncBN under CUDA DDP) | fixed
    frozen_stages: FrozenStages = 0            # as cam.frozen_stages (official: 0, every stage but the stem trains)
    train: TrainRecipe = field(default_factory=lambda: TrainRecipe(batch_size=8, epochs=15, lr=3.5e-4))
    classifier_lr_mult: float = 10.0           # lr multiplier of the classifier
    resize_long: tuple[int, int] = (320, 640)  # random long-side resize range before the crop
    variant: Literal["official", "paper"] = "official"   # docs/design.md §4 items 1, 2, 5
    reduction: Literal["sum", "mean"] = "sum"  # sum (official) | mean over positive pairs
    omega: float = 0.1                         # FAT ratio ω (Eq. 9)
    fat: bool = True                           # FAT on/off
    tau: float = 0.7                           # temperature of the region-text similarities (Eq. 4, 7)
    alpha: float = 10.0                        # FRC weight
    beta: float = 8.0                          # BRC weight
    gamma: float = 0.2                         # REG weight
    frc: bool = True                           # FRC on/off (the Table 4 switches: frc, brc, reg)
    brc: bool = True                           # BRC on/off
    reg: bool = True                           # REG on/off
    precision: Precision = "float32"           # float32 | bfloat16 (autocast; the losses stay float32)


@dataclass(frozen=True)
class DeepLabConfig:
    """``train_deeplab``: DeepLabV2-ResNet-101 (MSC) trained on the pseudo masks (docs/design.md §5).

    ``train.batch_size`` is images per optimiser step per rank; ``accum_steps`` cuts it into micro-batches
    (same step, less memory; BN is frozen, so only the per-micro-batch loss averaging differs).
    """

    # v2_resnet101: DeepLabV2-ResNet-101 (MSC, ASPP); v1_wr38: DeepLabV1-LargeFOV on the wide ResNet-38
    # (docs/deeplab-wr38.md), trained at one scale; deeplab.blocks / atrous_rates do not apply to it
    arch: Literal["v2_resnet101", "v1_wr38"] = "v2_resnet101"
    width_div: int = 1                         # v1_wr38 only: channels / this (1 = the published model; tests)
    bn_momentum: float = 0.1                   # running-statistics momentum of trainable BN (v1_wr38; torch's 0.1)
    pretrained: str | None = "imagenet"        # imagenet (torchvision ResNet-101) | path to a state dict | null
    pretrained_format: Literal["torchvision", "caffe"] = "torchvision"   # RGB ImageNet mean/std | BGR (deeplab-pytorch)
    blocks: tuple[int, ...] = (3, 4, 23, 3)    # bottlenecks per stage: ResNet-101
    atrous_rates: tuple[int, ...] = (6, 12, 18, 24)   # ASPP dilation rates (DeepLabV2)
    msc_scales: tuple[float, ...] = (0.75, 0.5)  # extra input scales of MSC (besides 1.0), fused by max; [] = one
    # 8 (DeepLabV2) | 16: layer3 keeps its stride, dilations halve (with cam_baseline: the classifier's geometry)
    output_stride: Literal[8, 16] = 8
    frozen_stages: int = 0                     # 0..4: the stem + layer1, layer2, ... kept fixed (needs bn: fixed)
    # Start the background logit at the label prior: its bias is set so that the initial model calls background
    # the share of cells the training labels do (docs/stage-study.md). For a head that starts as the CAM
    # classifier (pretrained: cam_baseline), whose background logit is otherwise 0 everywhere.
    init_bg_prior: bool = False
    bn: BnMode = "fixed"                       # fixed (frozen, not optimised; paper) | batch (from-scratch demo)
    label_dir: str | None = None               # pseudo masks; null = <work_dir>/sem_seg
    train: TrainRecipe = field(default_factory=lambda: TrainRecipe(
        batch_size=5, epochs=None, max_steps=30000, lr=2.5e-4, weight_decay=5.0e-4, momentum=0.9, crop_size=321,
        checkpoint_every=1000))
    accum_steps: int = 1                       # micro-batches per step (same step, less memory)
    aspp_weight_lr_mult: float = 10.0          # lr multiplier of the ASPP weights
    aspp_bias_lr_mult: float = 20.0            # ASPP biases also get no weight decay
    scales: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)   # random rescale choices before the crop
    precision: Precision = "float32"           # float32 | bfloat16 (autocast; the losses stay float32)
    channels_last: bool = False                # channels-last memory format (training, eval_deeplab, predict)


@dataclass(frozen=True)
class DeepLabEvalConfig:
    """``eval_deeplab``: DeepLab predictions on ``split``, dense CRF, mIoU (or VOC test-server PNGs)."""

    split: str | None = None                   # null = dataset.val_split; a split without GT (VOC test) gets no metrics
    msc: bool = False                          # fuse deeplab.msc_scales by max, as in training
    flip: bool = False                         # average the logits of the image and its mirror
    # deeplab-pytorch's CRF: 10 iterations, Gaussian sxy 1 weight 3, bilateral sxy 67 srgb 3 weight 4
    crf: CrfConfig = field(default_factory=lambda: CrfConfig(gaussian_sxy=1.0, gaussian_compat=3.0,
                                                             bilateral_sxy=67.0, bilateral_srgb=3.0,
                                                             bilateral_compat=4.0))
    crf_workers: int = 4                       # CRF processes; 0 = in the main process
    submission: bool = False                   # also write the VOC server tree (always for a split without GT)
    voc_comp: Literal["comp5", "comp6"] = "comp6"   # comp5 (VOC data only) | comp6 (outside data, e.g. ImageNet)
    model: str | None = None                   # evaluate this file, not deeplab/model.pth (ours or deeplab-pytorch)
    precision: Precision = "float32"           # float32 | bfloat16 (autocast of the forward; eval_deeplab, predict)


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
    conf_bg_thres: float = 0.10                # confident background below this CAM score (after the CRF)
    crf: CrfConfig = field(default_factory=CrfConfig)
    workers: int = 4                           # CRF processes (0 = in the main process)
    # train_irn
    pretrained: str | None = "imagenet"        # imagenet | cam_baseline (the CAM classifier's backbone) | path | null
    train: TrainRecipe = field(default_factory=lambda: TrainRecipe(batch_size=32, epochs=3, lr=0.1))
    rescale: tuple[float, float] = (0.5, 1.5)  # random rescale range before the crop
    radius_train: int = 10                     # affinity radius of the training pairs (stride-4 cells)
    # train the displacement branch and its mean shift (IRN). The pseudo masks read the boundary branch alone
    # (IRN's instance masks would read the displacement): false skips it, the boundary branch trains the same
    displacement: bool = True
    # the backbone's first stages trained with the boundary branch at its lr: 0 = IRN (frozen backbone), 1 = the
    # stem, 2 = + layer1, 3 = + layer2 (their BatchNorm stays fixed). The branch's 1x1 read-outs of frozen
    # stride-4 features are what caps the walk on the toy world (docs/stage-study.md)
    trained_stages: Literal[0, 1, 2, 3] = 0
    # make_sem_seg: random walk from the stride-4 CAMs over the boundary map
    radius_infer: int = 5
    beta: float = 10.0                         # the walk's transition sharpness: affinity ^ beta
    exp_times: int = 8                         # the walk runs 2 ^ exp_times steps
    sem_seg_bg_thres: float = 0.20             # the background plane of the walked CAMs
    walk_threads: int | None = None            # torch CPU threads for the walk (1 suits shared CPUs)
    infer_scale: Literal[1, 2, 4] = 1          # IRNet sees the image ×this (1, 2 or 4); the walk runs on its
    #                                            finer boundary map (CAMs resized to it). 1 = IRN.
    # IRNet's forward in train_irn and make_sem_seg; its losses and the random walk (2^exp_times products of
    # the transition matrix, an accumulation bf16's 8-bit mantissa would lose) stay float32
    precision: Precision = "float32"


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

    generate: bool = False                     # generate the toy world at dataset.root before the steps (idempotent)
    seed: int = 0                              # the world's seed (its drawings, and the toy models trained on it)
    num_train: int = 200                       # images of `train` (the eval split)
    num_val: int = 60                          # images of `val`
    num_extra_aug: int = 0                     # extra images in `train_aug` only (as SBD adds to VOC)
    image_size: tuple[int, int] = (128, 160)     # H, W
    # how often an object appears in its class's usual scene (the context QAPE exploits)
    scene_correlation: float = 0.85
    max_objects: int = 3                       # objects per image, at most
    classes: tuple[str, ...] | None = None       # XML class names; null = all 20
    # voc: VOC2012 folder | coco: COCO 2014 folder (dataset.name coco14) | folder: the VOC world exported as a
    # folder dataset (tool.toy.folder_layout, dataset.name folder)
    layout: Literal["voc", "coco", "folder"] = "voc"
    # layout folder: where the VOC-layout world is made first (null = <dataset.root>/../VOC2012)
    voc_twin: str | None = None
    # Write tiny randomly initialised BLIP (<dir>/blip) and CLIP (<dir>/clip) models here when absent:
    # the smoke run exercises the real loading code with them (their answers are noise).
    random_models_dir: str | None = None
    # Train tiny BLIP VQA (<dir>/blip) and CLIP (<dir>/clip) models on the world's train images here
    # (tool.toy.vlp; cached): the demo's QAPE and RITC then see sensible answers and region features.
    vlp_dir: str | None = None
    # Pretrain a ResNet-50 on object crops of a separately drawn toy collection and save its state dict
    # at this .pth path (tool.toy.backbone; cached): the offline stand-in for ImageNet weights, for
    # cam.pretrained. Made with the world (toy.generate).
    backbone: str | None = None


@dataclass(frozen=True)
class Config:
    """The whole run. Paths are relative to the current working directory unless absolute."""

    work_dir: str = "work/voc12"               # every artefact of the run goes here
    device: str = "auto"                         # auto | cpu | cuda | cuda:N
    seed: int = 0                                # -1 = a random seed (logged)
    num_workers: int = 4                       # data-loader processes
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

    @property
    def cam_split(self) -> str:
        """The split whose CAMs, IR labels and pseudo masks the run makes: ``make_cam.split``, else
        ``dataset.train_split`` (read by make_cam, cam_to_ir_label, train_irn and make_sem_seg)."""
        return self.make_cam.split or self.dataset.train_split


# --------------------------------------------------------------------------------------------
# Loading and checking
# --------------------------------------------------------------------------------------------

def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (and the files it inherits from with ``base:``), apply ``--set`` style overrides
    (``"cam.train.lr=0.05"``) and build the Config."""
    raw = read_config_tree(Path(path))
    for item in overrides:
        _apply_override(raw, item, Path(path))
    return build(Config, raw, source=str(path))


def read_config_tree(path: Path, _seen: tuple[Path, ...] = ()) -> dict:
    """The raw mapping of ``path`` merged over its ``base:`` file (a path relative to ``path``'s folder),
    recursively: a section merges key by key, any other value replaces the inherited one."""
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys to values")
    _rename_keys(raw, str(path))
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f"{path}: key 'base' must be the file name of the config it inherits from, got {base!r}")
    base_path = path.parent / base
    if not base_path.is_file():
        raise ConfigError(f"{path}: key 'base': {base_path} does not exist")
    if base_path.resolve() in _seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: key 'base': {base_path} inherits from itself")
    return merge_sections(Config, read_config_tree(base_path, (*_seen, path.resolve())), raw)


def merge_sections(cls: type, base: dict, child: dict) -> dict:
    """``child`` over ``base``: mappings of config sections merge recursively, other values are replaced
    (a mapping-valued key such as ``qape.questions`` is replaced whole, as written)."""
    hints = typing.get_type_hints(cls)
    out = dict(base)
    for k, v in child.items():
        tp = hints.get(k)
        if isinstance(tp, type) and dataclasses.is_dataclass(tp) and isinstance(v, dict) \
                and isinstance(out.get(k), dict):
            out[k] = merge_sections(tp, out[k], v)
        else:
            out[k] = v
    return out


# Keys that moved: old dotted key -> new dotted key. A config that still uses an old key loads, with a
# warning naming the new one; one that sets both fails naming both.
RENAMED: dict[str, str] = {
    **{f"{sec}.{k}": f"{sec}.train.{k}" for sec in ("cam", "ritc", "irn", "deeplab") for k in (
        "batch_size", "epochs", "max_steps", "lr", "weight_decay", "momentum", "poly_power", "crop_size", "hflip",
        "checkpoint_every", "log_every")},
    "deeplab.iterations": "deeplab.train.max_steps",
    **{f"irn.crf_{a}": f"irn.crf.{b}" for a, b in (
        ("t", "iterations"), ("gt_prob", "gt_prob"), ("gaussian_sxy", "gaussian_sxy"),
        ("gaussian_compat", "gaussian_compat"), ("bilateral_sxy", "bilateral_sxy"),
        ("bilateral_srgb", "bilateral_srgb"), ("bilateral_compat", "bilateral_compat"))},
    **{f"deeplab_eval.crf_{a}": f"deeplab_eval.crf.{b}" for a, b in (
        ("iterations", "iterations"), ("gaussian_w", "gaussian_compat"), ("gaussian_xy", "gaussian_sxy"),
        ("bilateral_w", "bilateral_compat"), ("bilateral_xy", "bilateral_sxy"), ("bilateral_rgb", "bilateral_srgb"))},
}
SWITCH_SECTIONS = ("irn.crf", "deeplab_eval.crf")   # were on/off keys; now sections with ``enabled``


def _rename_keys(raw: dict, source: str) -> None:
    """Move old keys (RENAMED, and ``true``/``false`` at a SWITCH_SECTIONS key) to their new place, in place."""
    def node_of(dotted: str, create: bool) -> tuple[dict | None, str]:
        *parents, last = dotted.split(".")
        node = raw
        for k in parents:
            if not isinstance(node.get(k), dict):
                if not create or k in node:
                    return None, last
                node[k] = {}
            node = node[k]
        return node, last

    for key in SWITCH_SECTIONS:
        node, last = node_of(key, create=False)
        if node is not None and isinstance(node.get(last), bool):
            log.warning("%s: key '%s: %s' is now '%s.enabled: %s'", source, key, node[last], key, node[last])
            node[last] = {"enabled": node[last]}
    for old, new in RENAMED.items():
        node, last = node_of(old, create=False)
        if node is None or last not in node:
            continue
        value = node.pop(last)
        target, new_last = node_of(new, create=True)
        if target is None:
            raise ConfigError(f"{source}: key '{old}' is now '{new}', but '{new.rsplit('.', 1)[0]}' is not a section")
        if new_last in target:
            raise ConfigError(f"{source}: both '{old}' and its new name '{new}' are set; keep '{new}'")
        log.warning("%s: key '%s' is now '%s'; please rename it", source, old, new)
        target[new_last] = value


def _apply_override(raw: dict, item: str, path: Path) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected section.key=value")
    dotted, _, text = item.partition("=")
    dotted = dotted.strip()
    new = RENAMED.get(dotted) or (f"{dotted}.enabled" if dotted in SWITCH_SECTIONS and text.strip() in
                                  ("true", "false", "True", "False") else None)
    if new is not None:
        log.warning("--set %s: key '%s' is now '%s'; please rename it", item, dotted, new)
        dotted = new
    keys = dotted.split(".")
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


def build(cls: type, raw: Any, source: str, prefix: str = "", default: Any = None) -> Any:
    """Build dataclass ``cls`` from a mapping, checking every key and value type; keys the mapping leaves out
    keep their values in ``default`` (the instance the parent section starts from), else the class defaults."""
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
        tp, f = hints[name], fields[name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):   # a section: partial mappings start from its default
            start = f.default_factory() if f.default_factory is not dataclasses.MISSING else None
            kwargs[name] = build(tp, value if value is not None else {}, source, f"{prefix}{name}.", start)
        else:
            kwargs[name] = _coerce(tp, value, source, f"{prefix}{name}")
    return dataclasses.replace(default, **kwargs) if default is not None else cls(**kwargs)


def _coerce(tp: Any, value: Any, source: str, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:   # the value and its type: YAML's true is not the choice 1
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise ConfigError(f"{source}: key '{key}' must be one of {', '.join(map(str, typing.get_args(tp)))}, "
                          f"got {value!r}")
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
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
    payload = {s: _digest_view(getattr(cfg, s)) for s in sections}
    payload["__extra__"] = extra
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _digest_view(section: Any) -> Any:
    """``to_dict`` of a section without the keys of another ``name`` (``metadata only_for``): a folder-dataset
    key neither changes nor, added to the code, invalidates the digests of VOC / COCO runs."""
    view = to_dict(section)
    if dataclasses.is_dataclass(section):
        for f in dataclasses.fields(section):
            if f.metadata.get("only_for") not in (None, getattr(section, "name", None)):
                view.pop(f.name)
    return view
