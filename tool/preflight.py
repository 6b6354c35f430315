"""Preflight: what the selected steps of a config need, checked before hours of GPU time (``run_sample.py --check``).

Nothing is run or written. Every problem found is returned (not just the first), each naming the config key
to change; fatal ones would stop the run, the others are worth knowing (a download, a CPU run). Checks:

- the dataset root, the split lists each step reads (every listed image present), their labels, the GT
  masks of the evaluated splits (for every image or none, class indices not colours, each of its image's
  size, values in range), and a sample of images that must decode;
- every weight a step loads: a local path exists and is the right kind of file (a torch state dict, a
  model folder), a hub id or tag is in the local cache (else named as needing a download), a CLIP
  architecture is one of open_clip's and its activation is known (``net.clip.quick_gelu_for``);
- inputs made by steps not selected (their done markers);
- the device, and free GPU memory against :func:`train_memory_gb` per training step;
- free disk against :func:`artefact_bytes` of the selected steps;
- the torchrun world size against the batch settings (no training step may get zero optimiser steps);
- the paper's assets the config leaves unset or sets otherwise (:func:`paper_asset_notes`: notes, never fatal).

The memory and disk figures are estimates with their formulas stated (docs/real-runs.md).
"""
from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tool.data.registry import build_dataset
from tool.engine.config import PRECISION_KEYS, TRAIN_SECTIONS, Config
from tool.engine.paths import WorkPaths
from tool.engine.runtime import cpu_has_native_bf16

log = logging.getLogger(__name__)

# torchvision files behind ``imagenet`` (net/resnet50.py IMAGENET_URL, net/deeplab.py IMAGENET101_URL)
_HUB_FILES = {"resnet50": "resnet50-0676ba61.pth", "resnet101": "resnet101-63fe2227.pth"}


@dataclass(frozen=True)
class Problem:
    """One finding: ``key`` is the config key to change (or ``steps.<name>``), ``fatal`` whether the run would stop."""

    key: str
    message: str
    fatal: bool = True

    def line(self) -> str:
        return f"{'FATAL' if self.fatal else 'note '} {self.key}: {self.message}"


# --------------------------------------------------------------------------------------------
# Estimates
# --------------------------------------------------------------------------------------------

# Memory per training step = 1.2 · (fixed + batch · (per_crop · (crop / 512)² + per_region)) + 0.5, in GB, fp32,
# one rank. fixed: the trained weights with their gradients and SGD momentum (12 bytes a parameter) plus the
# frozen models (CLIP ViT-L-14 1.71 GB, IRN's backbone 0.09 GB). per_crop: the activations autograd keeps for
# one 512² training crop; per_region: RITC's CLIP region images of one training image (FG + BG of ≈ 1.5
# present classes on VOC = 3 images at 224², which do not grow with the crop). Calibrated on the bytes saved
# for backward counted by ``python -m bench.real_scale --saved`` (docs/real-runs.md): CAM net 0.464 GB per
# 512² crop, IRN branches 0.208, DeepLabV2-R101 MSC 1.344 at 321² (3.42 at 512²), one ViT-L-14 region image
# 0.357 (0.028 with gradient checkpointing). 1.2 covers allocator slack and backward's transient buffers,
# 0.5 GB the CUDA context: both assumed, not measured (no GPU here). bf16 autocast: activations × 0.6.
MEMORY_MODEL_GB: dict[str, tuple[float, float, float]] = {
    "train_cam": (0.30, 0.464, 0.0),
    "train_ritc": (2.0, 0.464, 3 * 0.357),
    "train_irn": (0.11, 0.208, 0.0),
    "train_deeplab": (0.53, 1.344 * (512 / 321) ** 2, 0.0),
}
RITC_REGION_CKPT_GB = 3 * 0.028     # per_region of RITC with clip.grad_checkpointing
_CROP_REF = 512


