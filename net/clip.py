"""Frozen CLIP (open_clip) for RITC and the QAPE text features (paper §3.3, Eq. 3–4).

:func:`load_clip` accepts what an open_clip user would write:

- a built-in architecture and a weight tag or checkpoint file: ``("ViT-L-14", "openai")``,
  ``("ViT-B-16", "/ckpt/ovseg_clip_l_9a1909.pth")``;
- a model folder in the hf-hub layout (``open_clip_config.json`` + ``open_clip_model.safetensors``,
  what ``huggingface-cli download`` of an open_clip repo gives; ``pretrained`` unused) — also
  spelled ``local-dir:<folder>``; :func:`tool.toy.tiny_models.write_tiny_clip` writes one;
- ``hf-hub:org/repo`` (from the HF cache or the network);
- a JSON architecture file (``{"embed_dim", "vision_cfg", "text_cfg"}``) plus a checkpoint file in
  ``pretrained``.

Activation (docs/design.md §5, CLIP). OpenAI's CLIPs were trained with QuickGELU, open_clip's
architectures of the same names default to GELU, and open_clip switches only for the ``openai`` tag:
a local copy of OpenAI's weights would silently run with the wrong activation. :func:`quick_gelu_for`
decides from what the weights say: the tag's record; OpenAI's own TorchScript archive (``ViT-L-14.pt``
as ``clip.load`` downloads it) means QuickGELU; a plain state dict for an architecture OpenAI released
says nothing, so ``clip.quick_gelu`` must declare it (an error otherwise).

The model is frozen (no parameter requires grad) and in eval mode; gradients still flow to its
*inputs*, which is what RITC needs. :func:`encode_texts` gives the L2-normalised text features
(Eq. 3–4 ``f_t``); :func:`clip_id` names the cached text-feature file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import torch
import torch.nn.functional as F

if TYPE_CHECKING:   # open_clip loads lazily (a second of import time); mypy reads its source
    from open_clip import CLIP, CustomTextCLIP

    # What load_clip returns: both have encode_image / encode_text and the ``visual`` tower.
    OpenClipModel: TypeAlias = CLIP | CustomTextCLIP

log = logging.getLogger(__name__)

_LOCAL_DIR = "local-dir:"
_HF_HUB = "hf-hub:"
_FILE_SUFFIXES = (".json", ".pt", ".pth", ".bin", ".safetensors", ".npz")
# Integers OpenAI's TorchScript archives hold next to the weights; not parameters.
_OPENAI_META_KEYS = ("input_resolution", "context_length", "vocab_size")


@dataclass(frozen=True)
class ClipModel:
    """A loaded CLIP and what its users need besides the module.

    model: open_clip ``CLIP`` (frozen, eval); ``model.encode_image(x [N, 3, S, S])`` -> [N, D],
    ``model.encode_text(tokens [T, C])`` -> [T, D] (both unnormalised).
    tokenizer: ``tokenizer(list[str]) -> LongTensor [T, context_length]``.
    image_size: S, the input side the image tower expects. mean / std: its pixel normalisation
    (RGB, for pixels in [0, 1]). embed_dim: D. id: :func:`clip_id` of the source.
    """

    model: OpenClipModel
    tokenizer: Callable[..., torch.Tensor]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embed_dim: int
    id: str


def clip_id(model_name: str, pretrained: str | None = None) -> str:
    """A filename-safe id of a CLIP source, e.g. ``ViT-L-14_openai`` or ``tiny_clip-1a2b3c4d``.

    Tags keep their readable name; a path is reduced to its last component plus 8 hex digits of a
    hash of the path as given, so two different checkpoints never share a feature file.
    """
    def part(s: str) -> str:
        schema = next((p for p in (_LOCAL_DIR, _HF_HUB) if s.startswith(p)), "")
        body = s[len(schema):]
        if not schema and not os.path.exists(body) and re.fullmatch(r"[A-Za-z0-9_-]+/\d+", body):
            body = body.replace("/", "-")  # OpenAI spelling "ViT-L/14" of open_clip's "ViT-L-14"
        is_path = (schema == _LOCAL_DIR or "/" in body or "\\" in body or os.path.exists(body)
                   or Path(body).suffix in _FILE_SUFFIXES)
        if is_path:
            stem = Path(body.rstrip("/\\")).stem or "model"
            body = f"{stem}-{hashlib.sha1(s.encode('utf-8')).hexdigest()[:8]}"
        return re.sub(r"[^A-Za-z0-9._-]+", "-", body).strip("-.") or "model"

    name = part(model_name)
    if pretrained and not _is_model_folder(model_name):
        name = f"{name}_{part(pretrained)}"
    return name


def _is_model_folder(model_name: str) -> bool:
    """True when ``model_name`` names a whole model (schema or folder), so ``pretrained`` is unused."""
    if model_name.startswith((_LOCAL_DIR, _HF_HUB)):
        return True
    if model_name.endswith(".json") or re.fullmatch(r"[A-Za-z0-9_-]+/\d+", model_name):
        return False  # an architecture file, or the OpenAI spelling "ViT-L/14"
    return Path(model_name).expanduser().is_dir() or "/" in model_name or model_name.startswith(("~", "."))


def _missing(config_key: str, what: str, detail: str) -> FileNotFoundError:
    section = config_key.rsplit(".", 1)[0] if config_key.endswith((".model", ".pretrained")) else config_key
    return FileNotFoundError(
        f"{config_key}: {what}. {detail} On a machine with internet, fetch the weights (e.g. "
        "`python -c \"import open_clip; open_clip.create_model('ViT-L-14', pretrained='openai')\"` fills "
        "open_clip's cache, or `huggingface-cli download <org/repo> --local-dir <folder>` for an open_clip hub "
        f"repo), copy them here and set {section}.model / {section}.pretrained to the folder or file."
    )


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` is a TorchScript zip archive (OpenAI's CLIP release format), not a pickled state dict.

    Both are zip files; only TorchScript archives hold ``<name>/constants.pkl`` and ``<name>/code/``.
    """
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def quick_gelu_for(name: str, pretrained: str, declared: bool | None, config_key: str = "clip") -> bool:
    """Whether the built-in architecture ``name`` with weights ``pretrained`` (a tag or a file) needs QuickGELU.

    ``declared`` is ``clip.quick_gelu`` (None = not set). Rules, in order: a tag decides by open_clip's
    record of it (a contradicting declaration is an error); an architecture whose config already says
    QuickGELU keeps it; OpenAI's TorchScript archive means QuickGELU (declaring false is an error); else
    the declaration; an undeclared plain state dict for an architecture OpenAI released (``ViT-L-14``,
    ``RN50`` ...) is ambiguous (OpenAI's weights: QuickGELU; LAION / DataComp weights: GELU): ValueError.
    """
    import open_clip

    key = f"{config_key}.quick_gelu"
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if tag_cfg:
        tag_qg = bool(tag_cfg.get("quick_gelu", False))
        if declared is not None and declared != tag_qg:
            raise ValueError(f"{key}={str(declared).lower()} contradicts the weights of {name!r} tag {pretrained!r} "
                             f"(trained with {'QuickGELU' if tag_qg else 'GELU'}): set {key}: null")
        return tag_qg
    arch_qg = bool((open_clip.get_model_config(name) or {}).get("quick_gelu", False))
    if arch_qg:
        if declared is False:
            raise ValueError(f"{key}=false contradicts the architecture {name!r} (QuickGELU by name): use "
                             f"{name.removesuffix('-quickgelu')!r} or set {key}: null")
        return True
    if is_torchscript_archive(pretrained):
        if declared is False:
            raise ValueError(f"{key}=false, but {pretrained} is OpenAI's TorchScript release, trained with "
                             f"QuickGELU: set {key}: null")
        return True
    if declared is not None:
        return declared
    if "openai" in open_clip.list_pretrained_tags_by_model(name):
        raise ValueError(
            f"{config_key}.pretrained={pretrained!r}: a state dict for {name!r} does not say which activation its "
            f"weights were trained with (OpenAI's: QuickGELU; LAION / DataComp: GELU); set {key}: true for "
            f"OpenAI's weights, false otherwise")
    return False


