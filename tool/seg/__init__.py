"""Scoring and post-processing of segmentations: dense CRF, IR labels, confusion-matrix metrics, the charts
of scores and training curves (the report, tool.compare), and CAM inference (cam_infer: make_cam's and
tool.predict's)."""
