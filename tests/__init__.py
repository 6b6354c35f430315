"""Test package (lets spawned DDP workers import shared test helpers)."""
