"""The toy BLIP: a HF BlipForQuestionAnswering with its own small vocabulary, trained with the decoder's LM loss
on the toy world's (image, question, answer) triples."""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from tool.engine.events import EventWriter
from tool.engine.io import atomic_dir
from tool.engine.lr import warmup_poly_lr
from tool.engine.train_loop import optimizer_step
from tool.toy.vlp.params import CLIP_MEAN, CLIP_STD, WARMUP, ToyVlpParams
from tool.toy.vlp.records import ToyRecord
from tool.toy.vlp.texts import blip_vocab, toy_vqa_answers

log = logging.getLogger(__name__)

_BLIP_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")


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
                group["lr"] = warmup_poly_lr(step, p.blip_lr, p.blip_steps, WARMUP)
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

