"""Pipeline steps: one module per stage, each exposing ``run(cfg, ctx) -> dict`` (DESIGN §3)."""
