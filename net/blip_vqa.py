"""BLIP visual question answering for QAPE (paper §3.2): HF ``BlipForQuestionAnswering`` wrapped for speed.

The official code asks one question per BLIP call, so the ViT-B@480 image encoder runs once per
question (16 questions × every (image, class) pair). Here an image is encoded once
(:meth:`BlipVQA.encode_images`) and all its questions — for all its classes — reuse the embedding;
prompts are batched across images and questions (:meth:`BlipVQA.answer`).

Correctness trap (docs/design.md §7): HF's ``BlipForQuestionAnswering.generate`` passes an all-ones
``encoder_attention_mask`` to the answer decoder, i.e. the decoder's cross-attention does not
honour the padding of the question tokens. Batching questions of different token lengths (padded)
therefore changes answers. We batch only prompts of equal token length, which need no padding, so
every row computes what a batch of one computes; ``tests/test_blip_vqa.py`` checks the answers
against :meth:`BlipVQA.answer_one` (the plain ``model.generate`` path) and ``bench/bench_qape.py``
reports the share of identical answers. One caveat remains, float rounding: BLAS kernels are not
bitwise batch-invariant (on CPU, MKL's GEMM for the 3-row beam-search steps rounds differently
from the 3·B-row batched one, ~1e-7 relative), so an answer can differ only where two beam
hypotheses tie to that precision; the tests and the benchmark measure 100 % identical answers.

Settings (official ``third_party/BLIP/get_blip_vqa_results.py``): 480×480 bicubic resize, /255,
CLIP mean/std; beam search with 3 beams, max length 10, min length 1.

Known difference to the official (salesforce/BLIP) code, inherited from the HF port: the question's
first token stays ``[CLS]`` where the original BLIP writes its ``[ENC]`` token
(huggingface/transformers#22732). The HF checkpoint stores 384-px position embeddings; at 480 px
they are interpolated bicubically on the fly (``interpolate_pos_encoding``), as the original
BLIP interpolates its checkpoint when loading at 480.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

if TYPE_CHECKING:   # transformers loads lazily; mypy skips it (pyproject.toml): the model's attributes are unchecked
    from transformers import BlipForQuestionAnswering

log = logging.getLogger(__name__)

DEFAULT_VQA_MODEL = "Salesforce/blip-vqa-capfilt-large"
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)


def _looks_like_path(name: str) -> bool:
    """True for strings that can only be a local path, never a hub id such as ``org/name``."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or name.count("/") > 1
        or os.path.exists(name)
    )


