"""The configuration reference (``docs/configuration.md``), generated from the config dataclasses.

Each key's default and meaning are written once, in ``tool/engine/config.py`` (the field and its
comment); this renders them as one table per section, so the reference cannot drift from the code
(``tests/test_config.py`` checks the file is current)::

    python -m tool.engine.config_doc --write      # regenerate docs/configuration.md
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import typing
from pathlib import Path

from tool.engine import config as config_module
from tool.engine.config import Config, to_dict

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

INTRO = """# Configuration reference

Generated from `tool/engine/config.py` by `python -m tool.engine.config_doc --write` (a test keeps it current):
each default and its meaning are written once, there.

Every key is checked when the config loads: an unknown key, a value of the wrong type or one outside a
key's allowed values stops the run with the key and the file named (the steps trust the loaded config and do not
check an allowed value again). `--set section.key=value` overrides
(values parsed as YAML). Paths are relative to the current directory. A config states only what differs
from the file it names as `base:` (a path relative to it), or from these defaults if it has none:
`configs/voc12.yaml` (the paper's VOC settings are the defaults), `configs/coco14.yaml` (`base: voc12.yaml`),
`configs/demo.yaml`, `configs/smoke.yaml`. A key that was renamed still loads, with a warning naming its new
name.
"""


def field_comments(cls: type) -> dict[str, str]:
    """{field: its comment}: the comment at the end of the field's line, else the comment lines above it."""
    lines, _ = inspect.getsourcelines(cls)
    out = {}
    class_def = ast.parse(inspect.cleandoc("".join(lines))).body[0]
    if not isinstance(class_def, ast.ClassDef):
        raise TypeError(f"field_comments: {cls!r} is not a class defined in source")
    for node in class_def.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            continue
        text = lines[node.lineno - 1]
        above: list[str] = []
        i = node.lineno - 2
        while i >= 0 and lines[i].strip().startswith("#"):
            above.insert(0, lines[i].strip().lstrip("#").strip())
            i -= 1
        at = _comment_at(text)
        trailing = text[at + 1:].strip() if at >= 0 else ""
        follow = []   # a comment continued on the next lines, aligned under the first
        j = node.end_lineno or node.lineno     # (set by ast.parse; None only for hand-built nodes)
        while trailing and j < len(lines) and lines[j].strip().startswith("#") and not _starts_field(lines, j):
            follow.append(lines[j].strip().lstrip("#").strip())
            j += 1
        out[node.target.id] = " ".join([trailing, *follow]).strip() if trailing else " ".join(above)
    return out


def _comment_at(line: str) -> int:
    """Where the comment of ``line`` starts (its ``#`` outside a string literal), or -1."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
    return -1


def _starts_field(lines: list[str], j: int) -> bool:
    """A comment line that introduces the next field (followed by a field line, not indented as a continuation)."""
    return len(lines[j]) - len(lines[j].lstrip()) <= 4


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(tp) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " \\| ".join(f"`{a}`" for a in typing.get_args(tp))
    return str(tp).replace("typing.", "").replace("<class '", "").replace("'>", "").replace("|", "\\|")


def _value(v) -> str:
    import yaml
    text = yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
    return f"`{text}`"


def section_table(name: str, section, prefix: str, note: str = "") -> list[str]:
    """The table of ``section`` (a default section instance, as it sits in its parent), then its sub-sections."""
    cls = type(section)
    hints = typing.get_type_hints(cls, vars(config_module))
    notes = field_comments(cls)
    defaults = to_dict(section)
    rows = [f"| `{prefix}{f.name}` | {_type(hints[f.name])} | {_value(defaults[f.name])} "
            f"| {_cell(notes.get(f.name, ''))} |"
            for f in dataclasses.fields(cls) if not dataclasses.is_dataclass(hints[f.name])]
    out = [f"## `{name}`" if name else "## top level", "", inspect.cleandoc(cls.__doc__ or "")]
    out += ["", note] if note else []
    out += ["", "| key | type | default | meaning |", "|---|---|---|---|", *rows, ""]
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]) and prefix:   # a section inside a section (irn.crf)
            out += section_table(f"{prefix}{f.name}", getattr(section, f.name), f"{prefix}{f.name}.",
                                 notes.get(f.name, ""))
    return out


def reference_markdown() -> str:
    cfg = Config()
    out = [INTRO, *section_table("", cfg, "")]
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += section_table(f.name, value, f"{f.name}.")
    return "\n".join(out).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tool.engine.config_doc", description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help=f"write {DOC} (default: print it)")
    args = p.parse_args(argv)
    text = reference_markdown()
    if args.write:
        from tool.engine.io import write_text
        write_text(DOC, text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
