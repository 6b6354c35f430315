"""Measurements of the toy VLP: how true the toy BLIP's QAPE answers are, the toy CLIP's zero-shot sanity on the
regions RITC feeds it."""
from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from net.qape_text import DEFAULT_QUESTIONS, TEXT_PROMPT, lemmatize_noun, no_qape_texts, side_of_group
from tool.engine.io import read_json
from tool.toy.vlp.blip import blip_pixels
from tool.toy.vlp.records import background_mask, load_records, normalize_clip, object_masks, read_split
from tool.toy.vlp.texts import bg_words
from tool.toy.vocab import CLASS_ALIASES, SCENE_THINGS, SCENES
from voc12.dataset import CLASS_NAMES, XML_NAMES


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
    bg_vocab = bg_words([*SCENES, *(t for ts in SCENE_THINGS.values() for t in ts)])
    no_texts = [TEXT_PROMPT.format(no_qape_texts(n)[1][0]) for n in CLASS_NAMES]           # "a photo of no cat."
    prompts = [TEXT_PROMPT.format(n) for n in [*CLASS_NAMES, *bg_vocab]] + no_texts
    feats_t = encode_texts(clip.model, clip.tokenizer, prompts, device=device)            # [20 + B + 20, D]
    K = len(CLASS_NAMES)
    class_feats, bg_feats, no_feats = feats_t[:K], feats_t[K:-K], feats_t[-K:]
    scene_rows = [bg_vocab.index(s) for s in SCENES]
    right = total = scene_right = fg_win = bg_win = ring_win = no_ring_win = 0
    side = 2 * round(0.1 * recs[0].image.shape[0]) + 1 if recs else 1   # the context ring's reach (one image size)
    disk = torch.ones(1, 1, side, side)
    S = clip.image_size
    with torch.no_grad():
        for r in recs:
            x = normalize_clip(r.image[None])                                             # [1, 3, H, W]
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
            mine = [bg_vocab.index(w) for w in bg_words([r.meta["scene"], *r.meta["things"]])]
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

