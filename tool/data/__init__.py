"""Data: the dataset interface and registry, torch Datasets, image utilities, palette, CAM files."""
