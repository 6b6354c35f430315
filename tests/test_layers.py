"""Imports go one way: a module may import its own layer or lower ones, never a higher one.

    net < tool.engine < tool.data, tool.seg < voc12, coco14 < tool.toy < step < tool/*.py (CLIs), bench, run_sample

Every ``import`` statement counts, inside functions too. Modules found by name at run time (the runner's
``step.<name>``, the dataset registry's table) are the only way down-to-up, by design.

The command-line tools (``tool/*.py``) sit above the steps but import neither a step nor ``run_sample``: what a
tool shares with a step lives below both (e.g. ``tool.seg.cam_infer``), and a tool runs steps through the
runner, by name. No module under ``tool/`` imports ``step`` or ``run_sample``.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("net", "tool", "step", "voc12", "coco14", "bench", "run_sample")
LAYERS = {"net": 0, "tool.engine": 1, "tool.data": 2, "tool.seg": 2, "voc12": 3, "coco14": 3, "tool.toy": 4,
          "step": 5, "tool": 6, "bench": 7, "run_sample": 7, "step.__main__": 7}
# Packages a module may not import whatever its layer: prefix of the importer -> prefixes it may not import.
FORBIDDEN = {"tool": ("step", "run_sample")}


def layer_of(module: str) -> tuple[str, int]:
    """The layer of a dotted module name: its longest prefix in LAYERS."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name, LAYERS[name]
    raise KeyError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import of a project package in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # ``from tool import dist`` imports the module tool.dist, not the package tool
            names = [f"{node.module}.{a.name}" for a in node.names] if node.module in ("tool", "tool.engine") \
                else [node.module]
        else:
            continue
        out += [(node.lineno, n) for n in names if n.split(".")[0] in PACKAGES]
    return out


def violations(paths) -> list[str]:
    bad = []
    for path in paths:
        me, mine = layer_of(module_name(path))
        for line, target in imports_of(path):
            them, theirs = layer_of(target)
            if theirs > mine:
                bad.append(f"{path.relative_to(ROOT)}:{line} ({me}) imports {target} ({them})")
            elif any(_within(me, a) and _within(target, b) for a, banned in FORBIDDEN.items() for b in banned):
                bad.append(f"{path.relative_to(ROOT)}:{line} ({me}) imports {target} ({them}): a tool imports no step")
    return bad


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def project_files():
    files = [ROOT / "run_sample.py"]
    for pkg in ("net", "tool", "step", "voc12", "coco14", "bench"):
        files += sorted((ROOT / pkg).rglob("*.py"))
    return files


def test_no_module_imports_a_higher_layer():
    assert violations(project_files()) == []


MAX_LINES = 700    # a module longer than this is split along its seams (as tool/toy/vlp/ was)


def longest_modules(limit: int) -> list[str]:
    """``path: lines`` of every .py file under net/, tool/ and step/ longer than ``limit`` lines."""
    out = []
    for pkg in ("net", "tool", "step"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > limit:
                out.append(f"{path.relative_to(ROOT)}: {n}")
    return out


def test_no_module_is_longer_than_the_limit():
    assert longest_modules(MAX_LINES) == []
    assert len(longest_modules(400)) >= 3     # the check reads the files: some are over 400 lines


def test_every_module_has_a_layer():
    for path in project_files():
        layer_of(module_name(path))


@pytest.mark.parametrize("source, module, expected", [
    ("from step.report import run\n", "tool/engine/x.py",
     ["tool/engine/x.py:1 (tool.engine) imports step.report (step)"]),
    ("from tool.toy.world import generate_toy_world\n", "tool/engine/x.py",
     ["tool/engine/x.py:1 (tool.engine) imports tool.toy.world (tool.toy)"]),
    ("def f():\n    from step.train_cam import run\n", "net/x.py", ["net/x.py:2 (net) imports step.train_cam (step)"]),
    ("from tool import stage_study\n", "tool/toy/x.py", ["tool/toy/x.py:1 (tool.toy) imports tool.stage_study (tool)"]),
    ("from step.make_cam import multiscale_cam\n", "tool/predict.py",
     ["tool/predict.py:1 (tool) imports step.make_cam (step): a tool imports no step"]),
    ("def f():\n    import run_sample\n", "tool/x.py", ["tool/x.py:2 (tool) imports run_sample (run_sample)"]),
    ("from step.make_cam import run\n", "bench/x.py", []),  # bench is above the steps and may
    ("import voc12.dataset\n", "coco14/x.py", []),            # the same layer
    ("from tool.engine import dist\n", "tool/seg/x.py", []),  # a lower one
])
def test_the_checker_catches_an_upward_import(monkeypatch, source, module, expected):
    path = ROOT / module
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: source)
    assert violations([path]) == expected
