"""Tiny vision-language models trained on the toy world, so the offline demo's QAPE and RITC see sense.

Real BLIP / CLIP weights cannot be downloaded offline and randomly initialised tiny models
(``tool.toy.tiny_models``) answer noise, so ``make demo`` trains its own pair on the toy world
(``tool.toy.world``) from the generator's ``ToyMeta`` sidecars, on the ``train_aug`` images only
(train + extra; never val):

- a tiny open_clip **CLIP**, trained contrastively on region images as RITC builds them (the image
  normalised, multiplied by a region mask, resized to the CLIP input; Eq. 10): an object's region
  matches "a photo of {class}." and its sub-type / alias texts post-processed as ``text_feats``
  does ("a photo of canoe boat."); the background with the objects blacked out matches "a photo of
  {scene}." and the surrounding things ("a photo of rails.", "a photo of rail.");
- a tiny HF **BlipForQuestionAnswering** with its own small WordPiece vocabulary, trained with the
  decoder's LM loss on (image, question, answer) triples from the paper's templates
  (``net.qape_text.DEFAULT_QUESTIONS``): FG questions answered with the sub-type ("what kind") or
  an alias, BG questions with the scene and the things drawn around (:func:`toy_vqa_answers`).

Both are saved in the real on-disk formats (``<out>/blip``: ``save_pretrained`` folder;
``<out>/clip``: ``open_clip_config.json`` + ``open_clip_model.safetensors``) and loaded by the
steps through ``BlipVQA.from_pretrained`` / ``net.clip.load_clip``, the code paths of real weights.
Training is cached: ``<out>/toy_vlp.json`` (written last) holds the parameters and the world's
parameters; :func:`ensure_toy_vlp` with the same ones does not retrain. Deterministic from the seed.

CLI::

    python -m tool.toy.vlp --root work/demo-data/VOC2012 --out work/demo-vlp            # train (cached)
    python -m tool.toy.vlp --root ... --out ... --eval-vqa --eval-clip [--split val]    # measure

Using the world's pixel masks to train the "pretrained" models is a demo shortcut: a real CLIP /
BLIP never saw VOC's masks. They only learn what words go with which pixels; the WSSS pipeline
itself still sees image labels only.

The parts, bottom to top: ``params`` (``ToyVlpParams``, shared constants), ``texts`` (answers, vocabulary, CLIP
texts), ``records`` (images, masks, sidecars), ``clip`` and ``blip`` (each model's training), ``cache``
(``ensure_toy_vlp``, the cached entry point; its key is ``VLP_VERSION`` and the parameters, not the code),
``evaluate`` (measurements), ``__main__`` (the CLI).
"""
