"""Tiny models of the real classes, written to disk in the real formats (docs/design.md §6).

No pretrained weights can be downloaded in CI, so tests and the toy demo build these instead and
load them through the very functions a user's hub id or checkpoint goes through:

- :func:`write_tiny_blip`: a ``BlipForQuestionAnswering`` from a small ``BlipConfig`` plus a
  ``BlipProcessor`` (BERT WordPiece tokenizer with a small vocabulary), saved with
  ``save_pretrained`` -> ``net.blip_vqa.BlipVQA.from_pretrained(folder)``;
- :func:`write_tiny_clip`: an open_clip CLIP from a small architecture, saved in the hf-hub /
  ``local-dir:`` layout (``open_clip_config.json`` + ``open_clip_model.safetensors``) ->
  ``net.clip.load_clip(folder)``.

Both are deterministic for a given ``seed`` (the global RNG state is left untouched) and take well
under two seconds.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from net.qape_text import DEFAULT_QUESTIONS
from tool.engine.io import atomic_dir, atomic_path, write_text
from voc12.dataset import CLASS_NAMES

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# BERT's special tokens plus BLIP's decoder-start token [DEC] and encoder token [ENC].
_BLIP_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]")
# Answer-like words so the tiny model can "answer" with scene words (and plurals to lemmatise).
_ANSWER_WORDS = (
    "tree", "trees", "grass", "water", "sky", "road", "street", "table", "kitchen", "room", "field", "beach",
    "track", "tracks", "building", "buildings", "wall", "floor", "window", "car", "cars", "fence", "snow",
    "river", "sea", "house", "person", "people", "man", "woman", "child", "puppy", "terrier", "jet",
    "airliner", "sedan", "tabby",
)


def default_blip_vocab() -> list[str]:
    """Words of the default question templates, VOC class names and some answers (sorted, unique)."""
    text = " ".join([*(t for ts in DEFAULT_QUESTIONS.values() for t in ts), *CLASS_NAMES, *_ANSWER_WORDS])
    # BERT's pre-tokenizer splits punctuation off words, so "photo?" needs "photo" and "?".
    words = set(re.findall(r"[a-z]+|[^\sa-z{}]", text.lower()))
    return sorted(words)


def write_tiny_blip(
    out_dir: str | os.PathLike,
    *,
    vocab: Sequence[str] | None = None,
    seed: int = 0,
    vision_config: dict[str, Any] | None = None,
    text_config: dict[str, Any] | None = None,
    init_range: float = 0.2,
    end_bias: float = 1.5,
) -> Path:
    """Write a tiny BLIP VQA model + processor to ``out_dir`` (created) and return it.

    ``vocab``: lower-case word list for the WordPiece vocabulary (default :func:`default_blip_vocab`);
    BLIP's special tokens are put first. ``vision_config`` / ``text_config`` override the tiny
    defaults (e.g. a bigger ViT for the benchmark). The folder is written to a temp dir next to
    ``out_dir`` and renamed into place, so a killed call leaves no half-written model.

    A random BLIP at the usual init scale (0.02) answers every question with the same words, so an
    equality test of batched vs single answers could hardly fail. ``init_range`` (weight std) is
    raised until answers depend on image and question (0.2 suits width 32, about 0.05 width 192;
    much larger scales make the network chaotic, amplifying float rounding into different
    answers), and ``end_bias`` is added to the answer decoder's ``[SEP]`` logit so that answers end
    at varied lengths, as real VQA answers do.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForQuestionAnswering, BlipImageProcessor, BlipProcessor

    words = [w for w in (default_blip_vocab() if vocab is None else vocab) if w not in _BLIP_SPECIALS]
    tokens = [*_BLIP_SPECIALS, *dict.fromkeys(words)]
    tok_id = {t: i for i, t in enumerate(tokens)}
    vis = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
           "image_size": 32, "patch_size": 8, "initializer_range": init_range}
    vis.update(vision_config or {})
    txt = {"vocab_size": len(tokens), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "max_position_embeddings": 64, "initializer_range": init_range,
           "pad_token_id": tok_id["[PAD]"], "bos_token_id": tok_id["[DEC]"], "sep_token_id": tok_id["[SEP]"],
           "eos_token_id": tok_id["[SEP]"]}
    txt.update(text_config or {})
    config = BlipConfig(text_config=txt, vision_config=vis, initializer_range=init_range)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with atomic_dir(out_dir) as tmp:    # renamed into place, modes by the umask
        vocab_file = tmp / "vocab.txt"
        vocab_file.write_text("\n".join(tokens) + "\n", encoding="utf-8")
        tokenizer = BertTokenizer(vocab=str(vocab_file), bos_token="[DEC]")
        image_processor = BlipImageProcessor(
            size={"height": vis["image_size"], "width": vis["image_size"]}, image_mean=CLIP_MEAN, image_std=CLIP_STD
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = BlipForQuestionAnswering(config).eval()
        with torch.no_grad():
            # The decoder's output bias is tied to cls.predictions.bias; shift the [SEP] entry.
            model.text_decoder.cls.predictions.bias[config.text_config.sep_token_id] += end_bias
        model.save_pretrained(tmp)
        BlipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(tmp)
    return out_dir


def tiny_clip_config(*, image_size: int = 64, embed_dim: int = 32) -> dict[str, Any]:
    """open_clip architecture config of the tiny CLIP (the ``model_cfg`` of ``open_clip_config.json``).

    The text tower keeps CLIP's BPE vocabulary (49408) and context length (77) so open_clip's own
    tokenizer serves it unchanged.
    """
    return {
        "embed_dim": embed_dim,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }


def write_tiny_clip(
    out_dir: str | os.PathLike, *, seed: int = 0, image_size: int = 64, embed_dim: int = 32
) -> Path:
    """Write a tiny open_clip CLIP to ``out_dir`` in the hf-hub / ``local-dir:`` layout; return it.

    Files: ``open_clip_config.json`` (``{"model_cfg": ..., "preprocess_cfg": {mean, std, ...}}``) and
    ``open_clip_model.safetensors`` (the full state dict), each written atomically.
    """
    import open_clip

    model_cfg = tiny_clip_config(image_size=image_size, embed_dim=embed_dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.CLIP(**model_cfg)
    return save_open_clip(model, model_cfg, out_dir, interpolation="bicubic", resize_mode="shortest")


def save_open_clip(model: torch.nn.Module, model_cfg: dict, out_dir: str | os.PathLike, *,
                   interpolation: str = "bicubic", resize_mode: str = "shortest") -> Path:
    """Write an open_clip model in the hf-hub / ``local-dir:`` layout ``net.clip.load_clip`` reads:
    ``open_clip_model.safetensors`` first, ``open_clip_config.json`` last (its presence marks a
    complete folder). Returns ``out_dir``."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / "open_clip_model.safetensors") as tmp:
        save_file(state, str(tmp))
    preprocess_cfg = {"mean": list(CLIP_MEAN), "std": list(CLIP_STD), "interpolation": interpolation,
                      "resize_mode": resize_mode}
    write_text(out_dir / "open_clip_config.json",
               json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg}, indent=2) + "\n")
    return out_dir
