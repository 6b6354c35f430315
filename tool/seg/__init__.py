"""Scoring and post-processing of segmentations: dense CRF, IR labels, confusion-matrix metrics, and the
charts of scores and training curves (the report, tool.compare)."""
