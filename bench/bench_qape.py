"""Benchmark QAPE's VQA: one ``generate`` per question (official structure) vs encode-once + batching.

Both run the same BLIP (a small random one written by ``tool.toy.tiny_models.write_tiny_blip``) on the
same random 480-px images, all 16 default questions for a few classes per image:

- straightforward: per (image, class) pair the image is pre-processed once (as the official
  ``load_image``), then every question is one ``model.generate(pixel_values, input_ids)`` call,
  which re-encodes the image (``BlipVQA.answer_one``);
- ours: every image pre-processed and encoded once (``encode_images``), all (image, question)
  prompts answered in equal-token-length batches (``BlipVQA.answer``).

The model's shape keeps the real model's cost balance: the real ViT-B@480 (901 tokens, width 768)
costs about 7× the question encoder's cross-attention over the image tokens; with width 192 and
patch 32 at 480 px (226 tokens) the small model has the same ratio, so the speed-up is not
inflated by an oversized vision tower.

Run from the repository root::

    .venv/bin/python -m bench.bench_qape [--images 8 --classes 2 --threads 2 --batch-size 64]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from net.blip_vqa import BlipVQA
from net.qape_text import DEFAULT_QUESTIONS, expand_questions
from tool.toy.tiny_models import write_tiny_blip
from voc12.dataset import CLASS_NAMES

WIDTH, LAYERS, HEADS, PATCH = 192, 6, 3, 32
INIT = 0.05  # weight std giving image- and question-dependent answers at width 192


def write_bench_blip(out: str | Path, size: int, seed: int = 0) -> Path:
    """The benchmarks' BLIP (real classes, width ``WIDTH``, patch ``PATCH`` at ``size`` px) written to ``out``."""
    return write_tiny_blip(
        out, seed=seed,
        vision_config={"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS,
                       "num_attention_heads": HEADS, "image_size": size, "patch_size": PATCH},
        text_config={"hidden_size": WIDTH, "intermediate_size": 4 * WIDTH, "num_hidden_layers": LAYERS,
                     "num_attention_heads": HEADS},
        init_range=INIT,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--classes", type=int, default=2, help="classes asked about per image")
    parser.add_argument("--size", type=int, default=480, help="BLIP input side (official: 480)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        vqa = BlipVQA.from_pretrained(write_bench_blip(f"{tmp}/blip", args.size, args.seed), device="cpu",
                                      image_size=args.size)

    rng = np.random.default_rng(args.seed)
    images = [rng.integers(0, 256, size=(rng.integers(300, 500), rng.integers(300, 500), 3), dtype=np.uint8)
              for _ in range(args.images)]
    pairs = [(i, str(c)) for i in range(args.images)
             for c in rng.choice(CLASS_NAMES, size=args.classes, replace=False)]
    questions = {c: [q for _, q in expand_questions(DEFAULT_QUESTIONS, c)] for _, c in pairs}
    items = [(i, q) for i, c in pairs for q in questions[c]]
    lengths = Counter(len(vqa.tokenize(q)) for _, q in items)
    print(f"{args.images} images, {len(pairs)} (image, class) pairs, {len(items)} questions; "
          f"question token lengths {dict(sorted(lengths.items()))}; threads {args.threads}; "
          f"BLIP width {WIDTH}, {LAYERS}+{LAYERS} layers, patch {PATCH} at {args.size} px")

    # warm-up (first-call allocations, lazy inits) on a different image
    warm = vqa.preprocess(images[0][::2, ::2].copy())
    vqa.answer_one(warm, items[0][1])
    vqa.answer(vqa.encode_images(warm[None]), [(0, items[0][1])])

    t0 = time.perf_counter()
    straight: list[str] = []
    for i, c in pairs:
        pixels = vqa.preprocess(images[i])[None]  # [1, 3, S, S], once per pair as the official load_image
        straight += [vqa.answer_one(pixels, q) for q in questions[c]]
    t_straight = time.perf_counter() - t0

    t0 = time.perf_counter()
    embeds = torch.cat([vqa.encode_images(vqa.preprocess_batch(images[s:s + 8]))
                        for s in range(0, len(images), 8)])  # [N, P, D]
    ours = vqa.answer(embeds, items, batch_size=args.batch_size)
    t_ours = time.perf_counter() - t0

    same = sum(a == b for a, b in zip(straight, ours))
    print(f"straightforward (one generate per question): {t_straight:8.2f} s")
    print(f"ours (encode once, equal-length batches):    {t_ours:8.2f} s")
    print(f"speed-up: {t_straight / t_ours:.2f}x")
    print(f"identical answers: {same}/{len(items)} ({100.0 * same / len(items):.1f} %); "
          f"distinct answers {len(set(ours))}, "
          f"answer word counts {dict(sorted(Counter(len(a.split()) for a in ours).items()))}")


if __name__ == "__main__":
    main()
