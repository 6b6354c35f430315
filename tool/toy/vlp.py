"""Tiny vision-language models trained on the toy world, so the offline demo's QAPE and RITC see sense.

Real BLIP / CLIP weights cannot be downloaded offline and randomly initialised tiny models
(``tool.toy.tiny_models``) answer noise, so ``make demo`` trains its own pair on the toy world
(``tool.toy.world``) from the generator's ``ToyMeta`` sidecars, on the ``train_aug`` images only
(train + extra; never val):

- a tiny open_clip **CLIP**, trained contrastively on region images as RITC builds them (the image
  normalised, multiplied by a region mask, resized to the CLIP input; Eq. 10): an object's region
  matches "a photo of {class}." and its sub-type / alias texts post-processed as ``text_feats``
  does ("a photo of canoe boat."); the background with the objects blacked out matches "a photo of
  {scene}." and the surrounding things ("a photo of rails.", "a photo of rail.");
- a tiny HF **BlipForQuestionAnswering** with its own small WordPiece vocabulary, trained with the
  decoder's LM loss on (image, question, answer) triples from the paper's templates
  (``net.qape_text.DEFAULT_QUESTIONS``): FG questions answered with the sub-type ("what kind") or
  an alias, BG questions with the scene and the things drawn around (:func:`toy_vqa_answers`).

Both are saved in the real on-disk formats (``<out>/blip``: ``save_pretrained`` folder;
``<out>/clip``: ``open_clip_config.json`` + ``open_clip_model.safetensors``) and loaded by the
steps through ``BlipVQA.from_pretrained`` / ``net.clip.load_clip``, the code paths of real weights.
Training is cached: ``<out>/toy_vlp.json`` (written last) holds the parameters and the world's
parameters; :func:`ensure_toy_vlp` with the same ones does not retrain. Deterministic from the seed.

CLI::

    python -m tool.toy.vlp --root work/demo-data/VOC2012 --out work/demo-vlp            # train (cached)
    python -m tool.toy.vlp --root ... --out ... --eval-vqa --eval-clip [--split val]    # measure

Using the world's pixel masks to train the "pretrained" models is a demo shortcut: a real CLIP /
BLIP never saw VOC's masks. They only learn what words go with which pixels; the WSSS pipeline
itself still sees image labels only.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import os
import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tool.engine.events import EventWriter
from tool.engine.io import atomic_dir, read_json, write_json
from tool.engine.lr import warmup_poly_lr
from tool.data.palette import load_label_png
from net.qape_text import DEFAULT_QUESTIONS, TEXT_PROMPT, fg_texts, lemmatize_noun, no_qape_texts, side_of_group
from tool.toy.tiny_models import save_open_clip
from tool.engine.train_loop import optimizer_step
from tool.toy.vocab import CLASS_ALIASES, SCENE_THINGS, SCENES, SUBTYPES
from voc12.dataset import CLASS_NAMES, XML_NAMES

log = logging.getLogger(__name__)

VLP_VERSION = 1
_WARMUP = 30                # linear lr warm-up steps of both toy models
MARKER = "toy_vlp.json"
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_BLIP_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")
_QUESTION_NAME = dict(zip(XML_NAMES, CLASS_NAMES))   # XML name -> name as spelled in questions


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


# ------------------------------------------------------------------------------------------------
# what the toy world's answers and texts are
# ------------------------------------------------------------------------------------------------

# Where a scene's things are relative to an object standing in it, most telling first. A BG question
# is answered with the first of its direction's things that the image has (cycling through them for
# the several "side" questions), else with the scene: every answer names something truly there.
_BG_PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "sky": {"up": ("sun", "cloud"), "down": ("hill", "cloud"), "side": ("cloud", "sun")},
    "water": {"up": ("cloud", "sky"), "down": ("waves",), "side": ("buoy", "waves")},
    "railway": {"up": ("pole", "sky"), "down": ("rails", "sleepers", "gravel"),
                "side": ("gravel", "rails", "sleepers", "pole")},
    "grass": {"up": ("tree", "sky"), "down": ("grass tuft",), "side": ("fence", "tree", "grass tuft")},
    "road": {"up": ("building", "sky"), "down": ("road", "lane marking"), "side": ("sidewalk", "building", "road")},
    "room": {"up": ("window", "picture frame", "shelf", "wall"), "down": ("floor",),
             "side": ("wall", "shelf", "window", "picture frame")},
}


def _direction(question: str) -> str:
    q = question.lower()
    if "above" in q or "behind" in q:
        return "up"
    if "under" in q or "below" in q:
        return "down"
    return "side"


def toy_vqa_answers(meta: Mapping, class_name: str,
                    templates: Mapping[str, Sequence[str]] = DEFAULT_QUESTIONS) -> list[tuple[str, str, str]]:
    """The toy VQA model's training answers for one (image, class): ``[(group, question, answer), ...]``.

    ``meta``: the image's ``ToyMeta`` sidecar; ``class_name``: as spelled in questions ("dining table").
    - fine_grained ("What kind of boat ...") -> the sub-type of the largest object of the class;
    - alias -> the class's aliases (``tool.toy.vocab.CLASS_ALIASES``), one per template, cycling;
    - surrounding -> a thing of the image above / below / beside the object (``_BG_PLACES``), else the scene;
    - scene -> the scene.
    Questions are the templates filled with ``class_name``, in template order.
    """
    objects = [o for o in meta["objects"] if o["class_name"] == class_name]
    if not objects:
        raise ValueError(f"toy VQA: the image has no {class_name!r} (objects: "
                         f"{sorted({o['class_name'] for o in meta['objects']})})")
    xml = objects[0]["class"]
    largest = max(objects, key=lambda o: (o["bbox"][2] - o["bbox"][0]) * (o["bbox"][3] - o["bbox"][1]))
    scene, things = meta["scene"], set(meta["things"])
    out: list[tuple[str, str, str]] = []
    for group, group_templates in templates.items():
        side_of_group(group)
        seen: dict[str, int] = {}   # direction -> how many questions of it so far in this group
        for j, template in enumerate(group_templates):
            question = template.format(class_name)
            if group == "fine_grained":
                answer = largest["subtype"]
            elif group == "alias":
                aliases = CLASS_ALIASES[xml]
                answer = aliases[j % len(aliases)]
            elif group == "surrounding":
                d = _direction(question)
                present = [t for t in _BG_PLACES[scene][d] if t in things] or [scene]
                answer = present[seen.get(d, 0) % len(present)]
                seen[d] = seen.get(d, 0) + 1
            else:
                answer = scene
            out.append((group, question, answer))
    return out


def _fg_words(xml: str) -> list[str]:
    """Sub-type names and aliases of a class (what an FG answer should name), unique, in order."""
    return list(dict.fromkeys([*(s.name for s in SUBTYPES[xml]), *CLASS_ALIASES[xml]]))


def blip_vocab() -> list[str]:
    """Every word the toy BLIP reads or answers: templates, class names, sub-types, aliases, scenes, things."""
    text = " ".join([*(t for ts in DEFAULT_QUESTIONS.values() for t in ts), *CLASS_NAMES, *XML_NAMES, *SCENES,
                     *(t for ts in SCENE_THINGS.values() for t in ts), *(w for x in XML_NAMES for w in _fg_words(x))])
    # BERT's pre-tokenizer splits punctuation off words ("photo?" -> "photo", "?"; "double-decker" ->
    # "double", "-", "decker"), so the vocabulary holds both kinds of pieces.
    return sorted(set(re.findall(r"[a-z]+|[^\sa-z{}]", text.lower())))


@dataclass(frozen=True)
class ClipTexts:
    """The CLIP training texts and which of them describe which region.

    texts: prompted texts [T]. fg_pos[k][s]: bool [T] positives of an object of class k (XML order)
    and sub-type s; fg_ignore[k][s]: the other sub-types of the class (neither positive nor negative).
    bg_pos(scene, things): bool [T] positives of a background region.
    """

    texts: list[str]
    fg_pos: list[list[np.ndarray]]
    fg_ignore: list[list[np.ndarray]]
    index: dict[str, int]

    def bg_pos(self, scene: str, things: Iterable[str]) -> np.ndarray:
        pos = np.zeros(len(self.texts), bool)
        for word in _bg_words([scene, *things]):
            pos[self.index[TEXT_PROMPT.format(word)]] = True
        return pos


def _bg_words(words: Iterable[str]) -> list[str]:
    """Scene / thing words as answered and as ``text_feats`` lemmatises them ("rails" and "rail")."""
    words = list(words)
    return list(dict.fromkeys([*words, *(lemmatize_noun(w) for w in words)]))


def clip_texts() -> ClipTexts:
    """Build :class:`ClipTexts`: FG texts as ``text_feats`` makes them (``fg_texts``), BG words raw + lemmas."""
    texts: list[str] = []
    index: dict[str, int] = {}

    def add(word: str) -> int:
        t = TEXT_PROMPT.format(word)
        if t not in index:
            index[t] = len(texts)
            texts.append(t)
        return index[t]

    fg_rows: list[tuple[list[int], list[list[int]]]] = []
    for xml in XML_NAMES:
        name = _QUESTION_NAME[xml]
        common = [add(t) for t in fg_texts(list(CLASS_ALIASES[xml]), name)]   # aliases + the class name
        subs = [[add(t) for t in fg_texts([s.name], name)[:-1]] for s in SUBTYPES[xml]]
        fg_rows.append((common, subs))
    for word in _bg_words([*SCENES, *(t for ts in SCENE_THINGS.values() for t in ts)]):
        add(word)
    fg_pos, fg_ignore = [], []
    for common, subs in fg_rows:
        pos_k, ign_k = [], []
        for s, own in enumerate(subs):
            pos = np.zeros(len(texts), bool)
            pos[common + own] = True
            ign = np.zeros(len(texts), bool)
            for s2, other in enumerate(subs):
                if s2 != s:
                    ign[other] = True
            pos_k.append(pos)
            ign_k.append(ign & ~pos)
        fg_pos.append(pos_k)
        fg_ignore.append(ign_k)
    return ClipTexts(texts, fg_pos, fg_ignore, index)


# ------------------------------------------------------------------------------------------------
# the toy world's images, masks and sidecars
# ------------------------------------------------------------------------------------------------

@dataclass
class ToyRecord:
    """One toy image: RGB uint8 [H, W, 3], its sidecar, and label [H, W] uint8 (None without a PNG)."""

    image_id: str
    image: np.ndarray
    meta: dict
    label: np.ndarray | None


def read_split(root: str | os.PathLike, split: str) -> list[str]:
    """Image ids of ``ImageSets/Segmentation/<split>.txt`` of a VOC-layout toy world."""
    path = Path(root) / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is {root} a VOC-layout toy world (tool.toy.world, "
                                "toy.layout: voc)?")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def load_records(root: str | os.PathLike, ids: Sequence[str]) -> list[ToyRecord]:
    """Read images, ``ToyMeta`` sidecars and (where present) ``SegmentationClass`` PNGs of ``ids``."""
    from tool.data.imutils import read_image
    from tool.toy.layout import read_toy_meta

    root = Path(root)
    out = []
    for image_id in ids:
        png = root / "SegmentationClass" / f"{image_id}.png"
        out.append(ToyRecord(image_id, read_image(root / "JPEGImages" / f"{image_id}.jpg"),
                             read_toy_meta(root, image_id), load_label_png(png) if png.is_file() else None))
    return out


def object_masks(rec: ToyRecord) -> list[np.ndarray]:
    """One bool [H, W] mask per sidecar object: its class's pixels inside its visible box (plus the void
    border around them), or the whole box for an image without a label PNG (SBD-like extra images)."""
    H, W = rec.image.shape[:2]
    out = []
    for o in rec.meta["objects"]:
        x0, y0, x1, y1 = o["bbox"]
        box = np.zeros((H, W), bool)
        box[y0:y1, x0:x1] = True
        if rec.label is None:
            out.append(box)
            continue
        k = XML_NAMES.index(o["class"]) + 1
        own = rec.label == k
        near = F.max_pool2d(torch.from_numpy(own)[None, None].float(), 5, 1, 2)[0, 0].numpy() > 0  # 2-px halo
        out.append(box & (own | (near & (rec.label == 255))))
    return out


def background_mask(rec: ToyRecord) -> np.ndarray:
    """bool [H, W]: background pixels (label 0), or outside every object box without a PNG."""
    if rec.label is not None:
        return rec.label == 0
    m = np.ones(rec.image.shape[:2], bool)
    for o in rec.meta["objects"]:
        x0, y0, x1, y1 = o["bbox"]
        m[y0:y1, x0:x1] = False
    return m


def _normalize(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] -> float [N, 3, H, W] with CLIP's mean/std."""
    x = torch.tensor(images).permute(0, 3, 1, 2).float() / 255.0  # [N, 3, H, W] (a copy: decoded images are read-only)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


