"""Import of the authors' voc_vqa_{fg,bg}_blip.npy corpora (tool/import_official_corpus.py).

The input files are written here in the official format (get_blip_vqa_results.py / transfer_vqa.py):
a NumPy-pickled dict image name -> class name -> {"vqa": [(question, answer), ...], "answers": [...]}.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from net.qape_text import DEFAULT_QUESTIONS, expand_questions
from tool.import_official_corpus import convert_official_corpus, main


def official_entry(class_name: str, side: str, answers: list[str]) -> dict:
    groups = ("fine_grained", "alias") if side == "fg" else ("surrounding", "scene")
    qs = [q for g, q in expand_questions(DEFAULT_QUESTIONS, class_name) if g in groups]
    assert len(qs) == len(answers)
    # "answers" holds the official lemmatised answers; the importer must take the raw ones from "vqa".
    return {"vqa": [(q, a) for q, a in zip(qs, answers)], "answers": [a.rstrip("s") for a in answers]}


FG_A = ["jet", "airliner", "plane", "airplane", "jet", "aircraft"]
BG_A = ["clouds", "sky", "runway", "sky", "trees", "grass", "grass", "airport", "outdoors", "airport"]
FG_P = ["man", "woman", "person", "human", "man", "people"]
BG_P = ["tables", "floor", "wall", "chairs", "table", "window", "door", "restaurant", "indoor", "restaurant"]
FG_T = ["flat screen", "tv", "television", "monitor", "screen", "tv"]


def official_dicts():
    # classes inserted out of class order: the output must be sorted by (image, class index)
    fg = {
        "2007_000039": {"tv monitor": official_entry("tv monitor", "fg", FG_T)},
        "2007_000032": {"person": official_entry("person", "fg", FG_P),
                        "aeroplane": official_entry("aeroplane", "fg", FG_A)},
    }
    bg = {
        "2007_000032": {"aeroplane": official_entry("aeroplane", "bg", BG_A),
                        "person": official_entry("person", "bg", BG_P)},
        "2007_000039": {"tv monitor": official_entry("tv monitor", "bg", BG_P)},
    }
    return fg, bg


def test_cli_converts_official_files(tmp_path):
    fg, bg = official_dicts()
    np.save(tmp_path / "voc_vqa_fg_blip.npy", fg)  # a 0-d object array holding the dict, as np.save does
    np.save(tmp_path / "voc_vqa_bg_blip.npy", bg)
    out = tmp_path / "work" / "qape" / "corpus.jsonl"
    assert main(["--fg", str(tmp_path / "voc_vqa_fg_blip.npy"), "--bg", str(tmp_path / "voc_vqa_bg_blip.npy"),
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["image"], r["class"]) for r in records] == [
        ("2007_000032", "aeroplane"), ("2007_000032", "person"), ("2007_000039", "tv monitor"),
    ]
    first = records[0]
    assert list(first) == ["image", "class", "fg", "bg"]
    assert first["fg"][0] == ["What kind of aeroplane is in the photo?", "jet"]
    assert [a for _, a in first["fg"]] == FG_A and [a for _, a in first["bg"]] == BG_A  # raw, not lemmatised
    assert first["bg"][9] == ["what place is the aeroplane in?", "airport"]
    assert [a for _, a in records[2]["fg"]] == FG_T
    assert sorted(p.name for p in out.parent.iterdir()) == ["corpus.jsonl"]  # no temp file left


def test_class_indices_xml_names_and_integer_image_ids():
    fg, bg = official_dicts()
    fg2 = {2007000032: {14: fg["2007_000032"]["person"], "aeroplane": fg["2007_000032"]["aeroplane"]}}
    bg2 = {"2007_000032": {"person": bg["2007_000032"]["person"], 0: bg["2007_000032"]["aeroplane"]}}
    fg2[2007000039] = {"tvmonitor": fg["2007_000039"]["tv monitor"]}
    bg2["2007_000039"] = {19: bg["2007_000039"]["tv monitor"]}
    records = convert_official_corpus(fg2, bg2)
    assert [(r["image"], r["class"]) for r in records] == [
        ("2007_000032", "aeroplane"), ("2007_000032", "person"), ("2007_000039", "tv monitor"),
    ]


def test_pair_missing_from_one_file_is_an_error():
    fg, bg = official_dicts()
    del bg["2007_000032"]["person"]
    with pytest.raises(ValueError, match=r"2007_000032, class 'person' is in fg but not in bg"):
        convert_official_corpus(fg, bg)


def test_unknown_class_is_an_error():
    fg, bg = official_dicts()
    fg["2007_000039"]["unicorn"] = fg["2007_000039"]["tv monitor"]
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        convert_official_corpus(fg, bg)


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="voc_vqa_fg_blip.npy"):
        main(["--fg", str(tmp_path / "voc_vqa_fg_blip.npy"), "--bg", str(tmp_path / "b.npy"),
              "--out", str(tmp_path / "c.jsonl")])
