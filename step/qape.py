"""Step 1, ``qape``: ask BLIP VQA the templated FG and BG questions about every (image, class) pair
(paper §3.2, Appendix A; docs/design.md §3, §5, §7).

Reads: the images and labels of ``qape.split`` (default ``dataset.train_split``), the VQA model
``qape.vqa_model`` (HF hub id or folder; default ``Salesforce/blip-vqa-capfilt-large``).
Writes: ``qape/corpus.jsonl``, one line per (image, present class):
``{"image", "class", "fg": [[question, answer], ...], "bg": [...]}`` with the raw answers.

Speed (docs/design.md §7): each image is decoded and encoded by the ViT once; its embedding serves all of
its (class, question) prompts; prompts of equal token length are batched across images and
questions (the HF BLIP text decoder ignores question padding, so unequal lengths never share a
batch) — answers equal one-question-at-a-time generation.

Resume: answers are appended to ``qape/corpus.rank<r>.jsonl`` as they come; a rerun skips the
pairs already there and drops a torn last line; at the end the shards are merged, in image-list
order, into ``corpus.jsonl``. Under torchrun the images are sharded by rank.
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from net.blip_vqa import BlipVQA, preprocess_image
from net.qape_text import DEFAULT_QUESTIONS, expand_questions, side_of_group
from tool.data.base import ImageItems
from tool.data.registry import build_dataset, read_identity
from tool.engine import dist
from tool.engine.config import Config, QapeConfig
from tool.engine.io import read_jsonl_repairing, write_text
from tool.engine.per_image import PerImage
from tool.engine.runtime import Context, autocast

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "qape")
INPUTS: tuple[str, ...] = ()
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("qape.vqa_model",)


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of ``qape.split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.qape.split or cfg.dataset.train_split: ("labels",)})


def question_templates(q: QapeConfig) -> dict[str, tuple[str, ...]]:
    """The templates of the enabled groups (``qape.questions`` or the paper's Table 6), validated."""
    templates = dict(q.questions) if q.questions else dict(DEFAULT_QUESTIONS)
    for g in list(templates) + list(q.groups):
        try:
            side_of_group(g)
        except ValueError as e:
            raise ValueError(f"qape.questions / qape.groups: {e}") from e
    unknown = [g for g in q.groups if g not in templates]
    if unknown:
        raise ValueError(f"qape.groups: {unknown} have no templates in qape.questions (groups: {list(templates)})")
    out = {g: tuple(templates[g]) for g in templates if g in q.groups}
    expand_questions(out, "class")   # every template must hold exactly one "{}"
    return out


def skip_reason(cfg: Config, ctx: Context) -> str | None:
    """The no-QAPE baseline (Table 5's first row) asks no questions: the runner skips the step, and
    ``text_feats`` makes its texts from the labels alone, so no VQA model is loaded."""
    return "qape.no_qape: the no-QAPE baseline asks no questions" if cfg.qape.no_qape else None


class _Images(ImageItems):
    """Decode and BLIP-preprocess images in loader workers: (position, pixel_values [3, S, S] or None)."""

    def __init__(self, ds, ids: list[str], q: QapeConfig, mean: tuple, std: tuple, skip_bad):
        super().__init__(ds, ids, skip_bad=skip_bad)
        self.q, self.mean, self.std = q, mean, std

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor | None]:
        img = self.image(i)
        return i, None if img is None else preprocess_image(img, self.q.image_size, self.mean, self.std)


def _collate(batch):
    return batch