def train_memory_gb(cfg: Config, step: str) -> float:
    """Estimated peak GPU memory (GB) of one optimiser step of ``step`` on one rank (see ``MEMORY_MODEL_GB``)."""
    fixed, per_crop, per_region = MEMORY_MODEL_GB[step]
    sec = getattr(cfg, TRAIN_SECTIONS[step])
    batch = sec.train.batch_size // (cfg.deeplab.accum_steps if step == "train_deeplab" else 1)
    if step == "train_ritc" and cfg.clip.grad_checkpointing:
        per_region = RITC_REGION_CKPT_GB
    act = batch * (per_crop * (sec.train.crop_size / _CROP_REF) ** 2 + per_region)
    if getattr(sec, "precision", "float32") == "bfloat16":
        act *= 0.6
    return 1.2 * (fixed + act) + 0.5


def artefact_bytes(cfg: Config, steps: Iterable[str], n_train: int, n_eval: int, pixels: float) -> int:
    """Disk the selected steps write (bytes), from the image counts and the mean pixels per image.

    CAM npz (fp16 ``high_res`` of ≈1.5 present classes, deflated to ≈ 1/2): 1.5 px bytes; IR labels and pseudo
    masks (PNG, ≈ 0.1 byte/px); checkpoints ≈ 3× the trained weights (model, momentum, the final model).
    """
    steps = set(steps)
    per_px = 2 * (1.5 if cfg.make_cam.dtype == "float16" else 3.0) / 2
    b = 0.0
    if "make_cam" in steps:
        b += per_px * pixels * (n_train + (n_eval if cfg.make_cam.compare_baseline else 0))
    b += sum(0.1 * pixels * n_train for s in ("cam_to_ir_label", "make_sem_seg") if s in steps)
    b += sum(w for s, w in (("train_cam", 0.3e9), ("train_ritc", 0.3e9), ("train_irn", 0.3e9),
                            ("train_deeplab", 0.6e9)) if s in steps)
    return int(b)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------

def preflight(cfg: Config, steps: list[str], *, inputs_of: Callable[[str], tuple[str, ...]] | None = None,
              world_size: int | None = None, decode_sample: int = 8) -> list[Problem]:
    """Every problem the selected ``steps`` of ``cfg`` would meet (empty: nothing found). See the module docstring.

    ``inputs_of(step)`` gives the steps whose artefacts it reads (the step modules' ``INPUTS``);
    ``world_size`` defaults to torchrun's ``WORLD_SIZE``; ``decode_sample`` images per split are decoded.
    """
    problems: list[Problem] = []
    paths = WorkPaths(Path(cfg.work_dir).resolve())
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    counts, pixels = _check_dataset(cfg, steps, paths, decode_sample, problems)
    _check_weights(cfg, steps, paths, problems)
    problems += paper_asset_notes(cfg, steps)
    if inputs_of is not None:
        _check_inputs(steps, paths, inputs_of, problems)
    _check_device_memory(cfg, steps, problems)
    _check_disk(cfg, steps, paths, counts, pixels, problems)
    _check_world(cfg, steps, counts, world, problems)
    return problems


def _split_needs(cfg: Config, steps: list[str]) -> dict[tuple[str, str], set[str]]:
    """(config key, split) -> what the steps need of it: ``labels``, ``gt`` (the masks of an evaluated split)."""
    d = cfg.dataset
    cam_split = ("make_cam.split", cfg.make_cam.split) if cfg.make_cam.split else ("dataset.train_split", d.train_split)
    need: dict[tuple[str, str], set[str]] = {}

    def add(key_split: tuple[str, str], *what: str) -> None:
        need.setdefault(key_split, set()).update(what)

    train = ("dataset.train_split", d.train_split)
    evals = ("dataset.eval_split", d.eval_split)
    for s in steps:
        if s in ("qape", "text_feats"):
            add(("qape.split", cfg.qape.split) if cfg.qape.split else train, "labels")
        elif s in ("train_cam", "train_ritc", "train_irn"):
            add(train, "labels")
        elif s == "train_deeplab":
            add(train)
        elif s in ("make_cam", "cam_to_ir_label", "make_sem_seg"):
            add(cam_split, "labels")
            if s == "make_cam" and cfg.make_cam.compare_baseline:
                add(evals, "labels")
        elif s in ("eval_cam", "eval_sem_seg"):
            add(evals, "labels", "gt")
        elif s == "eval_deeplab":
            add(("deeplab_eval.split", cfg.deeplab_eval.split) if cfg.deeplab_eval.split
                else ("dataset.val_split", d.val_split), "gt")
        # (report shows what exists: it needs nothing of a split)
    return need


