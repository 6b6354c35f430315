"""The toy VLP (the tool.toy.vlp package): training answers and texts by hand, a tiny training run whose models load
through the real loaders, caching, and the VQA measurement on hand-made answers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from net.qape_text import DEFAULT_QUESTIONS
from tool.toy.vlp import blip as vlp_blip
from tool.toy.vlp import cache as vlp_cache
from tool.toy.vlp import clip as vlp_clip
from tool.toy.vlp import evaluate as vlp_eval
from tool.toy.vlp import records as vlp_records
from tool.toy.vlp.cache import ensure_toy_vlp
from tool.toy.vlp.evaluate import evaluate_toy_vqa
from tool.toy.vlp.params import ToyVlpParams
from tool.toy.vlp.texts import clip_texts, toy_vqa_answers
from tool.toy.world import generate_toy_world

META = {
    "scene": "railway",
    "objects": [
        {"class": "train", "class_name": "train", "subtype": "freight train", "bbox": [0, 10, 20, 30], "color": "red"},
        {"class": "train", "class_name": "train", "subtype": "steam locomotive", "bbox": [30, 0, 90, 40],
         "color": "black"},
        {"class": "diningtable", "class_name": "dining table", "subtype": "round table", "bbox": [0, 0, 5, 5],
         "color": "white"},
    ],
    "things": ["sky", "gravel", "rails", "sleepers"],
}

TINY = ToyVlpParams(seed=3, max_images=6, clip_image_size=32, clip_width=8, clip_text_width=32,
                    clip_text_layers=1, clip_embed_dim=16, clip_context_length=16, clip_steps=2, clip_batch=8,
                    blip_image_size=32, blip_width=32, blip_layers=1, blip_steps=2, blip_images=2, blip_questions=3)


def test_answers_by_hand():
    got = toy_vqa_answers(META, "train")
    assert [g for g, _, _ in got] == ["fine_grained"] * 2 + ["alias"] * 4 + ["surrounding"] * 7 + ["scene"] * 3
    assert got[0] == ("fine_grained", "What kind of train is in the photo?", "steam locomotive")   # the larger one
    # aliases of train: locomotive, railway train, cycling over the 4 alias templates
    assert [a for g, _, a in got if g == "alias"] == ["locomotive", "railway train", "locomotive", "railway train"]
    surrounding = {q: a for g, q, a in got if g == "surrounding"}
    # up: pole (absent) then sky; down: rails; side: gravel, rails, sleepers, gravel in turn (pole absent)
    assert surrounding == {
        "what is above the train?": "sky", "what is under the train?": "rails", "what is behind the train?": "sky",
        "what is around the train?": "gravel", "what is next to the train?": "rails",
        "what is the left side of train?": "sleepers", "what is the right side of train?": "gravel"}
    assert [a for g, _, a in got if g == "scene"] == ["railway"] * 3
    table = toy_vqa_answers(META, "dining table")
    assert table[0][2] == "round table" and table[2][1] == "What is this dining table also called?"
    assert table[2][2] == "table" and table[3][2] == "dining table"
    with pytest.raises(ValueError, match="no 'cat'"):
        toy_vqa_answers(META, "cat")


def test_clip_texts():
    t = clip_texts()
    assert len(t.texts) == len(set(t.texts)) and all(x.startswith("a photo of ") for x in t.texts)
    boat, canoe = 3, 1       # XML index of boat; its sub-types are sailboat, canoe, ship
    pos = {t.texts[i] for i in np.flatnonzero(t.fg_pos[boat][canoe])}
    # the class name, its aliases and the sub-type, as text_feats post-processes answers (fg_texts)
    assert pos == {"a photo of boat.", "a photo of ship boat.", "a photo of vessel boat.", "a photo of canoe boat."}
    assert {t.texts[i] for i in np.flatnonzero(t.fg_ignore[boat][canoe])} == {"a photo of sailboat."}
    bg = {t.texts[i] for i in np.flatnonzero(t.bg_pos("railway", ["rails", "sky"]))}
    assert bg == {"a photo of railway.", "a photo of rails.", "a photo of rail.", "a photo of sky."}


def test_contrastive_loss_by_hand():
    img = torch.tensor([[1.0, 0.0]])
    txt = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    pos = torch.tensor([[True, False, False]])
    ign = torch.tensor([[False, False, True]])
    loss = vlp_clip.contrastive_loss(img, txt, torch.tensor(2.0), pos, ign)
    i2t = -np.log(np.exp(2) / (np.exp(2) + np.exp(0)))        # text 2 left out of the softmax
    t2i = 0.0                                                  # one image: its softmax over images is 1
    assert float(loss) == pytest.approx(0.5 * (i2t + t2i), rel=1e-6)


def test_evaluate_toy_vqa_by_hand():
    records = [
        {"image": "a", "class": "train",
         "fg": [["What kind of train is in the photo?", "freight train"],        # true sub-type
                ["What type of train is in the photo?", "passenger train"],     # not in this image
                ["What is this train also called?", "locomotive"]],             # alias
         "bg": [["what is under the train?", "rails"],                          # thing
                ["what is above the train?", "pole"],                           # not drawn here
                ["what scene is the train in?", "railway"]]},                   # scene
        {"image": "a", "class": "dining table",
         "fg": [["What kind of dining table is in the photo?", "round  table"]],
         "bg": [["what is next to the dining table?", "sleeper"]]},             # singular of "sleepers"
    ]
    got = evaluate_toy_vqa(records, {"a": META})
    assert got["fg_share"] == round(3 / 4, 4) and got["fg_answers"] == 4
    assert got["bg_share"] == round(3 / 4, 4) and got["bg_answers"] == 4
    assert got["by_group"] == {"alias": 1.0, "fine_grained": round(2 / 3, 4), "scene": 1.0,
                               "surrounding": round(2 / 3, 4)}
    assert evaluate_toy_vqa([], {})["fg_share"] is None
    with pytest.raises(ValueError, match="has no 'cat'"):
        evaluate_toy_vqa([{"image": "a", "class": "cat", "fg": [], "bg": []}], {"a": META})


def test_name_matching():
    assert vlp_eval._names("double - decker bus", ["double-decker bus"])
    assert vlp_eval._names("the rails", ["rails"]) and vlp_eval._names("rail", ["rails"])
    assert not vlp_eval._names("trail", ["rail"]) and not vlp_eval._names("grass", ["grass tuft"])


@pytest.fixture(scope="module")
def trained(module_tmp):
    tmp = module_tmp
    root = tmp / "VOC2012"
    generate_toy_world(root, seed=0, num_train=4, num_val=2, num_extra_aug=2, image_size=(48, 56), max_objects=2)
    out = tmp / "vlp"
    return root, out, ensure_toy_vlp(root, out, TINY, parallel=False)


def test_tiny_training_loads_through_real_loaders(trained):
    from net.blip_vqa import BlipVQA
    from net.clip import encode_texts, load_clip

    _, out, summary = trained
    assert summary["num_images"] == 6 and summary["params"]["blip_steps"] == 2
    from tool.engine.events import read_events
    for name in ("toy_clip", "toy_blip"):     # records at step 1 (every 100) and the last, step 2
        assert [r["iter"] for r in read_events(out / "events" / f"{name}.jsonl")[0]] == [1, 2], name
    assert np.isfinite(summary["metrics"]["clip_final_loss"]) and np.isfinite(summary["metrics"]["blip_final_loss"])
    assert summary["world"]["num_train"] == 4 and summary["world"]["num_extra_aug"] == 2   # 6 = train + extra

    vqa = BlipVQA.from_pretrained(out / "blip", image_size=32, max_length=4)
    px = vqa.preprocess_batch([np.zeros((48, 56, 3), np.uint8)])
    assert torch.allclose(px[0], vlp_blip.blip_pixels(np.zeros((48, 56, 3), np.uint8), 32))
    embeds = vqa.encode_images(px)
    answers = vqa.answer(embeds, [(0, "What kind of boat is in the photo?"), (0, "what scene is the boat in?")])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    unk = vqa.tokenizer.convert_tokens_to_ids("[UNK]")
    for name in ("tv monitor", "double-decker bus", "grass tuft"):     # every template, some odd words
        for template in (t for ts in DEFAULT_QUESTIONS.values() for t in ts):
            assert unk not in vqa.tokenize(template.format(name)), template.format(name)

    clip = load_clip(str(out / "clip"), None)
    assert clip.image_size == 32 and clip.embed_dim == 16
    feats = encode_texts(clip.model, clip.tokenizer, ["a photo of canoe boat.", "a photo of rail."])
    assert feats.shape == (2, 16) and torch.allclose(feats.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert clip.model.encode_image(torch.zeros(1, 3, 32, 32)).shape == (1, 16)


def test_vit_tower(trained, tmp_path):
    from net.clip import load_clip

    root, _, _ = trained
    p = ToyVlpParams(**{**TINY.__dict__, "clip_tower": "vit", "clip_width": 32, "clip_layers": 1})
    vlp_clip.train_toy_clip(vlp_records.load_records(root, vlp_records.read_split(root, "train")), tmp_path / "clip", p)
    clip = load_clip(str(tmp_path / "clip"), None)
    assert clip.image_size == 32 and clip.model.visual.patch_size == (8, 8)
    with pytest.raises(ValueError, match="clip_tower"):
        vlp_clip.toy_clip_config(ToyVlpParams(clip_tower="convnext"))


def test_cached_second_call_does_not_retrain(trained, monkeypatch, tmp_path):
    import shutil

    root, out, summary = trained

    def boom(*args, **kwargs):
        raise AssertionError("retrained although cached")

    monkeypatch.setattr(vlp_cache, "train_toy_clip", boom)
    monkeypatch.setattr(vlp_cache, "train_toy_blip", boom)
    assert ensure_toy_vlp(root, out, TINY, parallel=False) == summary
    # other parameters: the marker no longer matches, so it trains again (here: into the stub)
    copy = tmp_path / "vlp"
    shutil.copytree(out, copy)
    with pytest.raises(AssertionError, match="retrained"):
        ensure_toy_vlp(root, copy, ToyVlpParams(**{**TINY.__dict__, "seed": 4}), parallel=False)
    assert not (copy / vlp_cache.MARKER).exists()     # a half-redone cache is never taken for a complete one


@pytest.mark.slow
def test_deterministic_and_parallel(trained, tmp_path):
    """BLIP trained in a second process while this one trains CLIP: the same bytes as one after the other."""
    root, out, summary = trained
    again = ensure_toy_vlp(root, tmp_path / "vlp", TINY, parallel=True)
    for f in ("clip/open_clip_model.safetensors", "blip/model.safetensors"):
        assert (out / f).read_bytes() == (tmp_path / "vlp" / f).read_bytes(), f
    assert again["metrics"]["blip_final_loss"] == summary["metrics"]["blip_final_loss"]


def test_region_table(trained):
    """Object regions carry class texts; background and context rings carry scene/thing texts and no
    object pixel; a batch has the three kinds in their shares."""
    root, _, _ = trained
    recs = vlp_records.load_records(root, vlp_records.read_split(root, "train"))
    texts = clip_texts()
    data = vlp_clip._ClipData(recs, texts, 32)
    lo, hi = data.ranges["ring"]
    assert hi > lo and data.ranges["object"][0] == 0
    for r in range(lo, hi):
        rec = recs[int(data.img[r])]
        ring = data.masks[data.rows[r, 0], 0].numpy() > 0
        assert ring.any() and not (ring & ~vlp_records.background_mask(rec)).any()
        assert (data.pos[r].numpy() == texts.bg_pos(rec.meta["scene"], rec.meta["things"])).all()
    o = data.ranges["object"][0]
    rec = recs[int(data.img[o])]
    first = next(ob for ob, m in zip(rec.meta["objects"], vlp_records.object_masks(rec)) if m.sum() >= 16)
    assert data.pos[o, texts.index[f"a photo of {first['class_name']}."]]
    images, pos, ign = data.batch(20, torch.Generator().manual_seed(0))
    assert images.shape == (20, 3, 32, 32) and pos.shape == ign.shape == (20, len(texts.texts))
    assert not (pos & ign).any() and pos.any(1).all()


def test_measurements_run(trained):
    root, out, _ = trained
    corpus, got = vlp_eval.run_toy_vqa(out, root, "val")
    val = vlp_records.load_records(root, vlp_records.read_split(root, "val"))
    pairs = sum(len({o["class_name"] for o in r.meta["objects"]}) for r in val)
    assert len(corpus) == pairs and got["fg_answers"] == 6 * pairs and got["bg_answers"] == 10 * pairs
    assert all(0 <= got[k] <= 1 for k in ("fg_share", "bg_share"))
    z = vlp_eval.clip_zero_shot(out, root, "val")
    visible = sum(int(m.sum() >= 16) for r in val for m in vlp_records.object_masks(r))
    assert z["regions"] == visible and all(0 <= z[k] <= 1 for k in ("accuracy", "fg_over_bg", "ring_over_fg",
                                                                          "no_qape_ring_over_fg"))
    assert -1 <= z["no_text_cos"] <= 1


def test_a_demo_config_trains_the_vlp_through_the_cache(tmp_path, monkeypatch):
    """``toy.vlp_dir`` reaches ``ensure_toy_vlp`` with the world's root and seed (tool.toy.ensure)."""
    from tool.engine.config import Config, DatasetConfig, ToyConfig
    from tool.toy.ensure import ensure_toy_world

    calls = []
    monkeypatch.setattr(vlp_cache, "ensure_toy_vlp", lambda root, out, p: calls.append((root, out, p)))
    cfg = Config(dataset=DatasetConfig(root=str(tmp_path / "VOC2012")),
                 toy=ToyConfig(generate=True, seed=5, num_train=2, num_val=1, image_size=(48, 56),
                               vlp_dir=str(tmp_path / "vlp")))
    ensure_toy_world(cfg)
    assert calls == [(tmp_path / "VOC2012", tmp_path / "vlp", ToyVlpParams(seed=5))]
