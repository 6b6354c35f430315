"""tool.ablate: a 2×2 RITC grid on the smoke config through eval_cam makes qape and train_cam once (the
other variants adopt them by digest), resumes after a kill without redoing finished variants; tool.compare
over two of its runs names exactly the key that differs. Plus the grid helpers by hand."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tool import ablate
from tool.compare import compare
from tool.engine.io import read_json

SMOKE = str(Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml")
V = "ritc.frc={},ritc.brc={}"


def test_grid_helpers_by_hand():
    assert ablate.split_values("true,false") == ["true", "false"]
    assert ablate.split_values("[1,2],[3,4]") == ["[1,2]", "[3,4]"]
    grid = ablate.parse_grid(["ritc.frc=true,false", "ritc.omega=0.05,0.1,0.2"])
    assert grid == [("ritc.frc", ["true", "false"]), ("ritc.omega", ["0.05", "0.1", "0.2"])]
    variants = ablate.expand(grid, [0, 1])
    assert len(variants) == 12 and variants[0].name == "ritc.frc=true,ritc.omega=0.05,seed=0"
    assert variants[1].sets == ["ritc.frc=true", "ritc.omega=0.05", "seed=1"]
    assert variants[-1].name == "ritc.frc=false,ritc.omega=0.2,seed=1"
    with pytest.raises(ablate.AblateError, match="given twice"):
        ablate.parse_grid(["ritc.frc=true", "ritc.frc=false"])
    with pytest.raises(ablate.AblateError, match="expected section.key=value1,value2"):
        ablate.parse_grid(["ritc.frc"])
    # mean ± std (population) over seeds, by hand: 30 and 34 -> 32.0 ± 2.0
    vs = ablate.expand([("ritc.frc", ["true"])], [0, 1])
    runs = {vs[0].name: {"stages": {"cam_ritc": {"miou": 30.0, "best": {"miou": 31.0}}}},
            vs[1].name: {"stages": {"cam_ritc": {"miou": 34.0, "best": {"miou": 36.0}}}}}
    head, rows = ablate.seed_table(vs, runs)
    assert head == ["ritc.frc", "seeds", "RITC CAM", "RITC CAM (best thr.)"]
    assert rows == [["true", "2", "32.0 ± 2.0", "33.5 ± 2.5"]]


def _starts(root: Path, step: str) -> dict[str, int]:
    """How many times each variant's log says the step started (the runner logs 'step X: start')."""
    return {d.name: (d / "log.txt").read_text().count(f"step {step}: start") for d in sorted(root.iterdir())
            if (d / "log.txt").is_file()}


