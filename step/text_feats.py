"""Step 2, ``text_feats``: post-process the QAPE answers into CLIP texts and encode each unique text
once (paper §3.2–3.3 Eq. 3–4; docs/design.md §3, §4).

Reads: ``qape/corpus.jsonl`` (step ``qape``; or one imported from the authors' files with
``python -m tool.import_official_corpus``) and the CLIP text tower of ``clip.model`` / ``clip.pretrained``.
Writes: ``qape/texts.json`` — ``{"prompt", "clip_id", "corpus_sha256", "no_qape", "classes",
"texts": [unique prompted texts], "pairs": [{"image", "class" (0-based), "fg": [text rows], "bg": [...]}]}``
— and ``qape/text_feats.<clip-id>.safetensors`` with ``feats`` [T, D] (L2-normalised, fp32).

FG texts: each of the L FG answers, with the class name appended unless it names the class or an
alias; the class name itself (the L+1-th text) is encoded by ``train_ritc`` with its own CLIP, as
the official code does. BG texts: lemmatised, deduplicated, the class removed; a pair may have none
(RITC skips it). ``qape.no_qape``: FG = the class name only, BG = "no {class}" (paper Table 5); with no BG
group in ``qape.groups`` (Table 5's FG-only rows) the BG text is "no {class}" too.
"""
from __future__ import annotations

import hashlib
import json
import logging

import torch
from safetensors.torch import save_file

from net.clip import encode_texts, load_clip
from net.qape_text import CLASS_ALIASES, bg_texts, fg_texts, no_qape_texts, side_of_group
from tool.data.registry import build_dataset, read_identity
from tool.engine.config import Config
from tool.engine.io import atomic_path, write_json
from tool.engine.runtime import Context

log = logging.getLogger(__name__)

SECTIONS = ("dataset", "qape", "clip")
INPUTS = ("qape",)
# local weights whose change reruns the step (their size and mtime are part of its digest)
FILES = ("clip.model", "clip.pretrained")


def data_identity(cfg: Config, ctx: Context) -> dict:
    """What of the dataset it reads, for its digest (an edit reruns it): the labels of ``qape.split``."""
    return read_identity(cfg.dataset, ctx.paths.cache_dir, {cfg.qape.split or cfg.dataset.train_split: ("labels",)})


def pair_texts(record: dict, class_name: str, cfg: Config) -> tuple[list[str], list[str]]:
    """(FG answer texts without the class-name text, BG texts) of one corpus record, un-prompted."""
    q = cfg.qape
    if q.no_qape:
        fg, bg = no_qape_texts(class_name)
        return [], bg          # FG = the class name alone, which train_ritc encodes as the class text
    aliases = dict(q.aliases) if q.aliases else CLASS_ALIASES
    fg = fg_texts([a for _, a in record["fg"]], class_name, aliases)[:-1]   # the L answers; class is last
    if not any(side_of_group(g) == "bg" for g in q.groups):
        # Table 5's FG-only rows: no BG question was asked, so BG is the no-QAPE text "no {class}" (with no
        # BG text at all every pair would be skipped in FRC / BRC and RITC would train REG alone)
        return fg, no_qape_texts(class_name)[1]
    return fg, bg_texts([a for _, a in record["bg"]], class_name)


def run(cfg: Config, ctx: Context) -> dict:
    if not ctx.is_main:      # small: rank 0 alone
        return {}
    q = cfg.qape
    if "{}" not in q.prompt:
        raise ValueError(f"qape.prompt: {q.prompt!r} has no '{{}}' where the text goes")
    ds = build_dataset(cfg.dataset, ctx.paths.cache_dir)
    names = ds.class_names
    index = {n: k for k, n in enumerate(names)}
    corpus = ctx.paths.corpus_jsonl
    if corpus.is_file():
        raw = corpus.read_bytes()
    elif q.no_qape:   # the no-QAPE baseline needs no answers: one empty record per labelled pair
        ids = ds.ids(q.split or cfg.dataset.train_split)
        labels = ds.labels(ids)
        raw = "".join(json.dumps({"image": i, "class": names[k], "fg": [], "bg": []}) + "\n"
                      for i, lab in zip(ids, labels) for k in lab.nonzero()[0]).encode()
    else:
        raise FileNotFoundError(f"{corpus} does not exist: run the qape step first, or import the authors' "
                                "answers with python -m tool.import_official_corpus")
    texts: list[str] = []
    row: dict[str, int] = {}
    pairs = []

    def rows(items: list[str]) -> list[int]:
        out = []
        for t in items:
            t = q.prompt.format(t)
            if t not in row:
                row[t] = len(texts)
                texts.append(t)
            out.append(row[t])
        return out

    for n, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        rec = json.loads(line)
        if rec.get("class") not in index:
            raise ValueError(f"{corpus}:{n}: class {rec.get('class')!r} is not a class of {ds.name} ({list(names)})")
        fg, bg = pair_texts(rec, rec["class"], cfg)
        pairs.append({"image": rec["image"], "class": index[rec["class"]], "fg": rows(fg), "bg": rows(bg)})
    if not pairs:   # an empty corpus trains nothing: it is a broken qape run, not a result
        raise ValueError(f"{corpus}: holds no (image, class) records; rerun qape with --force (or re-import the "
                         "authors' answers)")
    clip = load_clip(cfg.clip.model, cfg.clip.pretrained, device=ctx.device, config_key="clip",
                     quick_gelu=cfg.clip.quick_gelu)
    feats = encode_texts(clip.model, clip.tokenizer, texts, device=ctx.device,
                         batch_size=cfg.clip.text_batch_size) if texts else torch.zeros(0, clip.embed_dim)
    with atomic_path(ctx.paths.text_feats(clip.id)) as tmp:
        save_file({"feats": feats.float().contiguous()}, str(tmp), metadata={"clip_id": clip.id})
    write_json(ctx.paths.texts_json, {
        "prompt": q.prompt, "clip_id": clip.id, "corpus_sha256": hashlib.sha256(raw).hexdigest(),
        "no_qape": q.no_qape, "classes": list(names), "texts": texts, "pairs": pairs}, indent=None)
    no_bg = sum(1 for p in pairs if not p["bg"])
    log.info("text_feats: %d pairs, %d unique texts (%d pairs without BG text) -> %s", len(pairs), len(texts),
             no_bg, ctx.paths.text_feats(clip.id))
    return {"pairs": len(pairs), "unique_texts": len(texts), "pairs_without_bg": no_bg, "clip_id": clip.id}


if __name__ == "__main__":   # steps run through the runner, which hands them their context
    raise SystemExit("run it with: python -m step text_feats --config <yaml> [--set k=v] [--force]")
