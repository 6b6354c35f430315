"""QAPE templates and answer post-processing (net/qape_text.py), on hand-written cases."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from net.qape_text import (
    BG_GROUPS,
    DEFAULT_QUESTIONS,
    FG_GROUPS,
    bg_texts,
    expand_questions,
    fg_texts,
    no_qape_texts,
    prompt_text,
    question_groups,
    side_of_group,
)

ROOT = Path(__file__).resolve().parents[1]


def test_default_questions_are_table_6():
    assert [len(DEFAULT_QUESTIONS[g]) for g in FG_GROUPS] == [2, 4]
    assert [len(DEFAULT_QUESTIONS[g]) for g in BG_GROUPS] == [7, 3]
    assert DEFAULT_QUESTIONS["fine_grained"][0] == "What kind of {} is in the photo?"
    assert DEFAULT_QUESTIONS["alias"][3] == "What is another name for this {}?"
    assert DEFAULT_QUESTIONS["surrounding"][5] == "what is the left side of {}?"
    assert DEFAULT_QUESTIONS["scene"][1] == "what environment is the {} in?"
    assert [side_of_group(g) for g in DEFAULT_QUESTIONS] == ["fg", "fg", "bg", "bg"]


def test_expand_questions_fills_the_class_as_spelled():
    qs = expand_questions(DEFAULT_QUESTIONS, "dining table")
    assert len(qs) == 16
    assert qs[0] == ("fine_grained", "What kind of dining table is in the photo?")
    assert qs[2] == ("alias", "What is this dining table also called?")
    assert qs[-1] == ("scene", "what place is the dining table in?")
    assert question_groups(DEFAULT_QUESTIONS, "cat")["what is under the cat?"] == "surrounding"


@pytest.mark.parametrize("template", ["What is this?", "What is {class}?", "{} next to {}?"])
def test_bad_template_is_an_error_naming_it(template):
    with pytest.raises(ValueError, match="must contain exactly one") as e:
        expand_questions({"scene": [template]}, "cat")
    assert repr(template) in str(e.value)


def test_unknown_group_is_an_error():
    with pytest.raises(ValueError, match="'colour'"):
        expand_questions({"colour": ["What colour is the {}?"]}, "cat")
    with pytest.raises(TypeError, match="list of templates"):
        expand_questions({"scene": "what scene is the {} in?"}, "cat")


def test_fg_texts_append_class_unless_named():
    answers = ["terrier", "puppies", "dog", "hot dog", "", "golden retrievers"]
    # puppies -> puppy (single word lemmatised); "hot dog" contains "dog"; the empty answer is the
    # class alone; multi-word answers are not lemmatised. The class name comes last.
    assert fg_texts(answers, "dog") == [
        "terrier dog", "puppy dog", "dog", "hot dog", "dog", "golden retrievers dog", "dog",
    ]


def test_fg_texts_aliases():
    answers = ["coffee table", "desk", "wooden", "table", "tables", "furniture"]
    assert fg_texts(answers, "dining table") == [
        "coffee table", "desk dining table", "wooden dining table", "table", "table",
        "furniture dining table", "dining table",
    ]
    # "tv" is no alias of "tv monitor" (official supply_cat: monitor, tv monitor).
    assert fg_texts(["computer monitor", "tv"], "tv monitor") == ["computer monitor", "tv tv monitor", "tv monitor"]
    # Aliases given as a list for this class; the official substring test ("cat" in "bobcat").
    assert fg_texts(["kitty", "bobcat"], "cat", ["kitty"]) == ["kitty", "bobcat", "cat"]
    assert fg_texts(["kitty"], "cat", []) == ["kitty cat", "cat"]


def test_bg_texts_lemmatise_dedupe_remove_class():
    answers = ["trees", "tree", "grass", "cat", "cats", "", "green grass", "people", "kitchen", "trees"]
    assert bg_texts(answers, "cat") == ["tree", "grass", "green grass", "people", "kitchen"]
    # multi-word class: its plural is removed too; "table" is not the class
    assert bg_texts(["dining tables", "dining table", "table", "chairs", "chair"], "dining table") == ["table", "chair"]
    assert bg_texts(["persons", "men", "benches"], "person") == ["man", "bench"]


def test_bg_texts_may_be_empty():
    assert bg_texts(["cat", "cats", "", "  "], "cat") == []
    assert bg_texts([], "cat") == []


def test_no_qape_and_prompt():
    assert no_qape_texts("train") == (["train"], ["no train"])
    assert prompt_text("tree") == "a photo of tree."


def test_post_processing_does_not_depend_on_hash_seed():
    code = (
        "import json; from net.qape_text import bg_texts, fg_texts;"
        "a = ['water', 'boats', 'sky', 'boat', 'dock', 'waters', 'harbor', 'sea', 'sky', 'ocean', 'pier', 'dock'];"
        "print(json.dumps([bg_texts(a, 'boat'), fg_texts(a[:6], 'boat')]))"
    )
    outs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
        outs.append(json.loads(res.stdout))
    assert outs[0] == outs[1]
    assert outs[0][0] == ["water", "sky", "dock", "harbor", "sea", "ocean", "pier"]


def test_text_feats_pair_texts_follow_the_question_groups():
    """text_feats' texts of one corpus record: FG-only groups (Table 5) get the no-QAPE BG text "no {class}";
    BG-only groups keep the BG answers and FG is the class name alone; all groups keep both (official)."""
    from step.text_feats import pair_texts
    from tool.engine.config import load_config

    rec = {"image": "x", "class": "dog", "fg": [["What kind of dog is in the photo?", "terrier"]],
           "bg": [["what is under the dog?", "grass"], ["what is next to the dog?", "dogs"]]}
    smoke = ROOT / "configs" / "smoke.yaml"
    assert pair_texts(rec, "dog", load_config(smoke)) == (["terrier dog"], ["grass"])
    assert pair_texts(rec, "dog", load_config(smoke, ["qape.groups=[fine_grained]"])) == (["terrier dog"], ["no dog"])
    assert pair_texts(rec, "dog", load_config(smoke, ["qape.groups=[alias, scene]"])) == (["terrier dog"], ["grass"])
    no_fg = {**rec, "fg": []}      # what qape writes when no FG group is asked
    assert pair_texts(no_fg, "dog", load_config(smoke, ["qape.groups=[surrounding]"])) == ([], ["grass"])
    assert pair_texts(rec, "dog", load_config(smoke, ["qape.no_qape=true"])) == ([], ["no dog"])