def _check_dataset(cfg: Config, steps: list[str], paths: WorkPaths, sample: int,
                   problems: list[Problem]) -> tuple[dict[str, int], float]:
    """Split lists, images, labels, GT, decoding. Returns ({split key: image count}, mean pixels per image)."""
    counts: dict[str, int] = {}
    root = Path(cfg.dataset.root)
    if cfg.toy.generate and not root.is_dir():
        problems.append(Problem("dataset.root", f"{root} does not exist yet: toy.generate makes it", fatal=False))
        return counts, 0.0
    cache = paths.cache_dir if (cfg.dataset.label_cache and paths.cache_dir.is_dir()) else None
    try:
        ds = build_dataset(cfg.dataset, cache)
    except (RuntimeError, ValueError) as e:     # voc12 / coco14 DatasetError (a RuntimeError), unknown name
        key = getattr(e, "key", None) or ("dataset.root" if "root" in str(e) else "dataset.name")
        problems.append(Problem(key, str(e)))
        return counts, 0.0
    sizes: list[int] = []
    for (key, split), what in _split_needs(cfg, steps).items():
        try:
            ids = ds.ids(split)
        except RuntimeError as e:
            problems.append(Problem(key, str(e)))
            continue
        counts[key] = len(ids)
        if "labels" in what:
            try:
                ds.labels(ids)
            except RuntimeError as e:
                problems.append(Problem(key, str(e)))
        if "gt" in what:
            _check_gt(ds, split, ids, key, sample, problems)
        sizes += _decode_sample(ds, ids, sample, key, cfg.dataset.skip_bad_images, problems)
    return counts, (sum(sizes) / len(sizes) if sizes else 0.0)