@pytest.mark.slow
def test_grid_shares_upstream_steps_and_resumes(tmp_path, monkeypatch):
    models = tmp_path / "models"
    root = tmp_path / "grid"
    argv = ["--config", SMOKE, "--grid", "ritc.frc=true,false", "--grid", "ritc.brc=true,false", "--root", str(root),
            "--until", "eval_cam", "--set", f"dataset.root={tmp_path / 'toy' / 'VOC2012'}",
            "--set", f"toy.random_models_dir={models}", "--set", f"qape.vqa_model={models / 'blip'}",
            "--set", f"clip.model={models / 'clip'}"]
    real = ablate.run_pipeline
    calls = []

    class Killed(Exception):
        pass

    def killed_in_third(config, work_dir, sets, step_args):
        calls.append(Path(work_dir).name)
        if len(calls) == 3:          # the third variant dies after train_ritc, before make_cam
            real(config, work_dir, sets, [*step_args, "--until", "train_ritc"])
            raise Killed
        real(config, work_dir, sets, step_args)

    monkeypatch.setattr(ablate, "run_pipeline", killed_in_third)
    with pytest.raises(Killed):
        ablate.main(argv)
    names = [V.format(f, b) for f in ("true", "false") for b in ("true", "false")]
    assert calls == names[:3]
    assert set(read_json(root / "ablate.json")["variants"]) == set(names[:2])
    third = root / names[2]
    assert (third / "steps" / "train_ritc.done.json").is_file()
    assert not (third / "steps" / "make_cam.done.json").exists()

    calls.clear()
    monkeypatch.setattr(ablate, "run_pipeline", lambda *a: calls.append(Path(a[1]).name) or real(*a))
    assert ablate.main(argv) == 0
    assert calls == names[2:]                                   # finished variants are not run again
    # qape and train_cam ran once for the whole grid; every other variant adopted them
    assert sum(_starts(root, "train_cam").values()) == 1 and _starts(root, "train_cam")[names[0]] == 1
    assert sum(_starts(root, "qape").values()) == 1
    assert _starts(root, "train_ritc") == dict.fromkeys(names, 1)       # the killed variant's not redone
    state = read_json(root / "ablate.json")["variants"]
    for n in names[1:]:
        assert {"qape", "text_feats", "train_cam"} <= set(state[n]["adopted"]), n
        assert "train_ritc" not in state[n]["adopted"]
    first, second = root / names[0] / "cam_baseline" / "model.pth", root / names[1] / "cam_baseline" / "model.pth"
    assert os.stat(first).st_ino == os.stat(second).st_ino              # hard-linked, not copied
    assert (root / names[3] / "events" / "train_cam.jsonl").read_text() == \
        (root / names[0] / "events" / "train_cam.jsonl").read_text()
    for n in names:
        assert read_json(root / n / "steps" / "eval_cam.done.json")["metrics"]["miou"] >= 0

    # the grid's comparison: the two grid keys differ, nothing else
    md = (root / "compare.md").read_text()
    assert "| run | ritc.frc | ritc.brc |" in md and "Mean ± std over seeds" in md
    # tool.compare on two runs that differ in one key names exactly it and shows both runs' numbers
    a, b = root / names[0], root / names[2]
    out = compare([a, b], tmp_path / "cmp", ["full", "no_frc"])
    assert out["differing_keys"] == ["ritc.frc"]
    assert out["header"][:2] == ["run", "ritc.frc"]
    for row, d in zip(out["rows"], (a, b)):
        ritc = out["header"].index("RITC CAM")
        assert row[ritc] == f"{read_json(d / 'eval_cam.json')['miou']:.1f}"
        base = read_json(d / "cam_baseline" / "eval_cam.json")["miou"]
        assert row[out["header"].index("baseline CAM")] == f"{base:.1f}"
    assert [r[1] for r in out["rows"]] == ["true", "false"]
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert "<code>ritc.frc</code>" in page and "compare/curves_train_ritc.png" in page

    with pytest.raises(ablate.AblateError, match="another grid"):
        ablate.main([*argv, "--set", "ritc.gamma=0.5"])


def test_adopted_steps_are_those_still_adopted(tmp_path):
    """A step adopted and later rerun in the variant (its marker has a new run id) is no longer listed."""
    from tool.engine.io import append_jsonl, write_json

    for step, run_id in (("train_cam", "a"), ("train_ritc", "c")):
        write_json(tmp_path / "steps" / f"{step}.done.json", {"step": step, "run_id": run_id})
    for step, run_id in (("train_cam", "a"), ("train_ritc", "b")):
        append_jsonl(tmp_path / "metrics.jsonl", {"step": step, "run_id": run_id, "adopted_from": "/elsewhere"})
    append_jsonl(tmp_path / "metrics.jsonl", {"step": "train_ritc", "run_id": "c"})
    assert ablate.adopted_steps(tmp_path) == ["train_cam"]


def test_a_failed_variant_does_not_stop_the_grid(tmp_path):
    """A combination its step refuses (all RITC terms off) fails alone: the variants after it still run, the
    failure is returned for the caller to raise after its summary, naming the variant."""
    variants = ablate.expand(ablate.parse_grid(["ritc.brc=true,false", "ritc.reg=true,false"]), None)
    ran, recorded = [], {}

    def run(v, owners):
        ran.append(v.name)
        if v.name == "ritc.brc=true,ritc.reg=false":
            raise ablate.AblateError("run_sample.py failed")
        return {"seconds": 1.0}

    failed = ablate.run_grid(variants, tmp_path, lambda v: v.name == "ritc.brc=false,ritc.reg=false", run,
                             lambda v, r: recorded.__setitem__(v.name, r))
    assert ran == ["ritc.brc=true,ritc.reg=true", "ritc.brc=true,ritc.reg=false", "ritc.brc=false,ritc.reg=true"]
    assert sorted(recorded) == ["ritc.brc=false,ritc.reg=true", "ritc.brc=true,ritc.reg=true"]
    assert failed == ["ritc.brc=true,ritc.reg=false: run_sample.py failed"]
    with pytest.raises(ablate.AblateError, match=r"1 variant\(s\) failed.*ritc.brc=true,ritc.reg=false"):
        ablate.raise_failures(failed)
    ablate.raise_failures([])


