"""QAPE question templates and answer post-processing (paper §3.2, Appendix A Table 6; docs/design.md §4).

The VQA step asks every template of :data:`DEFAULT_QUESTIONS` about every (image, present class)
pair and stores the raw answers; this module turns those answers into the CLIP texts RITC contrasts:

- FG texts (Eq. 3, v_tf): the L = 6 fine-grained / alias answers, each made to name the class
  (:func:`fg_texts`), plus the class name itself — L + 1 texts;
- BG texts (Eq. 4, v_tb): the N = 10 surrounding / scene answers, lemmatised, deduplicated, the
  class removed (:func:`bg_texts`) — possibly none;
- the "no QAPE" baseline of Table 5 (:func:`no_qape_texts`);
- every text is wrapped in the prompt ``a photo of {}.`` (:func:`prompt_text`).

Official reference: ``visual_questions.py`` (templates and prompt), ``net/vqa_fg.py``
(``fg_qa_prompt``), ``net/vqa_bg.py`` (``BG_VQA._process_vqa``) and
``third_party/BLIP/get_blip_vqa_results.py`` (answers lemmatised before either of those sees them).
Where this module deviates, the comment at the spot says why.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from lemminflect import getInflection, getLemma

# The prompt every answer is wrapped in before the CLIP text tower (official ``TEXT_PROMPT``).
TEXT_PROMPT = "a photo of {}."

# Paper Table 6 = official ``visual_questions.QUESTIONS``, split into the four groups the paper's
# Table 5 ablates. The strings are the official ones character for character (FG capitalised, BG
# lower case, "environment" spelled correctly although the paper's table writes "enviroment"), so
# a corpus we generate and one imported from the authors' files carry identical questions. ``{}``
# is the class name as spelled for questions (voc12.dataset.CLASS_NAMES).
DEFAULT_QUESTIONS: dict[str, tuple[str, ...]] = {
    # FG: fine-grained names
    "fine_grained": (
        "What kind of {} is in the photo?",
        "What type of {} is in the photo?",
    ),
    # FG: object aliases
    "alias": (
        "What is this {} also called?",
        "What is this {} usually called?",
        "What is another word for this {}?",
        "What is another name for this {}?",
    ),
    # BG: surrounding objects
    "surrounding": (
        "what is above the {}?",
        "what is under the {}?",
        "what is behind the {}?",
        "what is around the {}?",
        "what is next to the {}?",
        "what is the left side of {}?",
        "what is the right side of {}?",
    ),
    # BG: scene
    "scene": (
        "what scene is the {} in?",
        "what environment is the {} in?",
        "what place is the {} in?",
    ),
}
FG_GROUPS: tuple[str, ...] = ("fine_grained", "alias")
BG_GROUPS: tuple[str, ...] = ("surrounding", "scene")

# Other names of a class that already make an FG answer name it (official ``supply_cat``; it is
# keyed by question spelling, so it serves VOC and COCO alike).
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "dining table": ("table",),
    "tv monitor": ("monitor",),
    "potted plant": ("plant",),
}

Side = Literal["fg", "bg"]


def prompt_text(text: str) -> str:
    """``text`` wrapped in the CLIP prompt: ``"a photo of {text}."``."""
    return TEXT_PROMPT.format(text)


def side_of_group(group: str) -> Side:
    """``"fg"`` for the fine-grained / alias groups, ``"bg"`` for surrounding / scene; else an error."""
    if group in FG_GROUPS:
        return "fg"
    if group in BG_GROUPS:
        return "bg"
    raise ValueError(
        f"unknown question group {group!r}: use one of {FG_GROUPS} (foreground) or {BG_GROUPS} (background)"
    )


def expand_questions(templates: Mapping[str, Sequence[str]], class_name: str) -> list[tuple[str, str]]:
    """Fill every template with ``class_name``: ``[(group, question), ...]`` in template order.

    ``templates`` maps a group name (see :data:`DEFAULT_QUESTIONS`) to its templates; each template
    must contain exactly one ``{}``. A bad group or template is an error naming it.
    """
    out: list[tuple[str, str]] = []
    for group, group_templates in templates.items():
        side_of_group(group)  # validates the group name
        if isinstance(group_templates, str):
            raise TypeError(
                f"question group {group!r}: expected a list of templates, got the string {group_templates!r}"
            )
        for template in group_templates:
            # Exactly one "{}" and no other braces: str.format would otherwise fail on "{class}" or
            # silently ask a question about nothing.
            rest = template.replace("{}", "", 1)
            if template.count("{}") != 1 or "{" in rest or "}" in rest:
                raise ValueError(
                    f"question template {template!r} (group {group!r}) must contain exactly one '{{}}' "
                    f"where the class name goes, e.g. 'What is around the {{}}?'"
                )
            out.append((group, template.format(class_name)))
    return out


def question_groups(templates: Mapping[str, Sequence[str]], class_name: str) -> dict[str, str]:
    """``{question: group}`` for ``class_name`` — to tell which group a corpus answer belongs to."""
    return {q: g for g, q in expand_questions(templates, class_name)}


def lemmatize_noun(text: str) -> str:
    """A single-word ``text`` lemmatised as a noun ("trees" -> "tree"); multi-word text unchanged.

    The official pipeline lemmatises every whole answer with NLTK's WordNet lemmatiser (noun by
    default), which in effect only changes single words: a string with a space is no WordNet lemma.
    We use lemminflect (no corpus download needed) with the same noun reading; where it proposes
    several lemmas ("glasses" -> glass, glasses) the first is taken, so the result is deterministic.
    """
    if not text or any(c.isspace() for c in text):
        return text
    lemmas = getLemma(text, upos="NOUN")
    return lemmas[0] if lemmas else text


def _aliases_of(class_name: str, aliases: Mapping[str, Sequence[str]] | Sequence[str]) -> tuple[str, ...]:
    if isinstance(aliases, Mapping):
        return tuple(aliases.get(class_name, ()))
    if isinstance(aliases, str):
        raise TypeError(f"aliases of {class_name!r}: expected a list of names or a mapping, got the string {aliases!r}")
    return tuple(aliases)


def fg_texts(
    answers: Sequence[str],
    class_name: str,
    aliases: Mapping[str, Sequence[str]] | Sequence[str] = CLASS_ALIASES,
) -> list[str]:
    """FG texts of one (image, class) pair: the L post-processed answers, then the class name (L + 1).

    Each answer (single words lemmatised as nouns, as the official answers are) is kept as is when it
    contains the class name or one of its aliases as a substring, else the class name is appended
    after a space: "terrier" -> "terrier dog", "coffee table" stays for "dining table" (alias "table").
    The substring test is the official one (``e in a``), so "bobcat" also counts as naming "cat".
    Duplicates are kept: the official FG feature averages all L answers with equal weight.

    ``aliases``: the class's alias list, or a mapping class -> aliases (default :data:`CLASS_ALIASES`).
    An empty answer becomes the class name alone — the official code forms ``" " + class``, which
    the CLIP tokenizer's whitespace cleaning turns into the same prompt; keeping it (rather than
    dropping it) keeps L fixed, as in the official FG feature.

    Returns ``[text_1, ..., text_L, class_name]`` — the class name is always last.
    """
    names = (class_name, *_aliases_of(class_name, aliases))
    out: list[str] = []
    for answer in answers:
        a = lemmatize_noun(answer.strip())
        if not a:
            out.append(class_name)
        elif any(n in a for n in names):
            out.append(a)
        else:
            out.append(f"{a} {class_name}")
    out.append(class_name)
    return out


def _class_forms(class_name: str) -> set[str]:
    """The class name, its noun lemma and its plural(s) ("dining table" -> + "dining tables")."""
    forms = {class_name, lemmatize_noun(class_name)}
    head, _, last = class_name.rpartition(" ")
    prefix = f"{head} " if head else ""
    forms.update(prefix + p for p in getInflection(last, tag="NNS"))
    return forms


def bg_texts(answers: Sequence[str], class_name: str) -> list[str]:
    """BG texts of one (image, class) pair: lemmatised, deduplicated answers without the class.

    Single-word answers are lemmatised as nouns ("trees" -> "tree"); multi-word answers are kept as
    they are. Empty answers are dropped. Duplicates keep their first occurrence, so the order is
    the question order and does not depend on ``PYTHONHASHSEED`` (the official ``list(set(...))``
    does; the losses are order-free, the files we write should not be). Answers equal to the class
    name, its lemma or its plural are removed (the official code removes the exact name after
    lemmatisation; the plural of a multi-word name such as "dining tables" is our addition, since
    lemmatisation leaves multi-word answers alone). May return ``[]``: RITC skips such a pair.
    """
    forms = _class_forms(class_name)
    out: list[str] = []
    seen: set[str] = set()
    for answer in answers:
        a = lemmatize_noun(answer.strip())
        if not a or a in forms or a in seen:
            continue
        seen.add(a)
        out.append(a)
    return out


def no_qape_texts(class_name: str) -> tuple[list[str], list[str]]:
    """The "no QAPE" baseline of Table 5: FG = ``[class_name]``, BG = ``["no {class_name}"]``."""
    return [class_name], [f"no {class_name}"]
