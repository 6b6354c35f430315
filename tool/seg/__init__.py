"""Scoring and post-processing of segmentations: dense CRF, IR labels, confusion-matrix metrics."""
