"""Shared utilities: config, runtime (device, seed, logging, dist), I/O, checkpoints, metrics, images."""