def test_presets_are_the_papers_rows():
    """The three presets hold exactly the rows the paper reports, with its figures (Tables 4, 5 and the FAT table)."""
    t4 = ablate.preset_variants("table4", None)
    assert [(v.name, v.sets, v.paper) for v in t4] == [
        ("frc", ["ritc.frc=true", "ritc.brc=false", "ritc.reg=false"], 60.3),
        ("brc", ["ritc.frc=false", "ritc.brc=true", "ritc.reg=false"], 57.7),
        ("frc+brc", ["ritc.frc=true", "ritc.brc=true", "ritc.reg=false"], 67.1),
        ("frc+brc+reg", ["ritc.frc=true", "ritc.brc=true", "ritc.reg=true"], 67.3)]
    t5 = {v.row: (v.sets, v.paper) for v in ablate.preset_variants("table5", None)}
    assert t5 == {"no_qape": (["qape.no_qape=true", "qape.groups=[]"], 60.2),
                  "fine_grained": (["qape.no_qape=false", "qape.groups=[fine_grained]"], 61.0),
                  "alias": (["qape.no_qape=false", "qape.groups=[alias]"], 60.7),
                  "surrounding": (["qape.no_qape=false", "qape.groups=[surrounding]"], 66.3),
                  "scene": (["qape.no_qape=false", "qape.groups=[scene]"], 64.5),
                  "fine_grained+alias": (["qape.no_qape=false", "qape.groups=[fine_grained,alias]"], 61.2),
                  "surrounding+scene": (["qape.no_qape=false", "qape.groups=[surrounding,scene]"], 67.0),
                  "all": (["qape.no_qape=false", "qape.groups=[fine_grained,alias,surrounding,scene]"], 67.3)}
    fat = ablate.preset_variants("fat", [0, 1])
    assert [(v.name, v.sets, v.paper) for v in fat] == [
        ("no_fat,seed=0", ["ritc.fat=false", "seed=0"], 66.9), ("no_fat,seed=1", ["ritc.fat=false", "seed=1"], 66.9),
        ("fat,seed=0", ["ritc.fat=true", "seed=0"], 67.3), ("fat,seed=1", ["ritc.fat=true", "seed=1"], 67.3)]
    # the full method's row of every preset is the configuration's default: one run serves all three
    from tool.engine.config import Config, load_config
    full = [v for v in (*t4, *ablate.preset_variants("table5", None), *fat[2:3]) if v.paper == 67.3]
    assert [load_config(SMOKE, v.sets[:len(v.values)]) for v in full] == [load_config(SMOKE)] * 3
    assert Config().ritc.fat and Config().qape.groups == ("fine_grained", "alias", "surrounding", "scene")
    # the seed table puts the paper's figure beside the measured mean ± std: 30 and 34 -> 32.0 ± 2.0
    runs = {v.name: {"stages": {"cam_ritc": {"miou": m}}} for v, m in zip(fat, (30.0, 34.0, 40.0))}
    head, rows = ablate.seed_table(fat, runs)
    assert head == ["row", "ritc.fat", "seeds", "paper RITC CAM", "RITC CAM"]
    assert rows == [["no_fat", "false", "2", "66.9", "32.0 ± 2.0"], ["fat", "true", "1", "67.3", "40.0 ± 0.0"]]
    with pytest.raises(ablate.AblateError, match="--preset table4 and --grid together"):
        ablate.main(["--config", SMOKE, "--preset", "table4", "--grid", "ritc.frc=true,false"])
    with pytest.raises(ablate.AblateError, match="not one of"):
        ablate.preset_variants("table9", None)


def _first_terms(work_dir: Path) -> dict[str, float]:
    """The loss terms of train_ritc's first optimiser step (log_every 1 on the smoke config)."""
    from tool.engine.events import read_events
    records, _ = read_events(work_dir / "events" / "train_ritc.jsonl")
    assert records[0]["iter"] == 1
    return records[0]["terms"]


def _texts(work_dir: Path) -> tuple[list[str], list[dict]]:
    meta = read_json(work_dir / "qape" / "texts.json")
    return meta["texts"], meta["pairs"]


