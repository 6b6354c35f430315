"""The activation a CLIP is built with must be the one its weights were trained with (net/clip.py quick_gelu_for).

OpenAI's CLIPs use QuickGELU x·σ(1.702x); open_clip's ``ViT-L-14`` defaults to GELU and switches only for
the ``openai`` tag, so a local file of OpenAI's weights used to run with GELU: every feature wrong.
"""
from __future__ import annotations

import json

import open_clip
import pytest
import torch

from net.clip import is_torchscript_archive, load_clip, quick_gelu_for
from tool.toy.tiny_models import tiny_clip_config

T = torch.linspace(-3.0, 3.0, 13)
QUICK_GELU_T = T * torch.sigmoid(1.702 * T)          # OpenAI's activation, written out
GELU_T = 0.5 * T * (1.0 + torch.erf(T / 2 ** 0.5))   # the exact GELU


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny CLIP architecture file, its random weights as a plain state dict and as a TorchScript archive
    (the format of OpenAI's ``ViT-L-14.pt``)."""
    d = tmp_path_factory.mktemp("qg")
    arch = d / "tiny-qg-arch.json"
    arch.write_text(json.dumps(tiny_clip_config()))
    torch.manual_seed(0)
    model = open_clip.CLIP(**tiny_clip_config(), quick_gelu=True).eval()
    torch.save(model.state_dict(), d / "weights.pt")
    torch.jit.script(model).save(str(d / "openai_format.pt"))
    return arch, d / "weights.pt", d / "openai_format.pt", model


def _activations(clip) -> list[torch.nn.Module]:
    blocks = [*clip.model.visual.transformer.resblocks, *clip.model.transformer.resblocks]
    return [b.mlp.gelu for b in blocks]


def test_torchscript_archive_is_recognised(tiny):
    _, plain, jit, _ = tiny
    assert is_torchscript_archive(jit) and not is_torchscript_archive(plain)


def test_openai_architecture_rules_without_building(tiny, tmp_path):
    _, plain, jit, _ = tiny
    assert quick_gelu_for("ViT-L-14", "openai", None) is True
    assert quick_gelu_for("ViT-L-14", "laion2b_s32b_b82k", None) is False
    assert quick_gelu_for("ViT-L-14", str(jit), None) is True         # OpenAI's release format
    assert quick_gelu_for("ViT-L-14", str(plain), True) is True
    assert quick_gelu_for("ViT-L-14", str(plain), False) is False
    assert quick_gelu_for("ViT-L-14-quickgelu", str(plain), None) is True
    with pytest.raises(ValueError, match=r"clip\.pretrained=.*set clip\.quick_gelu: true for OpenAI"):
        quick_gelu_for("ViT-L-14", str(plain), None)
    with pytest.raises(ValueError, match=r"clip\.quick_gelu=false contradicts .*'openai'"):
        quick_gelu_for("ViT-L-14", "openai", False)
    with pytest.raises(ValueError, match=r"clip\.quick_gelu=false, but .*TorchScript"):
        quick_gelu_for("ViT-L-14", str(jit), False)
    # the config: ViT-L-14 + a local file of OpenAI's weights is refused before anything is built
    with pytest.raises(ValueError, match=r"clip\.quick_gelu"):
        load_clip("ViT-L-14", str(plain))


def test_activation_values_follow_the_weights(tiny):
    arch, plain, jit, ref = tiny
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = ref.encode_image(x)
    gelu_ref = open_clip.CLIP(**tiny_clip_config(), quick_gelu=False).eval()
    gelu_ref.load_state_dict(ref.state_dict())
    with torch.no_grad():
        gelu_out = gelu_ref.encode_image(x)
    assert (want - gelu_out).abs().max() > 1e-3          # the two activations really give other features

    from_archive = load_clip(str(arch), str(jit))          # TorchScript: QuickGELU without being told
    declared = load_clip(str(arch), str(plain), quick_gelu=True)
    undeclared = load_clip(str(arch), str(plain))         # not an OpenAI architecture: its own GELU
    for clip, expect in ((from_archive, QUICK_GELU_T), (declared, QUICK_GELU_T), (undeclared, GELU_T)):
        for act in _activations(clip):
            torch.testing.assert_close(act(T), expect, atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(from_archive.model.encode_image(x), want, atol=1e-6, rtol=0)
        torch.testing.assert_close(declared.model.encode_image(x), want, atol=1e-6, rtol=0)
        torch.testing.assert_close(undeclared.model.encode_image(x), gelu_out, atol=1e-6, rtol=0)


def test_model_folder_declaration_must_agree(tmp_path):
    from tool.toy.tiny_models import write_tiny_clip

    folder = write_tiny_clip(tmp_path / "clip")              # its open_clip_config.json: no quick_gelu
    assert all(isinstance(a, torch.nn.GELU) for a in _activations(load_clip(str(folder), quick_gelu=False)))
    with pytest.raises(ValueError, match=r"clip\.quick_gelu=true contradicts .*open_clip_config\.json"):
        load_clip(str(folder), quick_gelu=True)