# ------------------------------------------------------------------------------------------------
# CLIP
# ------------------------------------------------------------------------------------------------

def toy_clip_config(p: ToyVlpParams) -> dict:
    """open_clip architecture config (``model_cfg`` of ``open_clip_config.json``) of the toy CLIP."""
    if p.clip_tower not in ("vit", "resnet"):
        raise ValueError(f"toy CLIP: clip_tower must be 'vit' or 'resnet', got {p.clip_tower!r}")
    vision: dict[str, int | list[int]]
    if p.clip_tower == "vit":
        vision = {"image_size": p.clip_image_size, "layers": p.clip_layers, "width": p.clip_width,
                  "head_width": 16, "patch_size": p.clip_patch_size}
    else:   # ModifiedResNet: stem /4, then stages at strides 1, 2, 2, 2; features width * 32 wide
        vision = {"image_size": p.clip_image_size, "layers": [1] * 4, "width": p.clip_width, "head_width": 32}
    return {
        "embed_dim": p.clip_embed_dim,
        "vision_cfg": vision,
        "text_cfg": {"context_length": p.clip_context_length, "vocab_size": 49408, "width": p.clip_text_width,
                     "heads": max(1, p.clip_text_width // 16), "layers": p.clip_text_layers},
    }


def _blob(mask: torch.Tensor, stride: int = 16) -> torch.Tensor:
    """A CAM-like soft version of masks [B, 1, H, W]: area-pooled to output stride 16, upsampled bilinearly."""
    H, W = mask.shape[-2:]
    small = F.adaptive_avg_pool2d(mask, (max(1, math.ceil(H / stride)), max(1, math.ceil(W / stride))))
    return F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False).clamp(0, 1)


def _crop_grids(centers: torch.Tensor, scales: torch.Tensor, flips: torch.Tensor, H: int, W: int,
                size: int) -> torch.Tensor:
    """Sampling grids [B, size, size, 2] of square crops (side ``scales`` x H pixels around ``centers``
    (x, y) in pixels; a scale <= 0 means the whole image squashed to a square), mirrored where ``flips``."""
    B = centers.shape[0]
    whole = scales <= 0
    side = scales.clamp(min=1e-3) * H
    half_x = torch.where(whole, torch.full_like(side, 1.0), (side / W).clamp(max=1.0))   # half-width, [-1, 1] units
    half_y = torch.where(whole, torch.full_like(side, 1.0), (side / H).clamp(max=1.0))
    cx = torch.where(whole, torch.zeros_like(side), (centers[:, 0] / (W - 1)) * 2 - 1)
    cy = torch.where(whole, torch.zeros_like(side), (centers[:, 1] / (H - 1)) * 2 - 1)
    cx = cx.clamp(-1 + half_x, 1 - half_x)   # keep the crop inside the image
    cy = cy.clamp(-1 + half_y, 1 - half_y)
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = half_x * torch.where(flips, -1.0, 1.0)
    theta[:, 0, 2] = cx
    theta[:, 1, 1] = half_y
    theta[:, 1, 2] = cy
    return F.affine_grid(theta, [B, 1, size, size], align_corners=True)


class _ClipData:
    """The CLIP training regions held in memory, and batches of them as RITC would build them.

    A region is an image times a mask, of three kinds:

    - an object (its exact mask, or a CAM-like blob of it, times a gain < 1 as a sigmoid CAM is)
      -> the class, sub-type and alias texts;
    - the background (exact: objects blacked out; or one minus the blob of the objects) -> the scene
      and things texts;
    - the context ring around an object (background pixels within ~0.1 H of it) -> the scene and
      things texts too: rails next to a train are rails, so a CAM spilling onto them looks less like
      "train" to the CLIP — the gradient RITC's FRC needs.

    Each is cropped (square crops as RITC's loader makes, or the whole image squashed), mirrored at
    random and resized to S with bilinear interpolation (as ``net.ritc.build_region_images``).
    """

    KINDS = (("object", 0.55), ("background", 0.25), ("ring", 0.2))   # kind, share of a batch

    def __init__(self, records: Sequence[ToyRecord], texts: ClipTexts, size: int):
        import cv2

        self.size = size
        self.x = _normalize(np.stack([r.image for r in records]))          # [N, 3, H, W]
        self.H, self.W = self.x.shape[-2:]
        radius = max(2, round(0.1 * self.H))
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        no_ign = np.zeros(len(texts.texts), bool)
        # kind -> [(image, exact mask, blob mask or None, positives, ignored, centre or None), ...]
        kinds: dict[str, list[tuple]] = {k: [] for k, _ in self.KINDS}
        for n, rec in enumerate(records):
            masks = object_masks(rec)
            bg = background_mask(rec)
            bg_pos = texts.bg_pos(rec.meta["scene"], rec.meta["things"])
            union = np.any(masks, axis=0) if masks else np.zeros((self.H, self.W), bool)
            kinds["background"].append((n, bg, 1 - _blob(torch.from_numpy(union)[None, None].float())[0, 0].numpy(),
                                        bg_pos, no_ign, None))
            for o, m in zip(rec.meta["objects"], masks):
                if m.sum() < 16:      # hidden behind later objects
                    continue
                k = XML_NAMES.index(o["class"])
                s = [t.name for t in SUBTYPES[o["class"]]].index(o["subtype"])
                ys, xs = np.nonzero(m)
                centre = (float(xs.mean()), float(ys.mean()))
                blob = _blob(torch.from_numpy(m)[None, None].float())[0, 0].numpy()
                kinds["object"].append((n, m, blob, texts.fg_pos[k][s], texts.fg_ignore[k][s], centre))
                ring = (cv2.dilate(m.astype(np.uint8), disk) > 0) & bg
                if ring.sum() >= 16:
                    kinds["ring"].append((n, ring, None, bg_pos, no_ign, centre))
        # One table of regions, kind by kind; masks as uint8 0..255 rows of a bank [B, 1, H, W].
        bank, self.ranges = [], {}
        img: list[int] = []                                 # the training image of each region row
        rows, pos, ign, centres = [], [], [], []
        for kind, _ in self.KINDS:
            start = len(img)
            for n, exact, blob, p, i, c in kinds[kind]:
                bank.append(exact.astype(np.float32))
                e = len(bank) - 1
                if blob is not None:
                    bank.append(blob.astype(np.float32))
                rows.append((e, len(bank) - 1))     # (exact, blob); the same row twice without a blob
                img.append(n)
                pos.append(p)
                ign.append(i)
                centres.append(c if c is not None else (float("nan"), float("nan")))
            self.ranges[kind] = (start, len(img))
        self.masks = (torch.from_numpy(np.stack(bank))[:, None] * 255).round().to(torch.uint8)   # [B, 1, H, W]
        self.img = torch.tensor(img)
        self.rows = torch.tensor(rows)                                                   # [R, 2]
        self.pos = torch.from_numpy(np.stack(pos))                                       # [R, T]
        self.ign = torch.from_numpy(np.stack(ign))
        self.centre = torch.tensor(centres, dtype=torch.float32)                         # [R, 2] x, y (nan: anywhere)
        self.is_object = torch.zeros(len(img), dtype=torch.bool)
        self.is_object[slice(*self.ranges["object"])] = True

    @property
    def num_regions(self) -> int:
        return int(self.img.numel())

    def batch(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images [n, 3, S, S], positives [n, T] bool, ignored [n, T] bool."""
        picks, left = [], n
        for j, (kind, share) in enumerate(self.KINDS):
            lo, hi = self.ranges[kind]
            count = left if j == len(self.KINDS) - 1 else round(share * n)
            left -= count
            if hi > lo and count > 0:
                picks.append(lo + torch.randint(hi - lo, (count,), generator=g))
        r = torch.cat(picks)                                                         # [n'] region rows
        m = r.numel()
        blob = (torch.rand(m, generator=g) < 0.5).long()
        mask_row = self.rows[r].gather(1, blob[:, None])[:, 0]
        # Crops centre near the region's object; background crops anywhere.
        centres = self.centre[r]
        anywhere = torch.rand(m, 2, generator=g) * torch.tensor([self.W - 1.0, self.H - 1.0])
        centres = torch.where(torch.isnan(centres), anywhere, centres)
        centres = centres + (torch.rand(m, 2, generator=g) - 0.5) * 0.3 * self.H
        scales = torch.where(torch.rand(m, generator=g) < 0.3, torch.zeros(m), 0.6 + 0.4 * torch.rand(m, generator=g))
        flips = torch.rand(m, generator=g) < 0.5
        grid = _crop_grids(centres, scales, flips, self.H, self.W, self.size)       # [m, S, S, 2]
        gain = torch.where(self.is_object[r], 0.5 + 0.5 * torch.rand(m, generator=g), torch.ones(m))  # CAM < 1
        gain = gain * (0.9 + 0.3 * torch.rand(m, generator=g))                      # contrast jitter
        mask = F.grid_sample(self.masks[mask_row].float() / 255, grid, mode="bilinear", align_corners=True)
        images = F.grid_sample(self.x[self.img[r]], grid, mode="bilinear", align_corners=True)   # [m, 3, S, S]
        return images * mask * gain.view(m, 1, 1, 1), self.pos[r], self.ign[r]


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor, pos: torch.Tensor,
                     ign: torch.Tensor) -> torch.Tensor:
    """Multi-positive image<->text InfoNCE over the whole text table.

    img: [B, D], txt: [T, D] (L2-normalised); pos / ign: bool [B, T]. Image->text: cross-entropy
    against the uniform distribution over the image's positives, ignored texts left out of the
    softmax. Text->image: the same over the batch's images, for texts with a positive in the batch.
    """
    logits = scale * img @ txt.t()                                            # [B, T]
    logits = logits.masked_fill(ign, float("-inf"))
    w = pos.float()
    i2t = -(w * F.log_softmax(logits, dim=1).masked_fill(ign, 0)).sum(1) / w.sum(1).clamp(min=1)
    has = w.sum(0) > 0
    t2i = -(w * F.log_softmax(logits, dim=0).masked_fill(ign, 0)).sum(0)[has] / w.sum(0)[has]
    return 0.5 * (i2t.mean() + t2i.mean())


def train_toy_clip(records: Sequence[ToyRecord], out_dir: str | os.PathLike, p: ToyVlpParams) -> dict:
    """Train the toy CLIP on ``records`` and write it to ``out_dir`` (open_clip hf-hub layout); metrics."""
    import open_clip

    texts = clip_texts()
    data = _ClipData(records, texts, p.clip_image_size)
    model_cfg = toy_clip_config(p)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed)
        model = open_clip.CLIP(**model_cfg).train()
    tokenizer = open_clip.SimpleTokenizer(context_length=p.clip_context_length)
    tokens = tokenizer(texts.texts)                                               # [T, C]
    opt = torch.optim.AdamW(model.parameters(), lr=p.clip_lr, weight_decay=0.05)
    g = torch.Generator().manual_seed(p.seed)
    t0, c0, losses = time.time(), time.process_time(), []
    events = EventWriter(Path(out_dir).parent / "events" / "toy_clip.jsonl", "toy_clip")   # (docs/tracking.md)
    events.start(0, resumed=False)
    for step in range(p.clip_steps):
        for group in opt.param_groups:
            group["lr"] = warmup_poly_lr(step, p.clip_lr, p.clip_steps, _WARMUP)
        images, pos, ign = data.batch(p.clip_batch, g)
        img = F.normalize(model.encode_image(images), dim=-1)                    # [B, D]
        txt = F.normalize(model.encode_text(tokens), dim=-1)                     # [T, D]
        loss = contrastive_loss(img, txt, model.logit_scale.exp().clamp(max=100), pos, ign)
        losses.append(optimizer_step(opt, loss, "toy CLIP", step))
        events.step_done({"loss": losses[-1]}, p.clip_batch)
        if step % 100 == 0 or step == p.clip_steps - 1:
            events.record(step + 1, 0, opt)
            log.info("toy CLIP step %d/%d loss %.3f", step + 1, p.clip_steps, float(np.mean(losses[-50:])))
    save_clip(model.eval(), model_cfg, out_dir)
    return {"clip_regions": data.num_regions, "clip_texts": len(texts.texts),
            "clip_final_loss": round(float(np.mean(losses[-50:])), 4), "clip_seconds": round(time.time() - t0, 1),
            "clip_cpu_seconds": round(time.process_time() - c0, 1)}


def save_clip(model: torch.nn.Module, model_cfg: dict, out_dir: str | os.PathLike) -> Path:
    """Write the toy CLIP where ``net.clip.load_clip`` reads it (bilinear squash, as it was trained)."""
    return save_open_clip(model, model_cfg, out_dir, interpolation="bilinear", resize_mode="squash")


# ------------------------------------------------------------------------------------------------
# BLIP
# ------------------------------------------------------------------------------------------------

def blip_pixels(image: np.ndarray, size: int) -> torch.Tensor:
    """uint8 RGB [H, W, 3] -> [3, S, S] as ``BlipVQA.preprocess``: PIL bicubic to S x S, /255, CLIP mean/std."""
    from PIL import Image

    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    x = (resized / 255.0 - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)  # [S, S, 3]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, S, S]


def _blip_model(p: ToyVlpParams, vocab_size: int, tok_id: Mapping[str, int]):
    from transformers import BlipConfig, BlipForQuestionAnswering

    w = p.blip_width
    vis = {"hidden_size": w, "intermediate_size": 2 * w, "num_hidden_layers": p.blip_layers,
           "num_attention_heads": max(1, w // 16), "image_size": p.blip_image_size, "patch_size": p.blip_patch_size}
    txt = {"vocab_size": vocab_size, "hidden_size": w, "intermediate_size": 2 * w, "num_hidden_layers": p.blip_layers,
           "num_attention_heads": max(1, w // 16), "max_position_embeddings": 64,
           "pad_token_id": tok_id["[PAD]"], "bos_token_id": tok_id["[DEC]"], "sep_token_id": tok_id["[SEP]"],
           "eos_token_id": tok_id["[SEP]"]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(p.seed + 1)
        return BlipForQuestionAnswering(BlipConfig(text_config=txt, vision_config=vis))


def _pad(rows: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    n = max(len(r) for r in rows)
    return torch.tensor([list(r) + [value] * (n - len(r)) for r in rows])      # [B, n]


def vqa_loss(model, pixel_values: torch.Tensor, image_index: torch.Tensor, q_ids: torch.Tensor,
             q_mask: torch.Tensor, a_ids: torch.Tensor, a_mask: torch.Tensor) -> torch.Tensor:
    """The decoder LM loss of ``BlipForQuestionAnswering.forward(..., labels=...)``, each image encoded once.

    pixel_values: [I, 3, S, S]; image_index: [B] row of each question's image; q_ids / q_mask: [B, Lq]
    questions ([CLS] ... [SEP], right-padded); a_ids / a_mask: [B, La] answers ([DEC] ... [SEP]).
    The same three calls as HF's forward (vision -> question encoder -> answer decoder with labels),
    padded answer positions labelled -100.
    """
    image_embeds = model.vision_model(pixel_values=pixel_values)[0][image_index]        # [B, P, D]
    image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long)
    q = model.text_encoder(input_ids=q_ids, attention_mask=q_mask, encoder_hidden_states=image_embeds,
                           encoder_attention_mask=image_mask)[0]                          # [B, Lq, D]
    labels = a_ids.masked_fill(a_mask == 0, -100)
    out = model.text_decoder(input_ids=a_ids, attention_mask=a_mask, encoder_hidden_states=q,
                             encoder_attention_mask=q_mask, labels=labels, reduction="mean")
    return out.loss


def train_toy_blip(records: Sequence[ToyRecord], out_dir: str | os.PathLike, p: ToyVlpParams) -> dict:
    """Train the toy BLIP VQA model on ``records``; write model + processor to ``out_dir`` (atomically)."""
    from transformers import BertTokenizer, BlipImageProcessor, BlipProcessor

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:    # renamed into place, modes by the umask
        tokens = [*_BLIP_SPECIALS, *(w for w in blip_vocab() if w not in _BLIP_SPECIALS)]
        tok_id = {t: i for i, t in enumerate(tokens)}
        (tmp / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(vocab=str(tmp / "vocab.txt"), bos_token="[DEC]")
        # Every training (question, answer) of every image, tokenised once.
        px = torch.stack([blip_pixels(r.image, p.blip_image_size) for r in records])   # [N, 3, S, S]
        items: list[list[tuple[list[int], list[int]]]] = []
        cache: dict[str, list[int]] = {}

        def ids(text: str) -> list[int]:
            if text not in cache:
                cache[text] = tokenizer(text)["input_ids"]
                if tok_id["[UNK]"] in cache[text]:
                    raise ValueError(f"toy BLIP vocabulary lacks a word of {text!r}")
            return cache[text]

        for r in records:
            per_image = []
            for name in dict.fromkeys(o["class_name"] for o in r.meta["objects"]):
                for _, question, answer in toy_vqa_answers(r.meta, name):
                    per_image.append((ids(question), [tok_id["[DEC]"], *ids(answer)[1:]]))   # [CLS] -> [DEC]
            items.append(per_image)
        model = _blip_model(p, len(tokens), tok_id).train()
        opt = torch.optim.AdamW(model.parameters(), lr=p.blip_lr, weight_decay=0.05)
        rng = np.random.default_rng(p.seed)
        t0, c0, losses = time.time(), time.process_time(), []
        n_img = min(p.blip_images, len(records))
        events = EventWriter(Path(out_dir).parent / "events" / "toy_blip.jsonl", "toy_blip")
        events.start(0, resumed=False)
        for step in range(p.blip_steps):
            for group in opt.param_groups:
                group["lr"] = warmup_poly_lr(step, p.blip_lr, p.blip_steps, _WARMUP)
            chosen = rng.choice(len(records), n_img, replace=False)
            flip = rng.random(n_img) < 0.5
            pixels = torch.where(torch.from_numpy(flip)[:, None, None, None], px[chosen].flip(-1), px[chosen])
            rows, index = [], []
            for b, n in enumerate(chosen):
                for j in rng.choice(len(items[n]), min(p.blip_questions, len(items[n])), replace=False):
                    rows.append(items[n][j])
                    index.append(b)
            q_ids = _pad([q for q, _ in rows], tok_id["[PAD]"])
            a_ids = _pad([a for _, a in rows], tok_id["[PAD]"])
            loss = vqa_loss(model, pixels, torch.tensor(index), q_ids, (q_ids != tok_id["[PAD]"]).long(),
                            a_ids, (a_ids != tok_id["[PAD]"]).long())
            losses.append(optimizer_step(opt, loss, "toy BLIP", step))
            events.step_done({"loss": losses[-1]}, n_img)
            if step % 100 == 0 or step == p.blip_steps - 1:
                events.record(step + 1, 0, opt)
                log.info("toy BLIP step %d/%d loss %.3f", step + 1, p.blip_steps, float(np.mean(losses[-50:])))
        image_processor = BlipImageProcessor(size={"height": p.blip_image_size, "width": p.blip_image_size},
                                             image_mean=CLIP_MEAN, image_std=CLIP_STD)
        model.eval().save_pretrained(tmp)
        BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    return {"blip_triples": sum(len(i) for i in items), "blip_vocab": len(tokens),
            "blip_final_loss": round(float(np.mean(losses[-50:])), 4), "blip_seconds": round(time.time() - t0, 1),
            "blip_cpu_seconds": round(time.process_time() - c0, 1)}


# ------------------------------------------------------------------------------------------------
# the cached entry point
# ------------------------------------------------------------------------------------------------

def _world_params(root: Path) -> dict:
    marker = root / "toy_world.json"
    if not marker.is_file():
        raise FileNotFoundError(f"{marker} does not exist: generate the toy world first (tool.toy.world, or "
                                "toy.generate: true)")
    params = read_json(marker).get("params", {})
    if params.get("layout", "voc") != "voc":
        raise ValueError(f"{root}: toy.vlp_dir needs a VOC-layout toy world (toy.layout: voc), got "
                         f"layout {params.get('layout')!r}")
    return params


def ensure_toy_vlp(root: str | os.PathLike, out_dir: str | os.PathLike, params: ToyVlpParams | None = None,
                   *, parallel: bool = True) -> dict:
    """Train the toy BLIP (``<out>/blip``) and CLIP (``<out>/clip``) on the world at ``root`` unless cached.

    The marker ``<out>/toy_vlp.json`` (written last) holds the version, ``params`` and the world's
    parameters; when it matches, nothing is trained and its summary is returned. Otherwise both
    models are trained on the world's ``train_aug`` images (minus any ``val`` id) and written.
    ``parallel``: train the BLIP in a second process while this one trains the CLIP (each with
    ``params.threads`` threads; the results are the same as one after the other).
    """
    p = params or ToyVlpParams()
    root, out_dir = Path(root), Path(out_dir)
    key = {"version": VLP_VERSION, "params": dataclasses.asdict(p), "world": _world_params(root)}
    marker = out_dir / MARKER
    if marker.is_file():
        stored = read_json(marker)
        if {k: stored.get(k) for k in key} == key:
            log.info("toy VLP: %s is up to date (cached), not retraining", out_dir)
            return stored
        log.info("toy VLP: parameters or world changed since %s was written, retraining", marker)
        marker.unlink()
    val = set(read_split(root, "val"))
    ids = [i for i in read_split(root, "train_aug") if i not in val]
    if p.max_images is not None:
        ids = ids[:p.max_images]
    if not ids:
        raise ValueError(f"toy VLP: no training images in {root}/ImageSets/Segmentation/train_aug.txt")
    log.info("toy VLP: training a tiny CLIP and a tiny BLIP VQA model on %d toy images -> %s (%s)", len(ids), out_dir,
             "in two processes" if parallel else "one after the other")
    t0 = time.time()
    if parallel:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn: a fresh interpreter (fork after torch has started threads can deadlock)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            blip = pool.submit(_train_blip_job, str(root), ids, str(out_dir / "blip"), dataclasses.asdict(p))
            clip_metrics = _with_threads(p.threads, train_toy_clip, load_records(root, ids), out_dir / "clip", p)
            metrics = {**clip_metrics, **blip.result()}
    else:
        records = load_records(root, ids)
        metrics = {**_with_threads(p.threads, train_toy_clip, records, out_dir / "clip", p),
                   **_with_threads(p.threads, train_toy_blip, records, out_dir / "blip", p)}
    metrics["seconds"] = round(time.time() - t0, 1)
    summary = {**key, "num_images": len(ids), "metrics": metrics}
    write_json(marker, summary)
    log.info("toy VLP: done in %.0f s (CLIP %.0f s, BLIP %.0f s)", metrics["seconds"], metrics["clip_seconds"],
             metrics["blip_seconds"])
    return summary


def _with_threads(threads: int, fn, *args):
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        return fn(*args)
    finally:
        torch.set_num_threads(old)


def _train_blip_job(root: str, ids: list[str], out_dir: str, params: dict) -> dict:
    """BLIP training in a worker process (``ensure_toy_vlp(parallel=True)``)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    p = ToyVlpParams(**params)
    return _with_threads(p.threads, train_toy_blip, load_records(root, ids), Path(out_dir), p)


# ------------------------------------------------------------------------------------------------
# measurements
# ------------------------------------------------------------------------------------------------

def _norm_text(text: str) -> str:
    """Lower case, single spaces, no spaces around hyphens (BERT decodes "double-decker" as "double - decker")."""
    return re.sub(r"\s*-\s*", "-", " ".join(text.lower().split()))


def _names(answer: str, words: Iterable[str]) -> bool:
    """Whether ``answer`` names one of ``words`` (whole-word match, singular or plural forms)."""
    a = f" {_norm_text(answer)} "
    a_lemma = " " + " ".join(lemmatize_noun(t) for t in a.split()) + " "
    for w in words:
        w = _norm_text(w)
        forms = {w, " ".join(lemmatize_noun(t) for t in w.split())}
        if any(f" {f} " in a or f" {f} " in a_lemma for f in forms):
            return True
    return False


def evaluate_toy_vqa(records: Iterable[Mapping], metas: Mapping[str, Mapping]) -> dict:
    """How often QAPE answers are true of the toy image, by the generator's metadata.

    records: corpus records ``{"image", "class" (question spelling), "fg": [[q, a], ...], "bg": [...]}``;
    metas: image id -> ``ToyMeta`` sidecar. A BG answer is right when it names the image's scene or
    one of its things; an FG answer when it names a sub-type of an object of that class in the image
    or an alias of the class. Returns ``{"bg_share", "fg_share", "bg_answers", "fg_answers",
    "by_group": {group: share}}`` (shares in [0, 1]; None when there were no answers).
    """
    counts: dict[str, list[int]] = {}    # key -> [right, total]
    for rec in records:
        meta = metas[rec["image"]]
        objects = [o for o in meta["objects"] if o["class_name"] == rec["class"]]
        if not objects:
            raise ValueError(f"toy VQA eval: image {rec['image']} has no {rec['class']!r} in its sidecar")
        xml = objects[0]["class"]
        fg_true = [*(o["subtype"] for o in objects), *CLASS_ALIASES[xml]]
        bg_true = [meta["scene"], *meta["things"]]
        groups = {q: g for g, qs in DEFAULT_QUESTIONS.items() for q in (t.format(rec["class"]) for t in qs)}
        for side, true in (("fg", fg_true), ("bg", bg_true)):
            for question, answer in rec[side]:
                ok = int(_names(answer, true))
                for key in (side, f"group:{groups.get(question, 'other')}"):
                    c = counts.setdefault(key, [0, 0])
                    c[0] += ok
                    c[1] += 1

    def share(key: str) -> float | None:
        right, total = counts.get(key, (0, 0))
        return round(right / total, 4) if total else None

    return {"bg_share": share("bg"), "fg_share": share("fg"), "bg_answers": counts.get("bg", [0, 0])[1],
            "fg_answers": counts.get("fg", [0, 0])[1],
            "by_group": {k.split(":", 1)[1]: share(k) for k in sorted(counts) if k.startswith("group:")}}


def run_toy_vqa(vlp_dir: str | os.PathLike, root: str | os.PathLike, split: str = "val", *,
                device: str = "cpu", max_images: int | None = None) -> tuple[list[dict], dict]:
    """Ask the toy BLIP (``<vlp_dir>/blip``, via ``BlipVQA``) every default question about every
    (image, class) of ``split``; returns (corpus records, :func:`evaluate_toy_vqa` of them)."""
    from net.blip_vqa import BlipVQA

    blip_dir = Path(vlp_dir) / "blip"
    size = int(read_json(blip_dir / "config.json")["vision_config"]["image_size"])
    vqa = BlipVQA.from_pretrained(blip_dir, device=device, image_size=size)
    ids = read_split(root, split)[:max_images]
    recs = load_records(root, ids)
    corpus = []
    for start in range(0, len(recs), 16):
        chunk = recs[start:start + 16]
        embeds = vqa.encode_images(torch.stack([blip_pixels(r.image, size) for r in chunk]))   # [B, P, D]
        pairs = []
        items: list[tuple[int, str]] = []                   # (batch row, question)
        for b, r in enumerate(chunk):
            for name in dict.fromkeys(o["class_name"] for o in r.meta["objects"]):
                qs = [(g, t.format(name)) for g, ts in DEFAULT_QUESTIONS.items() for t in ts]
                pairs.append((r.image_id, name, qs, len(items)))
                items += [(b, q) for _, q in qs]
        answers = vqa.answer(embeds, items)
        for image_id, name, qs, at in pairs:
            rec = {"image": image_id, "class": name, "fg": [], "bg": []}
            for (g, q), a in zip(qs, answers[at:at + len(qs)]):
                rec[side_of_group(g)].append([q, a])
            corpus.append(rec)
    return corpus, evaluate_toy_vqa(corpus, {r.image_id: r.meta for r in recs})


def clip_zero_shot(vlp_dir: str | os.PathLike, root: str | os.PathLike, split: str = "val", *,
                   device: str = "cpu") -> dict:
    """Zero-shot sanity of the toy CLIP on the masked regions of ``split``, as RITC feeds them.

    Each visible object (exact PNG mask) is cut out as RITC's FG image (whole image squashed to S,
    CLIP-normalised, times the mask); the background (objects blacked out) is the BG image. Returns
    ``accuracy`` (FG region -> its class among the 20 "a photo of {class}." texts), ``scene_accuracy``
    (BG region -> its scene among 6), and the two comparisons RITC's losses make (Eq. 5–8):
    ``fg_over_bg`` (the FG region is closer to its class text than to every text of its image's scene
    and things) and ``bg_over_fg`` (the BG region is closer, on average, to those texts than to the
    class text), each a share of the ``regions`` objects; ``ring_over_fg``: the same for the object's
    context ring (the background within ~0.1 H of it), the region a spilling CAM adds.
    ``no_qape_ring_over_fg``: the same for the ring with the no-QAPE BG text "a photo of no {class}."
    (Table 5's corpus, ``net.qape_text.no_qape_texts``) in place of the scene / things; ``no_text_cos``:
    the mean cosine between "a photo of no {class}." and "a photo of {class}." over the 20 classes.
    """
    from net.clip import encode_texts, load_clip

    clip = load_clip(str(Path(vlp_dir) / "clip"), None, device=device, config_key="clip")
    recs = [r for r in load_records(root, read_split(root, split)) if r.label is not None]
    bg_words = _bg_words([*SCENES, *(t for ts in SCENE_THINGS.values() for t in ts)])
    no_texts = [TEXT_PROMPT.format(no_qape_texts(n)[1][0]) for n in CLASS_NAMES]           # "a photo of no cat."
    prompts = [TEXT_PROMPT.format(n) for n in [*CLASS_NAMES, *bg_words]] + no_texts
    feats_t = encode_texts(clip.model, clip.tokenizer, prompts, device=device)            # [20 + B + 20, D]
    K = len(CLASS_NAMES)
    class_feats, bg_feats, no_feats = feats_t[:K], feats_t[K:-K], feats_t[-K:]
    scene_rows = [bg_words.index(s) for s in SCENES]
    right = total = scene_right = fg_win = bg_win = ring_win = no_ring_win = 0
    side = 2 * round(0.1 * recs[0].image.shape[0]) + 1 if recs else 1   # the context ring's reach (one image size)
    disk = torch.ones(1, 1, side, side)
    S = clip.image_size
    with torch.no_grad():
        for r in recs:
            x = _normalize(r.image[None])                                             # [1, 3, H, W]
            masks = [(m, XML_NAMES.index(o["class"])) for o, m in zip(r.meta["objects"], object_masks(r))
                     if m.sum() >= 16]
            obj = torch.from_numpy(np.stack([m for m, _ in masks]))[:, None].float()     # [M, 1, H, W]
            bg = torch.from_numpy(background_mask(r))[None, None].float()               # [1, 1, H, W]
            # context rings: the background within ~0.1 H of each object (as in training)
            ring = (F.conv2d(obj, disk, padding=disk.shape[-1] // 2) > 0).float() * bg
            regions = torch.cat([x * obj, x * ring, x * bg])                              # [2M + 1, 3, H, W]
            regions = F.interpolate(regions, size=(S, S), mode="bilinear", align_corners=True)
            feats = F.normalize(clip.model.encode_image(regions.to(device)).float(), dim=-1).cpu()   # [2M + 1, D]
            sim_cls = feats @ class_feats.t()                                         # [2M + 1, 20]
            mine = [bg_words.index(w) for w in _bg_words([r.meta["scene"], *r.meta["things"]])]
            sim_bg = feats @ bg_feats[mine].t()                                       # [2M + 1, b]
            M = len(masks)
            for i, (_, k) in enumerate(masks):
                right += int(sim_cls[i].argmax()) == k
                fg_win += bool(sim_cls[i, k] > sim_bg[i].max())
                ring_win += bool(sim_bg[M + i].mean() > sim_cls[M + i, k])
                no_ring_win += bool(feats[M + i] @ no_feats[k] > sim_cls[M + i, k])
                bg_win += bool(sim_bg[-1].mean() > sim_cls[-1, k])
            total += M
            scene_sim = feats[-1] @ bg_feats[scene_rows].t()                          # [6]
            scene_right += int(scene_sim.argmax()) == SCENES.index(r.meta["scene"])
    n = max(total, 1)
    return {"accuracy": round(right / n, 4), "fg_over_bg": round(fg_win / n, 4), "bg_over_fg": round(bg_win / n, 4),
            "ring_over_fg": round(ring_win / n, 4), "no_qape_ring_over_fg": round(no_ring_win / n, 4),
            "no_text_cos": round(float((no_feats * class_feats).sum(1).mean()), 4), "regions": total,
            "scene_accuracy": round(scene_right / max(len(recs), 1), 4)}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: train the toy VLP (cached) and optionally measure it; prints nothing, logs the results."""
    ap = argparse.ArgumentParser(prog="python -m tool.toy.vlp", description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="the toy world (VOC layout), e.g. work/demo-data/VOC2012")
    ap.add_argument("--out", required=True, help="folder for blip/, clip/ and toy_vlp.json")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads while training (default 1)")
    ap.add_argument("--set", action="append", default=[], metavar="PARAM=VALUE",
                    help="override a ToyVlpParams field, e.g. --set blip_steps=800")
    ap.add_argument("--eval-vqa", action="store_true", help="measure the BLIP's QAPE answers on --split")
    ap.add_argument("--eval-clip", action="store_true", help="measure the CLIP's zero-shot accuracy on --split")
    ap.add_argument("--split", default="val")
    ap.add_argument("--json", help="also write the measurements to this JSON file")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fields = {f.name: f for f in dataclasses.fields(ToyVlpParams)}
    overrides: dict = {"seed": args.seed, "threads": args.threads}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in fields:
            ap.error(f"--set {item!r}: unknown parameter {key!r} (known: {', '.join(fields)})")
        overrides[key] = None if value == "null" else type(getattr(ToyVlpParams(), key) or 0)(value)
    summary = ensure_toy_vlp(args.root, args.out, ToyVlpParams(**overrides))
    results: dict = {"train": summary.get("metrics", {})}
    torch.set_num_threads(max(1, args.threads))
    if args.eval_vqa:
        t0 = time.time()
        results["vqa"] = run_toy_vqa(args.out, args.root, args.split)[1]
        log.info("toy VQA on %s: %s (%.0f s)", args.split, results["vqa"], time.time() - t0)
    if args.eval_clip:
        results["clip"] = clip_zero_shot(args.out, args.root, args.split)
        log.info("toy CLIP zero-shot on %s: %s", args.split, results["clip"])
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