def preprocess_image(image: np.ndarray, size: int, mean: Sequence[float] | np.ndarray,
                     std: Sequence[float] | np.ndarray) -> torch.Tensor:
    """uint8 RGB ``[H, W, 3]`` -> float ``[3, S, S]``: PIL bicubic resize to S×S, /255, mean/std.

    PIL's bicubic resize of a uint8 image, as torchvision's ``Resize`` on the PIL image in the
    official script, so the pixels match it exactly. A module function so data-loader workers can
    run it without the model.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"BLIP input image: expected uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    x = (resized / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)  # [S, S, 3]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))  # [3, S, S]


class BlipVQA:
    """A frozen BLIP VQA model with its tokenizer and the official pre-processing / decoding settings.

    Build it with :meth:`from_pretrained`. Images: uint8 RGB ``[H, W, 3]`` -> :meth:`preprocess`
    -> ``pixel_values [N, 3, S, S]`` -> :meth:`encode_images` -> ``image_embeds [N, P, D]``
    (P = (S/patch)² + 1 tokens) -> :meth:`answer`.
    """

    def __init__(
        self,
        model: BlipForQuestionAnswering,
        tokenizer,
        *,
        device: torch.device | str,
        precision: Callable[[], contextlib.AbstractContextManager] | None = None,
        image_size: int = 480,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        num_beams: int = 3,
        max_length: int = 10,
        min_length: int = 1,
    ) -> None:
        self.device = torch.device(device)
        # The caller's precision context (``tool.engine.runtime.autocast`` for ``qape.precision``), entered around
        # every forward pass; None = float32. The weights stay float32 either way.
        self._precision = precision or contextlib.nullcontext
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.generate_kwargs = {
            "num_beams": num_beams, "max_length": max_length, "min_length": min_length, "do_sample": False,
        }
        # The HF checkpoint's position embeddings are for its training size (384 for the hub model);
        # any other input size needs them interpolated.
        self.interpolate_pos_encoding = self.image_size != int(model.config.vision_config.image_size)
        text_cfg = model.config.text_config
        self._bos_id = int(model.decoder_start_token_id)
        self._sep_id = int(text_cfg.sep_token_id)
        self._pad_id = int(text_cfg.pad_token_id)

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_dir: str | os.PathLike = DEFAULT_VQA_MODEL,
        *,
        device: torch.device | str = "cpu",
        precision: Callable[[], contextlib.AbstractContextManager] | None = None,
        image_size: int = 480,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
        num_beams: int = 3,
        max_length: int = 10,
        min_length: int = 1,
        config_key: str = "qape.vqa_model",
    ) -> BlipVQA:
        """Load a HF hub id (e.g. ``Salesforce/blip-vqa-capfilt-large``) or a ``save_pretrained`` folder.

        Missing weights (no such folder, or a hub id that is neither cached nor downloadable) raise
        ``FileNotFoundError`` naming ``config_key`` and how to obtain the weights.
        """
        from transformers import AutoProcessor, BlipForQuestionAnswering

        name = os.fspath(model_id_or_dir)
        how = (
            f"On a machine with internet run `huggingface-cli download {DEFAULT_VQA_MODEL} --local-dir <folder>`, "
            f"copy the folder here and set {config_key}=<folder> (or let the HF cache hold it)."
        )
        if _looks_like_path(name) and not Path(name).expanduser().is_dir():
            raise FileNotFoundError(f"{config_key}={name!r}: no such model folder. {how}")
        if _looks_like_path(name):
            name = str(Path(name).expanduser())
        try:
            model = BlipForQuestionAnswering.from_pretrained(name)
            tokenizer = AutoProcessor.from_pretrained(name).tokenizer
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"{config_key}={name!r}: could not load the BLIP VQA model ({e}). {how}") from e
        log.info("loaded BLIP VQA model %s", name)
        return cls(
            model, tokenizer, device=device, precision=precision, image_size=image_size, mean=mean, std=std,
            num_beams=num_beams, max_length=max_length, min_length=min_length,
        )

    # ------------------------------------------------------------------ images

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``[H, W, 3]`` -> float ``[3, S, S]`` (see :func:`preprocess_image`)."""
        return preprocess_image(image, self.image_size, self.mean, self.std)

    def preprocess_batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """List of uint8 RGB images -> ``pixel_values [N, 3, S, S]``."""
        return torch.stack([self.preprocess(im) for im in images])

    @torch.no_grad()
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``pixel_values [N, 3, S, S]`` -> ``image_embeds [N, P, D]`` (ViT last hidden state)."""
        with self._precision():
            out = self.model.vision_model(
                pixel_values=pixel_values.to(self.device), interpolate_pos_encoding=self.interpolate_pos_encoding
            )
        return out[0]

    # --------------------------------------------------------------- questions

    def tokenize(self, question: str) -> list[int]:
        """Token ids of a question as the processor makes them: ``[CLS] ... [SEP]``."""
        return list(self.tokenizer(question)["input_ids"])

    def _decode(self, ids: torch.Tensor) -> str:
        # ids: [T], starting with the decoder's BOS token, padded after [SEP].
        return self.tokenizer.decode(ids[1:].tolist(), skip_special_tokens=True).strip()

    @torch.no_grad()
    def _generate(self, image_embeds: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """The part of HF ``BlipForQuestionAnswering.generate`` after the vision model.

        image_embeds: [B, P, D]; input_ids: [B, L] with no padding (equal-length questions).
        Returns generated ids [B, T] (BOS first). Same calls, same masks as HF's ``generate``.
        """
        image_mask = torch.ones(image_embeds.shape[:2], dtype=torch.long, device=image_embeds.device)  # [B, P]
        question_embeds = self.model.text_encoder(
            input_ids=input_ids,
            attention_mask=None,  # no padding: all ones, as the plain path's tokenizer mask
            encoder_hidden_states=image_embeds,
            encoder_attention_mask=image_mask,
            return_dict=False,
        )[0]  # [B, L, D_text]
        question_mask = torch.ones(question_embeds.shape[:2], dtype=torch.long, device=question_embeds.device)
        bos = torch.full((question_embeds.shape[0], 1), self._bos_id, dtype=torch.long, device=question_embeds.device)
        return self.model.text_decoder.generate(
            input_ids=bos,
            eos_token_id=self._sep_id,
            pad_token_id=self._pad_id,
            encoder_hidden_states=question_embeds,
            encoder_attention_mask=question_mask,
            **self.generate_kwargs,
        )

    @torch.no_grad()
    def answer(
        self, image_embeds: torch.Tensor, items: Sequence[tuple[int, str]], batch_size: int = 64
    ) -> list[str]:
        """Answer ``items`` = ``[(image index into image_embeds, question), ...]``, in item order.

        image_embeds: [N, P, D] from :meth:`encode_images`. Items are grouped by the token length of
        their question and each group is answered in batches of up to ``batch_size`` prompts (any
        mix of images and questions). Answers equal :meth:`answer_one`'s (see the module docstring).
        """
        if batch_size < 1:
            raise ValueError(f"qape batch_size must be >= 1, got {batch_size}")
        n = image_embeds.shape[0]
        token_ids: dict[str, list[int]] = {}
        by_length: dict[int, list[int]] = defaultdict(list)  # token length -> item positions
        for pos, (img, question) in enumerate(items):
            if not 0 <= img < n:
                raise IndexError(f"VQA item {pos}: image index {img} outside the {n} encoded images")
            if question not in token_ids:
                token_ids[question] = self.tokenize(question)
            by_length[len(token_ids[question])].append(pos)

        answers: list[str | None] = [None] * len(items)
        with self._precision():
            for length in sorted(by_length):
                positions = by_length[length]
                for start in range(0, len(positions), batch_size):
                    chunk = positions[start:start + batch_size]
                    ids = torch.tensor([token_ids[items[p][1]] for p in chunk], device=self.device)  # [B, L]
                    img_idx = torch.tensor([items[p][0] for p in chunk], device=image_embeds.device)
                    out = self._generate(image_embeds.index_select(0, img_idx), ids)  # [B, T]
                    for p, row in zip(chunk, out):
                        answers[p] = self._decode(row)
        return answers  # type: ignore[return-value]

    @torch.no_grad()
    def answer_one(self, pixel_values: torch.Tensor, question: str) -> str:
        """The straightforward path: one HF ``model.generate`` call for one image and one question.

        pixel_values: [1, 3, S, S] or [3, S, S]. The image is encoded again on every call — this is
        the official structure, kept as the reference for tests and the benchmark.
        """
        if pixel_values.ndim == 3:
            pixel_values = pixel_values[None]  # [1, 3, S, S]
        input_ids = self.tokenizer(question, return_tensors="pt")["input_ids"].to(self.device)  # [1, L]
        with self._precision():
            out = self.model.generate(
                input_ids=input_ids,
                pixel_values=pixel_values.to(self.device),
                interpolate_pos_encoding=self.interpolate_pos_encoding,
                **self.generate_kwargs,
            )
        return self._decode(out[0])
