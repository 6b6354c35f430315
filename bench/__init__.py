"""Benchmarks: the official-structure version of each hot spot against ours, on the same inputs."""