@pytest.mark.slow
def test_presets_run_at_smoke_size(tmp_path, monkeypatch):
    """All three presets through eval_cam on the smoke world (in-process runs, 1 RITC step, CAMs of the 8 eval
    images at one scale): each row's switches reach the step they steer, the paper's figure stands beside each
    measured one, and the full method's row, common to the three, is trained once and adopted by the others."""
    import run_sample

    models = tmp_path / "models"
    common = ["--set", f"dataset.root={tmp_path / 'toy' / 'VOC2012'}", "--set", f"toy.random_models_dir={models}",
              "--set", f"qape.vqa_model={models / 'blip'}", "--set", f"clip.model={models / 'clip'}",
              "--set", "ritc.train.max_steps=1", "--set", "ritc.train.checkpoint_every=10",
              "--set", "make_cam.scales=[1.0]", "--set", "make_cam.compare_baseline=false",
              "--set", "make_cam.split=train"]

    def in_process(config, work_dir, sets, step_args):
        run_sample.main(["--config", config, "--set", f"work_dir={work_dir}",
                         *(a for s in sets for a in ("--set", s)), *step_args])

    monkeypatch.setattr(ablate, "run_pipeline", in_process)
    t4, t5, fat = tmp_path / "table4", tmp_path / "table5", tmp_path / "fat"
    assert ablate.main(["--config", SMOKE, "--preset", "table4", "--root", str(t4), *common]) == 0
    full = t4 / "frc+brc+reg"
    for preset, root in (("table5", t5), ("fat", fat)):
        assert ablate.main(["--config", SMOKE, "--preset", preset, "--root", str(root), "--reuse", str(full),
                            *common]) == 0

    # Table 4: the loss of each row is its switched-on terms only (Eq. 1, α β γ = 10, 8, 0.2)
    for row, (a, b, g) in {"frc": (10, 0, 0), "brc": (0, 8, 0), "frc+brc": (10, 8, 0),
                           "frc+brc+reg": (10, 8, 0.2)}.items():
        t = _first_terms(t4 / row)
        assert t["loss"] == pytest.approx(a * t["frc"] + b * t["brc"] + g * t["reg"], rel=1e-5), row
    assert sum(_starts(t4, "train_cam").values()) == 1 and sum(_starts(t4, "qape").values()) == 1
    assert read_json(t4 / "ablate.json")["step_args"] == ["--until", "eval_cam"]      # a preset's default
    assert not (t4 / "frc" / "steps" / "cam_to_ir_label.done.json").exists()

    # Table 5: no-QAPE asks nothing; an FG-only row gets the "no {class}" BG text, a BG-only row the class alone
    assert (t5 / "no_qape" / "steps" / "qape.skipped.json").is_file()
    assert not (t5 / "no_qape" / "qape" / "corpus.jsonl").exists()
    names = read_json(t5 / "no_qape" / "qape" / "texts.json")["classes"]
    for row in ("no_qape", "fine_grained"):
        texts, pairs = _texts(t5 / row)
        assert pairs and all([texts[i] for i in p["bg"]] == [f"a photo of no {names[p['class']]}."] for p in pairs)
    texts, pairs = _texts(t5 / "no_qape")
    assert all(p["fg"] == [] for p in pairs)
    corpus = [json.loads(x) for x in (t5 / "fine_grained" / "qape" / "corpus.jsonl").read_text().splitlines()]
    assert corpus and all(len(r["fg"]) == 2 and r["bg"] == [] for r in corpus)
    corpus = [json.loads(x) for x in (t5 / "surrounding" / "qape" / "corpus.jsonl").read_text().splitlines()]
    assert corpus and all(r["fg"] == [] and len(r["bg"]) == 7 for r in corpus)
    texts, pairs = _texts(t5 / "surrounding")
    assert all(p["fg"] == [] for p in pairs) and any(p["bg"] for p in pairs)

    # the full method's row is adopted whole from table4's run; FAT off changes the region images
    for root, row in ((t5, "all"), (fat, "fat")):
        adopted = read_json(root / "ablate.json")["variants"][row]["adopted"]
        assert {"train_ritc", "make_cam", "eval_cam"} <= set(adopted), (root, adopted)
        assert not _starts(root, "train_ritc").get(row)
    assert _first_terms(fat / "fat") == _first_terms(full)
    assert _first_terms(fat / "no_fat") != _first_terms(fat / "fat")

    # the paper's figure beside the measured one, in every preset's compare.md
    for root, preset in ((t4, "table4"), (t5, "table5"), (fat, "fat")):
        md = (root / "compare.md").read_text()
        seeds_md = md[md.index(f"the paper's {preset} beside them"):]
        for v in ablate.preset_variants(preset, None):
            miou = read_json(root / v.name / "eval_cam.json")["miou"]
            line = next(x for x in seeds_md.splitlines() if x.startswith(f"| {v.row} |"))
            cells = [c.strip() for c in line.strip("|").split("|")]
            assert cells[len(v.values) + 2:len(v.values) + 4] == [f"{v.paper:.1f}", f"{miou:.1f} ± 0.0"], line


