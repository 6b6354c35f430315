"""QA-CLIMS pipeline entry point: runs the numbered steps of docs/design.md §3 from one YAML config.

    python run_sample.py --config configs/voc12.yaml [--steps a,b | --from x --until y]
                         [--set section.key=value ...] [--force] [--list] [--check]

Steps whose done marker matches the config are skipped, so rerunning after a crash resumes.
Under ``torchrun`` every rank runs this; per-image steps shard images, training steps use DDP.
"""
from __future__ import annotations

import argparse
import logging
import sys

from tool.data.base import DatasetError
from tool.engine import dist
from tool.engine.config import STEPS, load_config, select_steps
from tool.engine.runner import is_done, run_session, run_step
from tool.engine.runtime import make_context
from tool.toy.ensure import ensure_toy_world

log = logging.getLogger("qa_clims")


def main(argv: list[str] | None = None) -> dict[str, dict]:
    """Run the pipeline; returns {step: metrics} of the steps selected."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description="QA-CLIMS: weakly-supervised semantic segmentation pipeline.")
    p.add_argument("--config", default="configs/demo.yaml", help="YAML config (default: configs/demo.yaml)")
    p.add_argument("--steps", help="comma-separated steps to run (overrides the config's step toggles)")
    p.add_argument("--from", dest="start", help="first step to run")
    p.add_argument("--until", help="last step to run")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set cam.train.epochs=3 (repeatable)")
    p.add_argument("--force", action="store_true", help="rerun the selected steps even if up to date")
    p.add_argument("--list", action="store_true", help="list the steps and whether each is done, then exit")
    p.add_argument("--check", action="store_true",
                   help="preflight: list every problem the selected steps would meet (data, weights, device, memory, "
                        "disk), run nothing; exit 1 if any is fatal")
    args = p.parse_args(argv)

    cfg = load_config(args.config, args.set)
    toggles = {name: getattr(cfg.steps, name) for name in STEPS if hasattr(cfg.steps, name)}
    chosen = select_steps(toggles, args.steps, args.start, args.until)
    if args.check:
        return check(cfg, chosen)
    ctx = make_context(cfg, force=args.force)
    if args.list:
        try:
            for s in STEPS:
                try:
                    state = "done" if is_done(s, cfg, ctx) else "pending"
                except DatasetError as e:     # the digest reads the data: a step that would fail on it is not done
                    state = f"pending (its data does not read: {e})"
                log.info("%-16s %-8s %s", s, "selected" if s in chosen else "-", state)
            return {}
        finally:
            dist.cleanup()
    with run_session(cfg, ctx, ["run_sample.py", *argv]):
        ensure_toy_world(cfg)
        log.info("steps to run: %s", ", ".join(chosen) or "(none)")
        return {name: run_step(name, cfg, ctx, force=args.force) for name in chosen}


def check(cfg, chosen: list[str]) -> dict:
    """``--check``: print the preflight's problems (tool/preflight.py); SystemExit(1) when one is fatal."""
    from tool.engine.runner import step_needs
    from tool.preflight import preflight

    problems = preflight(cfg, chosen, inputs_of=lambda s: step_needs(s, cfg))
    fatal = sum(pr.fatal for pr in problems)
    summary = f"preflight of {', '.join(chosen) or '(no steps)'}: {fatal} fatal, {len(problems) - fatal} note(s)"
    sys.stdout.write("".join(pr.line() + "\n" for pr in problems) + summary + "\n")
    if fatal:
        raise SystemExit(1)
    return {"problems": [pr.__dict__ for pr in problems]}


if __name__ == "__main__":
    from tool.engine.cli import run_cli
    sys.exit(run_cli(main))   # the project's own errors print one line; others their traceback