def load_clip(
    model_name: str,
    pretrained: str | None = None,
    *,
    device: torch.device | str = "cpu",
    config_key: str = "clip",
    quick_gelu: bool | None = None,
) -> ClipModel:
    """Load a frozen open_clip model (see the module docstring for the accepted sources).

    Missing weights raise ``FileNotFoundError`` naming ``{config_key}.model`` / ``.pretrained``.
    ``quick_gelu`` is ``clip.quick_gelu``: for a built-in architecture :func:`quick_gelu_for` decides
    (``ViT-L-14`` + ``openai`` or + OpenAI's ``ViT-L-14.pt`` get QuickGELU — open_clip itself only warns);
    a model folder's ``open_clip_config.json`` declares it, and a contradicting value is an error.
    """
    import open_clip

    name = os.fspath(model_name)
    pretrained = os.fspath(pretrained) if pretrained else None
    cid = clip_id(name, pretrained)  # from the values as configured, as callers compute it
    declared = quick_gelu
    quick_gelu = False
    kwargs: dict = {}
    jit_weights = None

    if _is_model_folder(name) and not name.startswith(_HF_HUB):
        folder = Path(name.removeprefix(_LOCAL_DIR)).expanduser()
        if not folder.is_dir():
            raise _missing(f"{config_key}.model", f"no such CLIP model folder {str(folder)!r}", "")
        if not (folder / "open_clip_config.json").is_file():
            raise _missing(f"{config_key}.model", f"{str(folder)!r} has no open_clip_config.json",
                           "A CLIP model folder holds open_clip_config.json and open_clip_model.safetensors.")
        weights = [p for ext in ("*.safetensors", "*.bin", "*.pth", "*.pt") for p in folder.glob(ext)]
        if not weights:
            # open_clip would only warn and return a randomly initialised model.
            raise _missing(f"{config_key}.model", f"no weights (*.safetensors / *.bin / *.pth) in {str(folder)!r}", "")
        if pretrained:
            log.warning("%s.pretrained=%r is ignored: the weights come from the folder %s",
                        config_key, pretrained, folder)
        config_file = folder / "open_clip_config.json"
        try:
            folder_cfg = json.loads(config_file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{config_key}.model: {config_file} is not valid JSON ({e}); download the model "
                             "folder again") from e
        folder_qg = bool(folder_cfg.get("model_cfg", {}).get("quick_gelu", False))
        if declared is not None and declared != folder_qg:
            raise ValueError(f"{config_key}.quick_gelu={str(declared).lower()} contradicts "
                             f"{folder / 'open_clip_config.json'} (quick_gelu={str(folder_qg).lower()}): set "
                             f"{config_key}.quick_gelu: null")
        source = f"{_LOCAL_DIR}{folder}"
    elif name.startswith(_HF_HUB):
        if declared is not None:
            log.warning("%s.quick_gelu is ignored for %s: the repository's open_clip_config.json declares it",
                        config_key, name)
        source = name
    else:
        if name.endswith(".json"):
            config_file = Path(name).expanduser()
            if not config_file.is_file():
                raise _missing(f"{config_key}.model", f"architecture file {name!r} not found", "")
            try:   # (parsed here first: open_clip's own parse error would name no file)
                json.loads(config_file.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise ValueError(f"{config_key}.model: {config_file} is not valid JSON ({e})") from e
            # Registers the architecture under the file's stem in open_clip's config registry.
            open_clip.add_model_config(config_file)
            name = config_file.stem
        name = name.replace("/", "-")  # OpenAI spelling "ViT-L/14" -> open_clip's "ViT-L-14"
        if name not in open_clip.list_models():
            raise ValueError(
                f"{config_key}.model={model_name!r}: not an open_clip architecture, model folder or .json config "
                f"(built-in names look like 'ViT-L-14'; see open_clip.list_models())"
            )
        if not pretrained:
            raise _missing(f"{config_key}.pretrained", f"no weights given for {name!r}",
                           "A frozen CLIP needs trained weights: a tag such as 'openai' or a checkpoint file.")
        if not open_clip.get_pretrained_cfg(name, pretrained):
            if not Path(pretrained).expanduser().is_file():
                raise _missing(f"{config_key}.pretrained", f"{pretrained!r} is neither a weight tag of {name!r} "
                               f"nor a file", f"Known tags: {open_clip.list_pretrained_tags_by_model(name)}.")
            pretrained = str(Path(pretrained).expanduser())
        quick_gelu = quick_gelu_for(name, pretrained, declared, config_key)
        source = name
        if Path(pretrained).is_file() and is_torchscript_archive(pretrained):
            jit_weights = pretrained   # open_clip's weights-only torch.load refuses TorchScript: loaded below
        else:
            kwargs["pretrained"] = pretrained

    try:
        model, _, _ = open_clip.create_model_and_transforms(
            source, device=device, force_quick_gelu=quick_gelu, **kwargs
        )
        if jit_weights is not None:
            _load_torchscript_weights(model, jit_weights)
    except Exception as e:   # noqa: BLE001 - torn or foreign weight files (torch, safetensors): named below
        first = (str(e).strip().splitlines() or [""])[0]
        what = f"could not load CLIP {model_name!r} / {pretrained!r} ({type(e).__name__}: {first})"
        raise _missing(f"{config_key}.pretrained", what, "") from e
    if not isinstance(model, (open_clip.CLIP, open_clip.CustomTextCLIP)):   # e.g. a CoCa: other towers' outputs
        raise ValueError(f"{config_key}.model={model_name!r}: open_clip built a {type(model).__name__}, not a CLIP; "
                         "RITC and the text features need a CLIP's image and text towers")
    tokenizer = open_clip.get_tokenizer(source)
    model = model.eval().requires_grad_(False)

    pp = open_clip.get_model_preprocess_cfg(model)
    size = pp["size"]
    image_size = int(size if isinstance(size, int) else size[0])
    with torch.no_grad():
        embed_dim = int(model.encode_text(tokenizer([""]).to(device)).shape[-1])
    log.info("loaded CLIP %s (image %d px, embed dim %d, quick_gelu=%s)", cid, image_size, embed_dim, quick_gelu)
    return ClipModel(
        model=model, tokenizer=tokenizer, image_size=image_size,
        mean=_rgb(pp["mean"], f"{cid} mean"), std=_rgb(pp["std"], f"{cid} std"),
        embed_dim=embed_dim, id=cid,
    )


def _rgb(values: Sequence[float], what: str) -> tuple[float, float, float]:
    """A per-channel RGB triple from open_clip's preprocess config (a list in its JSON)."""
    v = [float(x) for x in values]
    if len(v) != 3:
        raise ValueError(f"CLIP preprocess {what}: expected 3 values (RGB), got {v}")
    return v[0], v[1], v[2]


def _load_torchscript_weights(model: torch.nn.Module, path: str) -> None:
    """Load the weights of OpenAI's TorchScript CLIP archive into the open_clip ``model`` (same parameter names).

    ``torch.jit.load`` runs no pickled Python; the archive's integer meta entries are dropped; strict.
    """
    state = torch.jit.load(path, map_location="cpu").state_dict()
    # A scripted module also lists its non-persistent buffers (the causal ``attn_mask``): not weights.
    transient = {n for n, _ in model.named_buffers()} - set(model.state_dict())
    state = {k: v for k, v in state.items() if k not in _OPENAI_META_KEYS and k not in transient}
    model.load_state_dict(state, strict=True)


@torch.no_grad()
def encode_texts(
    model: OpenClipModel,
    tokenizer: Callable[..., torch.Tensor],
    texts: Sequence[str],
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 256,
) -> torch.Tensor:
    """CLIP text features of ``texts``: fp32 ``[T, D]``, each row L2-normalised (Eq. 3–4 ``f_t``).

    ``texts`` are encoded as given (wrap answers with ``net.qape_text.prompt_text`` first).
    Returns ``[0, D]`` for an empty list.
    """
    if batch_size < 1:
        raise ValueError(f"text feature batch_size must be >= 1, got {batch_size}")
    texts = list(texts)
    if not texts:
        d = model.encode_text(tokenizer([""]).to(device)).shape[-1]
        return torch.zeros(0, d, dtype=torch.float32)
    feats = []
    for start in range(0, len(texts), batch_size):
        tokens = tokenizer(texts[start:start + batch_size]).to(device)  # [B, C]
        feats.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())  # [B, D]
    return torch.cat(feats)  # [T, D]