def test_shared_steps_are_those_every_variant_computes_alike():
    """A RITC grid shares what comes before RITC; a grid over the CAM's lr shares only what does not read the CAM;
    a step one variant does not select is nobody's to share."""
    from tool.engine.config import load_config, select_steps

    def shared(*sets_per_variant, until="eval_cam"):
        cfgs = [load_config(SMOKE, list(s)) for s in sets_per_variant]
        chosen = [select_steps({n: getattr(c.steps, n) for n in ablate.STEPS}, None, None, until) for c in cfgs]
        return ablate.shared_steps(cfgs, chosen)

    assert shared(["ritc.frc=true"], ["ritc.frc=false"]) == ["qape", "text_feats", "train_cam"]
    assert shared(["cam.train.lr=0.01"], ["cam.train.lr=0.02"]) == ["qape", "text_feats"]
    assert shared(["ritc.frc=true"], ["ritc.frc=true", "seed=1"]) == ["qape", "text_feats"]    # seed-free steps
    assert shared(["ritc.frc=true"], ["ritc.frc=false", "steps.qape=false"]) == ["train_cam"]     # qape: not in one


@pytest.mark.slow
def test_grid_as_jobs_of_submitits_local_executor(tmp_path, monkeypatch):
    """--launcher submitit --cluster local: one job makes the shared steps, then both variants are submitted at once
    as jobs that adopt them; the comparison is gathered when both have ended; job ids in jobs.jsonl / ablate.json."""
    from tool.engine.io import read_jsonl_repairing

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    models, root = tmp_path / "models", tmp_path / "grid"
    argv = ["--config", SMOKE, "--grid", "ritc.frc=true,false", "--root", str(root), "--until", "eval_cam",
            "--set", f"dataset.root={tmp_path / 'toy' / 'VOC2012'}", "--set", f"toy.random_models_dir={models}",
            "--set", f"qape.vqa_model={models / 'blip'}", "--set", f"clip.model={models / 'clip'}",
            "--launcher", "submitit", "--cluster", "local", "--gpus-per-node", "0", "--time-min", "30"]
    assert ablate.main(argv) == 0
    names = ["ritc.frc=true", "ritc.frc=false"]
    jobs = read_jsonl_repairing(root / "jobs.jsonl")
    assert len(jobs) == 3 and len({j["job_id"] for j in jobs}) == 3      # the shared steps', then one per variant
    assert jobs[0]["argv"][-2:] == ["--steps", "qape,text_feats,train_cam"]
    assert jobs[0]["work_dir"] == str(root / names[0])
    assert [j["work_dir"] for j in jobs[1:]] == [str(root / n) for n in names]
    # qape and train_cam ran once for the grid (the first job); the variants' jobs adopted them
    assert sum(_starts(root, "train_cam").values()) == 1 and sum(_starts(root, "qape").values()) == 1
    assert _starts(root, "train_ritc") == dict.fromkeys(names, 1)
    state = read_json(root / "ablate.json")["variants"]
    assert {n: state[n]["job_id"] for n in names} == {n: j["job_id"] for n, j in zip(names, jobs[1:])}
    assert {"qape", "text_feats", "train_cam"} <= set(state[names[1]]["adopted"])
    # both variants were in the queue before either had finished
    finished = min(read_json(root / n / "steps" / "eval_cam.done.json")["finished"] for n in names)
    assert max(j["submitted"] for j in jobs[1:]) <= finished
    md = (root / "compare.md").read_text()
    assert "| run | ritc.frc |" in md and all(n in md for n in names)
    for n in names:
        assert (root / "submitit" / f"{state[n]['job_id']}_0_log.out").is_file()
