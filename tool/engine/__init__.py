"""The engine: config, runner, runtime (device, seed, logging, dist), I/O, checkpoints, the training loop."""