def run(cfg: Config, ctx: Context) -> dict:
    q = cfg.qape
    templates = question_templates(q)
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    split = q.split or cfg.dataset.train_split
    skips = ctx.skips(q.skip_bad_images or cfg.dataset.skip_bad_images)
    ids = skips.filter(ds.ids(split), ds)
    labels = ds.labels(ids)
    # Shards made under another configuration (or with --force) are removed; ours are resumed.
    images = PerImage(ctx, ctx.paths.qape_dir, "corpus.rank*.jsonl")
    qdir = images.out_dir
    if ctx.is_main:
        for s in sorted(qdir.glob("corpus.rank*.jsonl")):
            read_jsonl_repairing(s)          # rank 0 repairs every shard, of any earlier world size
    dist.barrier()
    done = {(r["image"], r["class"]) for s in sorted(qdir.glob("corpus.rank*.jsonl")) for r in read_jsonl_repairing(s)}

    vqa = BlipVQA.from_pretrained(q.vqa_model, device=ctx.device,
                                  precision=lambda: autocast(q.precision, ctx.device, key="qape.precision"),
                                  image_size=q.image_size, num_beams=q.num_beams, max_length=q.max_length,
                                  min_length=q.min_length, config_key="qape.vqa_model")
    names = ds.class_names
    questions = {k: expand_questions(templates, names[k]) for k in range(ds.num_classes)}  # [(group, question)]
    # resumed by the shards' records: an image is left while one of its (image, class) pairs is unanswered
    mine = [i for i in images.plan(range(len(ids))) if any((ids[i], names[k]) not in done
                                                            for k in np.nonzero(labels[i])[0])]
    log.info("qape: %d images of %s (%d pairs), %d left for rank %d, %d questions per class", len(ids), split,
             int(labels.sum()), len(mine), ctx.rank, len(next(iter(questions.values()))))
    loader = DataLoader(_Images(ds, [ids[i] for i in mine], q, vqa.mean.tolist(), vqa.std.tolist(), skips),
                        batch_size=q.image_batch, num_workers=cfg.num_workers, collate_fn=_collate)
    shard_path = qdir / f"corpus.rank{ctx.rank}.jsonl"
    t0, n_pairs, n_questions, skipped_pairs = time.time(), 0, 0, 0
    with open(shard_path, "a", encoding="utf-8") as out:
        for batch in images.progress(loader):
            good = [(mine[pos], px) for pos, px in batch if px is not None]
            images.skipped += len(batch) - len(good)
            skipped_pairs += sum(int(labels[mine[pos]].sum()) for pos, px in batch if px is None)
            if not good:
                continue
            embeds = vqa.encode_images(torch.stack([px for _, px in good]))           # [B, P, D], once per image
            pairs: list[tuple[int, int, int]] = []                 # (image, class, its first item)
            items: list[tuple[int, str]] = []                      # (batch row, question)
            for b, (i, _) in enumerate(good):
                for k in map(int, np.nonzero(labels[i])[0]):
                    if (ids[i], names[k]) in done:
                        continue
                    pairs.append((i, k, len(items)))
                    items += [(b, question) for _, question in questions[k]]
            answers = vqa.answer(embeds, items, batch_size=q.prompt_batch)
            for i, k, start in pairs:
                sides: dict[str, list[list[str]]] = {"fg": [], "bg": []}   # [question, answer] each
                for (group, question), answer in zip(questions[k], answers[start:start + len(questions[k])]):
                    sides[side_of_group(group)].append([question, answer])
                out.write(json.dumps({"image": ids[i], "class": names[k], **sides}) + "\n")
            out.flush()
            os.fsync(out.fileno())
            n_pairs += len(pairs)
            n_questions += len(items)
            images.made += len(good)
    seconds = time.time() - t0
    totals = torch.tensor([n_pairs, n_questions, skipped_pairs], dtype=torch.float64)
    counts = images.finish(extra=totals)
    n_pairs, n_questions, skipped_pairs = (int(v) for v in totals)
    skipped = counts["skipped_bad"]
    dist.barrier()
    rate = round(n_questions / seconds, 2) if n_questions and seconds > 0 else None    # this session's
    log.info("qape: %d pairs, %d questions in %.1f s", n_pairs, n_questions, seconds)
    if ctx.is_main:
        merged = merge_corpus(qdir, ids, names)
        expected = int(labels.sum()) - skipped_pairs
        if merged < expected:   # never mark a short corpus done (text_feats would accept it)
            raise RuntimeError(f"qape: {ctx.paths.corpus_jsonl} holds {merged} of the {expected} expected (image, "
                               f"class) pairs; its shards in {qdir} changed under this run (another process on this "
                               "work_dir?). Run qape again to complete it")
        # the summary describes the corpus, whole: the pairs and questions answered before a resume count too
        n_pairs, n_questions = merged, corpus_questions(ctx.paths.corpus_jsonl)
    dist.barrier()
    return {"num_images": len(ids), "pairs_answered": n_pairs, "questions": n_questions, "skipped_bad": skipped,
            "questions_per_s": rate}


def corpus_questions(path: Path) -> int:
    """The questions answered in a merged corpus: its FG and BG (question, answer) pairs."""
    with open(path, encoding="utf-8") as f:
        return sum(len(r["fg"]) + len(r["bg"]) for r in map(json.loads, f))


def merge_corpus(qdir: Path, ids: list[str], names: tuple[str, ...]) -> int:
    """Merge the rank shards into ``corpus.jsonl`` (image-list order, then class order); drop the shards."""
    order = {image_id: i for i, image_id in enumerate(ids)}
    cls = {n: k for k, n in enumerate(names)}
    shards = sorted(qdir.glob("corpus.rank*.jsonl"))
    records = {}
    for s in shards:
        for r in read_jsonl_repairing(s):
            if r["image"] in order:
                records[(r["image"], r["class"])] = r
    merged = sorted(records.values(), key=lambda r: (order[r["image"]], cls[r["class"]]))
    write_text(qdir / "corpus.jsonl", "".join(json.dumps(r) + "\n" for r in merged))
    for s in shards:
        s.unlink()
    return len(merged)


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step qape --config <yaml> [--set k=v] [--force]")
