"""CLIP loading and text features (net/clip.py) on a tiny open_clip model written by tool.toy.tiny_models."""
from __future__ import annotations

import json
import re

import open_clip
import pytest
import torch
from safetensors.torch import load_file

from net.clip import clip_id, encode_texts, load_clip
from tool.toy.tiny_models import tiny_clip_config, write_tiny_clip

TEXTS = ["a photo of cat.", "a photo of tree.", "a photo of dining table.", "a photo of no train."]


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("models") / "tiny_clip")


@pytest.fixture(scope="module")
def clip(clip_dir):
    return load_clip(str(clip_dir), device="cpu")


def test_tiny_clip_round_trip(clip_dir, clip):
    saved = load_file(str(clip_dir / "open_clip_model.safetensors"))
    state = clip.model.state_dict()
    assert set(saved) == set(state)
    assert all(torch.equal(state[k], v) for k, v in saved.items())
    assert not any(p.requires_grad for p in clip.model.parameters()) and not clip.model.training
    assert clip.image_size == 64 and clip.embed_dim == 32
    assert clip.mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert clip.std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert clip.model.encode_image(torch.zeros(2, 3, 64, 64)).shape == (2, 32)


def test_written_tiny_clip_is_deterministic(tmp_path, clip_dir):
    other = write_tiny_clip(tmp_path / "again")
    a = load_file(str(clip_dir / "open_clip_model.safetensors"))
    b = load_file(str(other / "open_clip_model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = load_file(str(write_tiny_clip(tmp_path / "seed1", seed=1) / "open_clip_model.safetensors"))
    assert not torch.equal(a["text_projection"], c["text_projection"])


def test_encode_texts_normalised_and_equal_to_reference(clip):
    feats = encode_texts(clip.model, clip.tokenizer, TEXTS, device="cpu", batch_size=3)
    assert feats.shape == (4, 32) and feats.dtype == torch.float32
    torch.testing.assert_close(feats.norm(dim=-1), torch.ones(4))
    with torch.no_grad():
        raw = clip.model.encode_text(open_clip.tokenize(TEXTS))  # the plain open_clip call
    torch.testing.assert_close(feats, raw / raw.norm(dim=-1, keepdim=True))
    assert torch.equal(feats, encode_texts(clip.model, clip.tokenizer, TEXTS, device="cpu", batch_size=3))
    torch.testing.assert_close(feats, encode_texts(clip.model, clip.tokenizer, TEXTS, device="cpu", batch_size=1))
    assert not torch.allclose(feats[0], feats[1])
    assert encode_texts(clip.model, clip.tokenizer, [], device="cpu").shape == (0, 32)


def test_local_dir_schema_and_json_config_load_the_same_model(clip_dir, clip, tmp_path):
    ref = encode_texts(clip.model, clip.tokenizer, TEXTS)
    via_schema = load_clip(f"local-dir:{clip_dir}")
    torch.testing.assert_close(encode_texts(via_schema.model, via_schema.tokenizer, TEXTS), ref, rtol=0, atol=0)
    arch = tmp_path / "tiny-test-arch.json"
    arch.write_text(json.dumps(tiny_clip_config()))
    via_json = load_clip(str(arch), str(clip_dir / "open_clip_model.safetensors"))
    torch.testing.assert_close(encode_texts(via_json.model, via_json.tokenizer, TEXTS), ref, rtol=0, atol=0)
    assert via_json.id != clip.id


def test_missing_weights_name_the_config_key(clip_dir, tmp_path):
    no_weights = tmp_path / "no_weights"
    no_weights.mkdir()
    (no_weights / "open_clip_config.json").write_text((clip_dir / "open_clip_config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"ritc\.clip\.model"):
        load_clip(str(no_weights), config_key="ritc.clip")
    with pytest.raises(FileNotFoundError, match=r"clip\.pretrained"):
        load_clip("ViT-B-32", str(tmp_path / "missing.pt"))
    with pytest.raises(FileNotFoundError, match=r"clip\.pretrained"):
        load_clip("ViT-B-32", None)
    with pytest.raises(FileNotFoundError, match=r"clip\.model"):
        load_clip(str(tmp_path / "nope.json"), str(clip_dir / "open_clip_model.safetensors"))
    with pytest.raises(ValueError, match=r"clip\.model='ViT-Q-99'"):
        load_clip("ViT-Q-99", "openai")


def test_clip_id():
    assert clip_id("ViT-L-14", "openai") == "ViT-L-14_openai"
    assert clip_id("ViT-L/14", "openai") == "ViT-L-14_openai"
    a = clip_id("ViT-B-16", "/ckpt/ovseg_clip_l_9a1909.pth")
    b = clip_id("ViT-B-16", "/other/ovseg_clip_l_9a1909.pth")
    assert a.startswith("ViT-B-16_ovseg_clip_l_9a1909-") and a != b
    for cid in (a, clip_id("/models/tiny clip/"), clip_id("hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K")):
        assert re.fullmatch(r"[A-Za-z0-9._-]+", cid), cid
    assert clip_id("/models/tiny_clip") == clip_id("/models/tiny_clip", "ignored")


def test_missing_model_folder_names_the_config_key(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"clip\.model.*no such CLIP model folder"):
        load_clip(str(tmp_path / "no_such_clip"), "openai")
