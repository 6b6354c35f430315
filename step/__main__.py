"""``python -m step <name> --config X [--set k=v ...] [--force]``: one step alone, by the same runner and rules
as ``run_sample.py --steps <name>`` (which it is)."""
import sys

import run_sample
from tool.engine.cli import run_cli

USAGE = "usage: python -m step <name> --config <yaml> [--set section.key=value ...] [--force]"


def main(argv: list[str] | None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0].startswith("-"):
        raise SystemExit(f"{USAGE}\nsteps: {', '.join(run_sample.STEPS)}")
    if "--config" not in argv:
        raise SystemExit(f"python -m step {argv[0]}: --config is required ({USAGE})")
    return run_sample.main(["--steps", argv[0], *argv[1:]])


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:]))
