"""The qape step on the smoke world: answers equal one-question-at-a-time BLIP, and a run killed
midway (with a torn last line) resumes to a corpus holding every pair exactly once."""
from __future__ import annotations

import json

import numpy as np
import pytest

import run_sample
from net.blip_vqa import BlipVQA
from net.qape_text import DEFAULT_QUESTIONS, expand_questions
from tests.test_pipeline import smoke_args
from tool.data.imutils import read_image
from voc12.dataset import VOC12


@pytest.mark.slow
def test_qape_resumes_and_matches_single_questions(tmp_path, monkeypatch):
    import step.qape as qape

    args = smoke_args(tmp_path, "--steps", "qape", "--set", "qape.image_batch=4", "--set", "qape.prompt_batch=5")
    real = qape.BlipVQA.answer
    calls = {"n": 0}

    def dying_answer(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(qape.BlipVQA, "answer", dying_answer)
    with pytest.raises(KeyboardInterrupt):
        run_sample.main(args)
    qdir = tmp_path / "work" / "qape"
    shard = qdir / "corpus.rank0.jsonl"
    first = shard.read_text().splitlines()
    assert first and not (qdir / "corpus.jsonl").exists()
    with open(shard, "a") as f:
        f.write('{"image": "toy_0000')          # a write cut by the kill
    monkeypatch.setattr(qape.BlipVQA, "answer", real)
    out = run_sample.main(args)
    records = [json.loads(x) for x in (qdir / "corpus.jsonl").read_text().splitlines()]
    root = tmp_path / "toy" / "VOC2012"
    ds = VOC12(root)
    ids = ds.ids("train_aug")
    labels = ds.labels(ids)
    expected = [(i, ds.class_names[k]) for i, lab in zip(ids, labels) for k in np.nonzero(lab)[0]]
    assert [(r["image"], r["class"]) for r in records] == expected          # every pair once, in list order
    # the first batch was kept, not asked again; the summary describes the whole corpus, as an uninterrupted run's
    assert out["qape"]["pairs_answered"] == len(expected) and out["qape"]["questions"] == 16 * len(expected)
    assert not list(qdir.glob("corpus.rank*.jsonl"))

    # the batched answers are those of one generate call per question
    vqa = BlipVQA.from_pretrained(tmp_path / "models" / "blip", image_size=32)
    for r in records[:3]:
        px = vqa.preprocess(read_image(root / "JPEGImages" / f"{r['image']}.jpg"))
        questions = expand_questions(DEFAULT_QUESTIONS, r["class"])
        assert [q for _, q in questions] == [q for q, _ in r["fg"] + r["bg"]]
        assert [vqa.answer_one(px, q) for _, q in questions] == [a for _, a in r["fg"] + r["bg"]]


@pytest.mark.slow
def test_no_qape_skips_the_step_and_fg_only_groups_get_the_no_qape_bg(tmp_path):
    """qape.no_qape: qape is skipped (no corpus, no VQA model loaded) and text_feats makes FG = the class,
    BG = "no {class}" from the labels; an FG-only group set asks only its questions and gets the same BG."""
    work = tmp_path / "work"
    run_sample.main(smoke_args(tmp_path, "--steps", "qape,text_feats", "--set", "qape.no_qape=true"))
    assert json.loads((work / "steps" / "qape.skipped.json").read_text())["note"].startswith("qape.no_qape")
    assert not (work / "qape" / "corpus.jsonl").exists() and not (work / "steps" / "qape.done.json").exists()
    meta = json.loads((work / "qape" / "texts.json").read_text())
    ds = VOC12(tmp_path / "toy" / "VOC2012")
    ids = ds.ids("train_aug")
    expected = [(i, k) for i, lab in zip(ids, ds.labels(ids)) for k in np.nonzero(lab)[0]]
    assert [(p["image"], p["class"]) for p in meta["pairs"]] == expected
    for p in meta["pairs"]:
        assert p["fg"] == [] and [meta["texts"][i] for i in p["bg"]] == [f"a photo of no {ds.class_names[p['class']]}."]

    run_sample.main(smoke_args(tmp_path, "--steps", "qape,text_feats", "--set", "qape.groups=[fine_grained]",
                               "--set", f"work_dir={tmp_path / 'fg'}"))
    records = [json.loads(x) for x in (tmp_path / "fg" / "qape" / "corpus.jsonl").read_text().splitlines()]
    assert [(r["image"], r["class"]) for r in records] == [(i, ds.class_names[k]) for i, k in expected]
    assert all([q for q, _ in r["fg"]] == [t.format(r["class"]) for t in DEFAULT_QUESTIONS["fine_grained"]]
               and r["bg"] == [] for r in records)
    meta = json.loads((tmp_path / "fg" / "qape" / "texts.json").read_text())
    assert all([meta["texts"][i] for i in p["bg"]] == [f"a photo of no {ds.class_names[p['class']]}."]
               for p in meta["pairs"])