def _check_gt(ds, split: str, ids: list[str], key: str, sample: int, problems: list[Problem]) -> None:
    """The GT masks of an evaluated split, as the evaluations will read them: none (the evaluation is skipped,
    a note), some (fatal: they stop at the first missing one), each paletted or greyscale class indices (an
    RGB colour mask is not), of its image's size (headers only, every mask), values 0..K or 255 (decoded:
    ``sample`` masks spread over the split)."""
    from PIL import Image

    have = [i for i in ids if ds.has_gt(i)]
    if not have:
        problems.append(Problem(key, f"split {split!r}: no image has a GT mask (e.g. {ds.gt_path(ids[0])}): its "
                                     "evaluation is skipped (predictions only for eval_deeplab)", fatal=False))
        return
    if len(have) < len(ids):
        missing = [i for i in ids if not ds.has_gt(i)]
        problems.append(Problem(key, f"split {split!r}: {len(missing)} of {len(ids)} images have no GT mask, e.g. "
                                     f"{ds.gt_path(missing[0])}; the evaluation needs a mask for every image (or for "
                                     "none)"))
    bad: dict[str, list[str]] = {}
    for i in have:
        path = ds.gt_path(i)
        try:
            with Image.open(path) as m:
                mode, size = m.mode, m.size
            with Image.open(ds.image_path(i)) as im:
                image_size = im.size
        except (OSError, ValueError) as e:   # an unreadable image is _decode_sample's to report
            bad.setdefault("unreadable", []).append(f"{path} ({e})")
            continue
        if mode not in ("P", "L"):
            bad.setdefault("mode", []).append(f"{path} is mode {mode}")
        elif size != image_size:
            bad.setdefault("size", []).append(f"{path} is {size[0]}×{size[1]}, its image {ds.image_path(i)} "
                                              f"{image_size[0]}×{image_size[1]}")
    for i in have[:: max(1, len(have) // max(sample, 1))][:sample]:
        try:
            values = np.unique(ds.load_gt(i))
        except (OSError, ValueError, RuntimeError):
            continue                                   # named above
        out = values[(values > ds.num_classes) & (values != 255)]
        if out.size:
            bad.setdefault("values", []).append(f"{ds.gt_path(i)} holds {out.tolist()[:5]}")
    why = {"unreadable": "do not read",
           "mode": "are not class-index masks: a GT mask must be paletted (P) or greyscale (L) class indices, "
                   "not colours (convert it with the palette)",
           "size": "are not of their image's size: the mask belongs to another image or was resized",
           "values": f"hold values outside 0..{ds.num_classes} and 255 (ignore)"}
    for kind, items in bad.items():
        of = f"{len(items)} of {len(have)}" if kind != "values" else f"{len(items)} of {min(sample, len(have))} read"
        problems.append(Problem(key, f"split {split!r}: {of} GT masks {why[kind]}: {'; '.join(items[:3])}"))


def _decode_sample(ds, ids: list[str], n: int, key: str, skip_bad: bool, problems: list[Problem]) -> list[int]:
    """Decode ``n`` images spread over ``ids``; an unreadable one is fatal unless ``dataset.skip_bad_images``."""
    from PIL import Image

    pixels = []
    for i in ids[:: max(1, len(ids) // max(n, 1))][:n]:
        path = ds.image_path(i)
        try:
            with Image.open(path) as im:
                im.load()
                pixels.append(im.width * im.height)
        except (OSError, ValueError) as e:
            problems.append(Problem("dataset.skip_bad_images" if not skip_bad else key,
                                    f"{path} (split of {key}) does not decode: {e}", fatal=not skip_bad))
    return pixels


def _state_dict_problem(path: Path) -> str | None:
    """Why ``path`` is not a torch state-dict file (None when it is one): torch.save writes a zip archive."""
    if path.is_dir():
        return f"{path} is a folder, a state-dict file (.pth) is expected"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(n.endswith("/data.pkl") for n in z.namelist()):
                return f"{path} is a zip archive but not a torch checkpoint"
        return None
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":        # the legacy (pre-1.6) pickle format
        return None
    return f"{path} is not a torch checkpoint (torch.save file)"


def _check_file(key: str, value: str, problems: list[Problem]) -> None:
    path = Path(value).expanduser()
    if not path.exists():
        problems.append(Problem(key, f"no file at {path}"))
        return
    why = _state_dict_problem(path)
    if why:
        problems.append(Problem(key, why))


def _check_torchvision(key: str, value: str | None, arch: str, paths: WorkPaths, train_cam: bool,
                       problems: list[Problem]) -> None:
    """``imagenet`` (torch hub cache), ``cam_baseline`` (made by train_cam), a path, or null."""
    if value is None:
        problems.append(Problem(key, "null: the backbone starts from random weights", fatal=False))
    elif value == "imagenet":
        cached = Path(torch.hub.get_dir()) / "checkpoints" / _HUB_FILES[arch]
        if not cached.is_file():
            problems.append(Problem(key, f"imagenet: {cached} is not cached, it will be downloaded (needs internet)",
                                    fatal=False))
    elif value == "cam_baseline":
        if not train_cam and not paths.cam_baseline_model.is_file():
            problems.append(Problem(key, f"cam_baseline: {paths.cam_baseline_model} does not exist and train_cam is "
                                         "not selected"))
    else:
        _check_file(key, value, problems)


def _hf_cached(repo: str, filename: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:   # pragma: no cover - transformers depends on it
        return False
    return isinstance(try_to_load_from_cache(repo, filename), str)


def _check_vqa(value: str, problems: list[Problem]) -> None:
    key = "qape.vqa_model"
    path = Path(value).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            problems.append(Problem(key, f"{path} has no config.json: not a save_pretrained folder"))
    elif value.startswith((".", "/", "~")) or value.count("/") != 1:
        problems.append(Problem(key, f"no model folder at {path} (and not a hub id 'org/name')"))
    elif not _hf_cached(value, "config.json"):
        problems.append(Problem(key, f"hub id {value!r} is not in the local HF cache: it will be downloaded "
                                     "(needs internet)", fatal=False))


def _check_clip(cfg: Config, problems: list[Problem]) -> None:
    import open_clip

    from net.clip import quick_gelu_for

    c = cfg.clip
    name = c.model
    if name.startswith("hf-hub:"):
        if not _hf_cached(name.removeprefix("hf-hub:"), "open_clip_config.json"):
            problems.append(Problem("clip.model", f"{name} is not in the local HF cache: it will be downloaded",
                                    fatal=False))
        return
    folder = Path(name.removeprefix("local-dir:")).expanduser()
    if name.startswith("local-dir:") or folder.is_dir() or ("/" in name and not name.endswith(".json")):
        if not (folder / "open_clip_config.json").is_file():
            problems.append(Problem("clip.model", f"{folder} is not a CLIP model folder (no open_clip_config.json)"))
        return
    if name.endswith(".json"):
        if not Path(name).is_file():
            problems.append(Problem("clip.model", f"architecture file {name} does not exist"))
            return
        open_clip.add_model_config(Path(name))
        name = Path(name).stem
    name = name.replace("/", "-")
    if name not in open_clip.list_models():
        problems.append(Problem("clip.model", f"{c.model!r} is not an open_clip architecture (e.g. 'ViT-L-14'; see "
                                              "open_clip.list_models())"))
        return
    if not c.pretrained:
        problems.append(Problem("clip.pretrained", f"no weights given for {name!r}"))
        return
    tag = open_clip.get_pretrained_cfg(name, c.pretrained)
    if tag:
        repo = (tag.get("hf_hub") or "").strip("/")
        files = ("open_clip_pytorch_model.bin", "open_clip_model.safetensors")
        if not (repo and any(_hf_cached(repo, f) for f in files)):
            problems.append(Problem("clip.pretrained", f"tag {c.pretrained!r} of {name} is not in the local cache: "
                                                       "it will be downloaded (needs internet)", fatal=False))
    elif not Path(c.pretrained).expanduser().is_file():
        problems.append(Problem("clip.pretrained", f"{c.pretrained!r} is neither a weight tag of {name!r} nor a "
                                                   f"file (tags: {open_clip.list_pretrained_tags_by_model(name)})"))
        return
    try:
        quick_gelu_for(name, c.pretrained if tag else str(Path(c.pretrained).expanduser()), c.quick_gelu)
    except ValueError as e:
        problems.append(Problem("clip.quick_gelu", str(e)))


def _check_weights(cfg: Config, steps: list[str], paths: WorkPaths, problems: list[Problem]) -> None:
    toy_made = cfg.toy.generate and any(v is not None for v in (cfg.toy.random_models_dir, cfg.toy.vlp_dir,
                                                                cfg.toy.backbone))
    s = set(steps)

    def made_by_toy(value: str | None) -> bool:
        if not (toy_made and value):
            return False
        dirs = [cfg.toy.random_models_dir, cfg.toy.vlp_dir, cfg.toy.backbone]
        return any(d and Path(value).resolve().is_relative_to(Path(d).resolve()) for d in dirs)

    if "qape" in s and not made_by_toy(cfg.qape.vqa_model):
        _check_vqa(cfg.qape.vqa_model, problems)
    if s & {"text_feats", "train_ritc"} and not made_by_toy(cfg.clip.model):
        _check_clip(cfg, problems)
    if "train_ritc" in s and cfg.clip.mask_prompt_checkpoint:
        _check_file("clip.mask_prompt_checkpoint", cfg.clip.mask_prompt_checkpoint, problems)
    if "train_cam" in s:
        if not made_by_toy(cfg.cam.pretrained):
            _check_torchvision("cam.pretrained", cfg.cam.pretrained, "resnet50", paths, True, problems)
        if cfg.cam.init_checkpoint:
            _check_file("cam.init_checkpoint", cfg.cam.init_checkpoint, problems)
    if "train_ritc" in s and cfg.ritc.init != "baseline":
        _check_file("ritc.init", cfg.ritc.init, problems)
    if "train_irn" in s:
        _check_torchvision("irn.pretrained", cfg.irn.pretrained, "resnet50", paths, "train_cam" in s, problems)
    if "train_deeplab" in s and cfg.deeplab.arch == "v2_resnet101":
        _check_torchvision("deeplab.pretrained", cfg.deeplab.pretrained, "resnet101", paths, "train_cam" in s,
                           problems)
    if "train_deeplab" in s and cfg.deeplab.arch == "v1_wr38":
        p = cfg.deeplab.pretrained
        if p in ("imagenet", "cam_baseline"):
            problems.append(Problem("deeplab.pretrained", f"{p!r} is a ResNet initialisation; deeplab.arch v1_wr38 "
                                                          "needs the ResNet-38 weights (docs/deeplab-wr38.md)"))
        elif p is not None and not Path(p).expanduser().is_file():
            problems.append(Problem("deeplab.pretrained", f"no file at {p} (the ResNet-38 .params or a state dict)"))
    if "train_deeplab" in s and cfg.deeplab.label_dir and not Path(cfg.deeplab.label_dir).is_dir():
        problems.append(Problem("deeplab.label_dir", f"no folder at {cfg.deeplab.label_dir}"))
    if "eval_deeplab" in s and cfg.deeplab_eval.model:
        _check_file("deeplab_eval.model", cfg.deeplab_eval.model, problems)
    if "eval_cam" in s and cfg.eval.cam_dir and not Path(cfg.eval.cam_dir).is_dir():
        problems.append(Problem("eval.cam_dir", f"no folder at {cfg.eval.cam_dir}"))


def _check_inputs(steps: list[str], paths: WorkPaths, inputs_of: Callable[[str], tuple[str, ...]],
                  problems: list[Problem]) -> None:
    """A step whose input step is neither selected nor done would fail on its missing artefacts."""
    missing = sorted({(dep, s) for s in steps for dep in inputs_of(s)
                      if dep not in steps and not paths.done_marker(dep).is_file()})
    for dep, s in missing:
        problems.append(Problem(f"steps.{dep}", f"{s} reads the output of {dep}, which is neither selected nor done "
                                                f"(no {paths.done_marker(dep)})"))


def _check_device_memory(cfg: Config, steps: list[str], problems: list[Problem]) -> None:
    name = cfg.device
    cuda = torch.cuda.is_available()
    if name.startswith("cuda") and not cuda:
        problems.append(Problem("device", f"{name!r}, but CUDA is not available on this machine; use 'cpu' or 'auto'"))
        return
    if name.startswith("cuda:") and int(name.split(":")[1] or 0) >= torch.cuda.device_count():
        problems.append(Problem("device", f"{name!r}, but this machine has {torch.cuda.device_count()} GPU(s)"))
        return
    if name == "cpu" or not cuda:
        if any(s in TRAIN_SECTIONS for s in steps):
            problems.append(Problem("device", f"{name}: the training steps run on the CPU (fine for toy data; "
                                              "VOC-size training needs a GPU)", fatal=False))
        if not cpu_has_native_bf16():
            for key in PRECISION_KEYS:
                section, name = key.split(".")
                if getattr(getattr(cfg, section), name) == "bfloat16":
                    problems.append(Problem(key, "bfloat16 on this CPU (no native bf16 instructions) works but is "
                                                 "slower than float32", fatal=False))
        return
    index = int(name.split(":")[1]) if ":" in name else int(os.environ.get("LOCAL_RANK", "0"))
    free, total = torch.cuda.mem_get_info(index)
    for s in steps:
        if s not in MEMORY_MODEL_GB:
            continue
        need = train_memory_gb(cfg, s)
        if need * 1e9 > free:
            section = TRAIN_SECTIONS[s]
            problems.append(Problem(f"{section}.train.batch_size", f"{s} needs about {need:.1f} GB per GPU (estimate), "
                                                             f"cuda:{index} has {free / 1e9:.1f} of "
                                                             f"{total / 1e9:.1f} GB free"))


def _check_disk(cfg: Config, steps: list[str], paths: WorkPaths, counts: dict[str, int], pixels: float,
                problems: list[Problem]) -> None:
    n_train = counts.get("make_cam.split", counts.get("dataset.train_split", 0))
    need = artefact_bytes(cfg, steps, n_train, counts.get("dataset.eval_split", 0), pixels)
    where = paths.root
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    if need > free:
        problems.append(Problem("work_dir", f"the steps write about {need / 1e9:.1f} GB, {where} has "
                                            f"{free / 1e9:.1f} GB free"))


def _check_world(cfg: Config, steps: list[str], counts: dict[str, int], world: int, problems: list[Problem]) -> None:
    n = counts.get("dataset.train_split")
    for s, key in TRAIN_SECTIONS.items():
        sec = getattr(cfg, key)
        if s not in steps:
            continue
        if n is not None and s != "train_deeplab" and n // (sec.train.batch_size * world) == 0:
            problems.append(Problem(f"{key}.train.batch_size", f"{n} training images < batch {sec.train.batch_size} "
                                                               f"× {world} rank(s): {s} would take no optimiser step"))
        if s == "train_deeplab" and (cfg.deeplab.accum_steps < 1 or sec.train.batch_size % cfg.deeplab.accum_steps):
            problems.append(Problem("deeplab.accum_steps", f"{cfg.deeplab.accum_steps} must be >= 1 and divide "
                                                           f"deeplab.train.batch_size {sec.train.batch_size}"))


# --------------------------------------------------------------------------------------------
# The paper's assets
# --------------------------------------------------------------------------------------------

PAPER_CLIP = "ViT-L-14"                                # with OpenAI's weights (open_clip tag "openai")
PAPER_VQA = "Salesforce/blip-vqa-capfilt-large"        # HF port of BLIP ViT-B CapFilt-L VQA
PAPER_MASK_PROMPT_DEPTH = 3                            # ovseg's mask prompt
_REPRODUCE = "docs/reproduce.md#assets"


def paper_asset_notes(cfg: Config, steps: list[str]) -> list[Problem]:
    """A note for every asset of the paper's runs that ``cfg`` leaves unset or sets otherwise, for the selected
    ``steps``: such a run trains a model other than the paper's. Never fatal; a value this cannot judge (a model
    folder, a local file) gets none, and a toy-world config (``toy.generate``) none at all: it is not the
    paper's data. Each note points to the assets of docs/reproduce.md."""
    if cfg.toy.generate:
        return []
    s = set(steps)
    notes: list[Problem] = []

    def note(key: str, message: str) -> None:
        notes.append(Problem(key, f"{message} ({_REPRODUCE})", fatal=False))

    c = cfg.clip
    if "train_ritc" in s:
        if not c.mask_prompt_checkpoint:
            note("clip.mask_prompt_checkpoint", "unset: the paper's RITC uses the ovseg mask-prompt CLIP "
                                                "(ovseg_swinbase_vitL14_ft_mpt.pth); without it RITC trains against "
                                                "plain CLIP")
        elif c.mask_prompt_depth != PAPER_MASK_PROMPT_DEPTH:
            note("clip.mask_prompt_depth", f"{c.mask_prompt_depth}: ovseg's mask prompt, the paper's, reaches "
                                           f"{PAPER_MASK_PROMPT_DEPTH} blocks")
    if s & {"text_feats", "train_ritc"}:
        arch = _clip_architecture(c.model)
        if arch is not None and arch != PAPER_CLIP:
            note("clip.model", f"{c.model!r}: the paper's CLIP is {PAPER_CLIP} with OpenAI's weights")
        elif arch == PAPER_CLIP and c.pretrained and not Path(c.pretrained).expanduser().is_file() \
                and c.pretrained != "openai":
            note("clip.pretrained", f"{c.pretrained!r}: the paper's {PAPER_CLIP} weights are OpenAI's ('openai')")
        elif arch == PAPER_CLIP and c.quick_gelu is False:
            note("clip.quick_gelu", "false declares weights other than OpenAI's (theirs use QuickGELU): the paper "
                                    f"used OpenAI's {PAPER_CLIP}")
    vqa = cfg.qape.vqa_model
    if "qape" in s and not cfg.qape.no_qape and not Path(vqa).expanduser().exists() and vqa.count("/") == 1 \
            and not vqa.startswith((".", "/", "~")) and vqa != PAPER_VQA:
        note("qape.vqa_model", f"{vqa!r}: the paper's VQA model is BLIP ViT-B CapFilt-L ({PAPER_VQA})")
    if "train_irn" in s and cfg.irn.pretrained == "cam_baseline":
        note("irn.pretrained", "cam_baseline: IRN, as the paper uses it, starts from ImageNet ResNet-50 ('imagenet')")
    if "train_deeplab" in s:
        d = cfg.deeplab
        if d.arch == "v2_resnet101" and d.pretrained == "cam_baseline":
            note("deeplab.pretrained", "cam_baseline: the paper's DeepLabV2 starts from ImageNet ResNet-101 "
                                       "('imagenet')")
        if d.arch == "v1_wr38" and d.pretrained is None:
            note("deeplab.pretrained", "null: the paper's DeepLabV1 starts from the ImageNet ResNet-38 weights "
                                       "(ilsvrc-cls_rna-a1_cls1000_ep-0001.params)")
    trains = s & {"qape", "text_feats", "train_cam", "train_ritc", "train_irn", "make_cam"}
    paper_train = {"voc12": ("train_aug", "VOC 2012 train + SBD, 10,582 images"),
                   "coco14": ("train", "the 82,081 train2014 images with a label")}.get(cfg.dataset.name)
    if trains and paper_train and cfg.dataset.train_split != paper_train[0]:
        note("dataset.train_split", f"{cfg.dataset.train_split!r}: the paper trains on {paper_train[0]!r} "
                                    f"({paper_train[1]})")
    if cfg.dataset.name == "voc12" and s & {"eval_cam", "eval_sem_seg"} and cfg.dataset.eval_split != "train":
        note("dataset.eval_split", f"{cfg.dataset.eval_split!r}: the paper's CAM and pseudo-mask figures (Tables 1, "
                                   "4, 5) are on VOC 2012 'train' (1,464 images)")
    return notes


def _clip_architecture(model: str) -> str | None:
    """The open_clip architecture ``clip.model`` names ("ViT-L-14"), or None for a folder / hub model (unknown)."""
    if model.startswith(("hf-hub:", "local-dir:")) or Path(model).expanduser().is_dir() or \
            ("/" in model and not model.endswith(".json")):
        return None
    return Path(model).stem if model.endswith(".json") else model
