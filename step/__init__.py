"""Pipeline steps: one module per stage, each exposing ``run(cfg, ctx) -> dict`` (docs/design.md §3)."""
