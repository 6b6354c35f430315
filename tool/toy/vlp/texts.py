"""What the toy world's answers and texts are: the toy BLIP's training answers and vocabulary, the toy CLIP's
training texts and which of them describe which region."""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from net.qape_text import DEFAULT_QUESTIONS, TEXT_PROMPT, fg_texts, lemmatize_noun, side_of_group
from tool.toy.vocab import CLASS_ALIASES, SCENE_THINGS, SCENES, SUBTYPES
from voc12.dataset import CLASS_NAMES, XML_NAMES

_QUESTION_NAME = dict(zip(XML_NAMES, CLASS_NAMES))   # XML name -> name as spelled in questions

# Where a scene's things are relative to an object standing in it, most telling first. A BG question
# is answered with the first of its direction's things that the image has (cycling through them for
# the several "side" questions), else with the scene: every answer names something truly there.
_BG_PLACES: dict[str, dict[str, tuple[str, ...]]] = {
    "sky": {"up": ("sun", "cloud"), "down": ("hill", "cloud"), "side": ("cloud", "sun")},
    "water": {"up": ("cloud", "sky"), "down": ("waves",), "side": ("buoy", "waves")},
    "railway": {"up": ("pole", "sky"), "down": ("rails", "sleepers", "gravel"),
                "side": ("gravel", "rails", "sleepers", "pole")},
    "grass": {"up": ("tree", "sky"), "down": ("grass tuft",), "side": ("fence", "tree", "grass tuft")},
    "road": {"up": ("building", "sky"), "down": ("road", "lane marking"), "side": ("sidewalk", "building", "road")},
    "room": {"up": ("window", "picture frame", "shelf", "wall"), "down": ("floor",),
             "side": ("wall", "shelf", "window", "picture frame")},
}


def _direction(question: str) -> str:
    q = question.lower()
    if "above" in q or "behind" in q:
        return "up"
    if "under" in q or "below" in q:
        return "down"
    return "side"


def toy_vqa_answers(meta: Mapping, class_name: str,
                    templates: Mapping[str, Sequence[str]] = DEFAULT_QUESTIONS) -> list[tuple[str, str, str]]:
    """The toy VQA model's training answers for one (image, class): ``[(group, question, answer), ...]``.

    ``meta``: the image's ``ToyMeta`` sidecar; ``class_name``: as spelled in questions ("dining table").
    - fine_grained ("What kind of boat ...") -> the sub-type of the largest object of the class;
    - alias -> the class's aliases (``tool.toy.vocab.CLASS_ALIASES``), one per template, cycling;
    - surrounding -> a thing of the image above / below / beside the object (``_BG_PLACES``), else the scene;
    - scene -> the scene.
    Questions are the templates filled with ``class_name``, in template order.
    """
    objects = [o for o in meta["objects"] if o["class_name"] == class_name]
    if not objects:
        raise ValueError(f"toy VQA: the image has no {class_name!r} (objects: "
                         f"{sorted({o['class_name'] for o in meta['objects']})})")
    xml = objects[0]["class"]
    largest = max(objects, key=lambda o: (o["bbox"][2] - o["bbox"][0]) * (o["bbox"][3] - o["bbox"][1]))
    scene, things = meta["scene"], set(meta["things"])
    out: list[tuple[str, str, str]] = []
    for group, group_templates in templates.items():
        side_of_group(group)
        seen: dict[str, int] = {}   # direction -> how many questions of it so far in this group
        for j, template in enumerate(group_templates):
            question = template.format(class_name)
            if group == "fine_grained":
                answer = largest["subtype"]
            elif group == "alias":
                aliases = CLASS_ALIASES[xml]
                answer = aliases[j % len(aliases)]
            elif group == "surrounding":
                d = _direction(question)
                present = [t for t in _BG_PLACES[scene][d] if t in things] or [scene]
                answer = present[seen.get(d, 0) % len(present)]
                seen[d] = seen.get(d, 0) + 1
            else:
                answer = scene
            out.append((group, question, answer))
    return out


def _fg_words(xml: str) -> list[str]:
    """Sub-type names and aliases of a class (what an FG answer should name), unique, in order."""
    return list(dict.fromkeys([*(s.name for s in SUBTYPES[xml]), *CLASS_ALIASES[xml]]))


def blip_vocab() -> list[str]:
    """Every word the toy BLIP reads or answers: templates, class names, sub-types, aliases, scenes, things."""
    text = " ".join([*(t for ts in DEFAULT_QUESTIONS.values() for t in ts), *CLASS_NAMES, *XML_NAMES, *SCENES,
                     *(t for ts in SCENE_THINGS.values() for t in ts), *(w for x in XML_NAMES for w in _fg_words(x))])
    # BERT's pre-tokenizer splits punctuation off words ("photo?" -> "photo", "?"; "double-decker" ->
    # "double", "-", "decker"), so the vocabulary holds both kinds of pieces.
    return sorted(set(re.findall(r"[a-z]+|[^\sa-z{}]", text.lower())))


@dataclass(frozen=True)
class ClipTexts:
    """The CLIP training texts and which of them describe which region.

    texts: prompted texts [T]. fg_pos[k][s]: bool [T] positives of an object of class k (XML order)
    and sub-type s; fg_ignore[k][s]: the other sub-types of the class (neither positive nor negative).
    bg_pos(scene, things): bool [T] positives of a background region.
    """

    texts: list[str]
    fg_pos: list[list[np.ndarray]]
    fg_ignore: list[list[np.ndarray]]
    index: dict[str, int]

    def bg_pos(self, scene: str, things: Iterable[str]) -> np.ndarray:
        pos = np.zeros(len(self.texts), bool)
        for word in bg_words([scene, *things]):
            pos[self.index[TEXT_PROMPT.format(word)]] = True
        return pos


def bg_words(words: Iterable[str]) -> list[str]:
    """Scene / thing words as answered and as ``text_feats`` lemmatises them ("rails" and "rail")."""
    words = list(words)
    return list(dict.fromkeys([*words, *(lemmatize_noun(w) for w in words)]))


def clip_texts() -> ClipTexts:
    """Build :class:`ClipTexts`: FG texts as ``text_feats`` makes them (``fg_texts``), BG words raw + lemmas."""
    texts: list[str] = []
    index: dict[str, int] = {}

    def add(word: str) -> int:
        t = TEXT_PROMPT.format(word)
        if t not in index:
            index[t] = len(texts)
            texts.append(t)
        return index[t]

    fg_rows: list[tuple[list[int], list[list[int]]]] = []
    for xml in XML_NAMES:
        name = _QUESTION_NAME[xml]
        common = [add(t) for t in fg_texts(list(CLASS_ALIASES[xml]), name)]   # aliases + the class name
        subs = [[add(t) for t in fg_texts([s.name], name)[:-1]] for s in SUBTYPES[xml]]
        fg_rows.append((common, subs))
    for word in bg_words([*SCENES, *(t for ts in SCENE_THINGS.values() for t in ts)]):
        add(word)
    fg_pos, fg_ignore = [], []
    for common, subs in fg_rows:
        pos_k, ign_k = [], []
        for s, own in enumerate(subs):
            pos = np.zeros(len(texts), bool)
            pos[common + own] = True
            ign = np.zeros(len(texts), bool)
            for s2, other in enumerate(subs):
                if s2 != s:
                    ign[other] = True
            pos_k.append(pos)
            ign_k.append(ign & ~pos)
        fg_pos.append(pos_k)
        fg_ignore.append(ign_k)
    return ClipTexts(texts, fg_pos, fg_ignore, index)

