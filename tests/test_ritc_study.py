"""tool.ritc_study: the summary and table by hand, and a study that resumes after an interruption."""
from __future__ import annotations

import pytest

from tool import ritc_study
from tool.engine.io import read_json


def _m(miou, best, base, base_best):
    return {"miou": miou, "best_miou": best, "baseline_miou": base, "baseline_best_miou": base_best}


RESULTS = {"0": {"ritc": _m(30.0, 31.0, 20.0, 21.0), "no_qape": _m(25.0, 26.0, 20.0, 21.0)},
           "1": {"ritc": _m(34.0, 35.0, 22.0, 23.0), "no_qape": _m(27.0, 28.0, 22.0, 23.0)}}


def test_summary_by_hand():
    s = ritc_study.summarize(RESULTS)
    assert s["baseline"] == {"mean": 21.0, "std": 1.0, "n": 2}
    assert s["ritc"]["mean"] == 32.0 and s["ritc"]["std"] == 2.0 and s["ritc_best"]["mean"] == 33.0
    assert s["no_qape"]["mean"] == 26.0 and s["no_qape_best"]["mean"] == 27.0
    table = ritc_study.format_table(RESULTS, s).splitlines()
    assert table[0].split() == ["seed", "baseline", "ritc", "no_qape"]
    assert table[1].split() == ["0", "20.0", "(21.0)", "30.0", "(31.0)", "25.0", "(26.0)"]
    assert table[-1].split()[-4:] == ["26.0", "±", "1.0", "(27.0)"]


def test_study_resumes_and_refuses_another_config(tmp_path, monkeypatch, caplog):
    calls = []

    def fake(config, work_dir, seed, variant, extra):
        calls.append((seed, variant))
        if len(calls) == 3:
            raise KeyboardInterrupt   # interrupted during the third run
        return RESULTS[str(seed)][variant]

    monkeypatch.setattr(ritc_study, "run_variant", fake)
    argv = ["--config", "configs/demo.yaml", "--seeds", "0", "1", "--root", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        ritc_study.main(argv)
    assert set(read_json(tmp_path / "study.json")["results"]["0"]) == {"ritc", "no_qape"}
    calls.clear()
    monkeypatch.setattr(ritc_study, "run_variant", lambda c, w, seed, v, e: calls.append((seed, v)) or
                        RESULTS[str(seed)][v])
    assert ritc_study.main(argv) == 0
    assert calls == [(1, "ritc"), (1, "no_qape")]          # seed 0 was not rerun
    assert read_json(tmp_path / "study.json")["summary"]["ritc"]["mean"] == 32.0
    assert "mean ± std" in caplog.text
    with pytest.raises(SystemExit, match="another --root"):
        ritc_study.main(argv + ["--set", "ritc.alpha=5"])
