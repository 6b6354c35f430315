"""BLIP VQA wrapper (net/blip_vqa.py) on a tiny BLIP written by tool.toy.tiny_models and loaded from disk.

The reference for every answer is ``BlipVQA.answer_one``: HF's plain
``model.generate(pixel_values=..., input_ids=...)`` for one image and one question.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from net.blip_vqa import CLIP_MEAN, CLIP_STD, BlipVQA
from net.qape_text import DEFAULT_QUESTIONS, expand_questions
from tool.toy.tiny_models import write_tiny_blip

SIZE = 48  # not the tiny model's native 32: exercises the position-embedding interpolation too


pytestmark = pytest.mark.usefixtures("one_thread")   # tests/conftest.py


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return write_tiny_blip(tmp_path_factory.mktemp("models") / "tiny_blip")


@pytest.fixture(scope="module")
def vqa(blip_dir):
    return BlipVQA.from_pretrained(blip_dir, device="cpu", image_size=SIZE)


def random_images(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(int(rng.integers(20, 90)), int(rng.integers(20, 90)), 3), dtype=np.uint8)
            for _ in range(n)]


def test_preprocess_matches_official_torchvision_pipeline(vqa):
    from torchvision import transforms
    from torchvision.transforms.functional import InterpolationMode

    # The official get_blip_vqa_results.load_image transform, applied to a PIL image.
    official = transforms.Compose([
        transforms.Resize((SIZE, SIZE), interpolation=InterpolationMode.BICUBIC),
        transforms.ToTensor(),
        transforms.Normalize(CLIP_MEAN, CLIP_STD),
    ])
    img = random_images(1, seed=3)[0]
    ours = vqa.preprocess(img)
    assert ours.shape == (3, SIZE, SIZE) and ours.dtype == torch.float32
    torch.testing.assert_close(ours, official(Image.fromarray(img)), rtol=0, atol=1e-5)


def test_preprocess_rejects_non_uint8_rgb(vqa):
    with pytest.raises(ValueError, match="uint8 RGB"):
        vqa.preprocess(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        vqa.preprocess(np.zeros((8, 8), np.uint8))


def test_encode_images_shape_and_batch_invariance(vqa):
    px = vqa.preprocess_batch(random_images(3))
    emb = vqa.encode_images(px)
    patches = (SIZE // 8) ** 2  # tiny model: patch 8
    assert emb.shape == (3, patches + 1, 32)
    torch.testing.assert_close(emb[1:2], vqa.encode_images(px[1:2]))


def test_batched_answers_equal_one_question_at_a_time(vqa):
    images = random_images(3)
    px = vqa.preprocess_batch(images)
    classes = ("cat", "dining table", "tv monitor")
    items = [(i, q) for i in range(len(images)) for c in classes for _, q in expand_questions(DEFAULT_QUESTIONS, c)]
    # Preconditions that make the comparison meaningful: questions of several token lengths (the
    # padding trap), and answers that depend on image and question (a wrong pairing would show).
    assert len({len(vqa.tokenize(q)) for _, q in items}) >= 3
    single = [vqa.answer_one(px[i], q) for i, q in items]
    assert len(set(single)) > len(single) // 4
    assert len({len(a.split()) for a in single}) >= 3  # answers end at different steps

    embeds = vqa.encode_images(px)
    for batch_size in (7, 512):  # 7: batches split length groups and mix images
        assert vqa.answer(embeds, items, batch_size=batch_size) == single
    # Items in another order (and an image asked twice) come back in item order.
    shuffled = [items[k] for k in np.random.default_rng(1).permutation(len(items))[:40]]
    expected = [single[items.index(it)] for it in shuffled]
    assert vqa.answer(embeds, shuffled, batch_size=16) == expected


def test_answer_checks_image_index_and_batch_size(vqa):
    embeds = vqa.encode_images(vqa.preprocess_batch(random_images(2)))
    with pytest.raises(IndexError, match="image index 2"):
        vqa.answer(embeds, [(2, "what is above the cat?")])
    with pytest.raises(ValueError, match="batch_size"):
        vqa.answer(embeds, [(0, "what is above the cat?")], batch_size=0)
    assert vqa.answer(embeds, []) == []


def test_loaded_model_is_the_saved_one(blip_dir, vqa):
    from safetensors.torch import load_file

    saved = load_file(str(blip_dir / "model.safetensors"))
    state = vqa.model.state_dict()
    assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in vqa.model.parameters()) and not vqa.model.training
    assert vqa.generate_kwargs["num_beams"] == 3 and vqa.generate_kwargs["max_length"] == 10


def test_missing_model_folder_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"qape\.vqa_model.*huggingface-cli download"):
        BlipVQA.from_pretrained(tmp_path / "no_such_blip", device="cpu")


def test_folder_without_weights_names_the_config_key(blip_dir, tmp_path):
    broken = tmp_path / "blip_no_weights"
    shutil.copytree(blip_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=r"my\.key"):
        BlipVQA.from_pretrained(broken, device="cpu", config_key="my.key")


def test_precision_context_runs_blip_in_bf16(blip_dir, vqa):
    """``qape.precision: bfloat16`` reaches BLIP as the runtime's autocast (CPU included): the image embeddings
    differ from the float32 ones by bf16's rounding (float32 alone would differ by ~1e-7), and the weights stay
    float32."""
    from tool.engine.runtime import autocast

    cpu = torch.device("cpu")
    b16 = BlipVQA.from_pretrained(blip_dir, device="cpu", image_size=SIZE,
                                  precision=lambda: autocast("bfloat16", cpu, key="qape.precision"))
    px = vqa.preprocess_batch(random_images(3, seed=5))
    e32, e16 = vqa.encode_images(px), b16.encode_images(px)
    assert {p.dtype for p in b16.model.parameters()} == {torch.float32}
    # 2 ViT blocks of bf16 products (unit roundoff 2^-8 = 0.0039) and one final rounding: a few units, not 0
    rel = float((e16.float() - e32).norm() / e32.norm())
    assert 2 ** -12 < rel < 8 * 2 ** -8, rel
