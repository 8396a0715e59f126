"""Mask R-CNN (mmdet 2.8) facts the torch-free scripts need (preprocess, postprocess); model.py uses them too.

Kept apart from model.py so that those scripts do not import torch: about 1.2 s of start-up and
several hundred MiB per process, and their `--workers` processes can then be forked instead of
spawned (common/parallel.py spawns once torch is imported).
"""
from __future__ import annotations

NUM_CLASSES = 80

# mmdet 2.8 Normalize (RGB order) used by the preprocess; kept with the model as its contract.
PIXEL_MEAN_RGB = (123.675, 116.28, 103.53)
PIXEL_STD_RGB = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32

# test_cfg.rcnn.max_per_img: the fixed number of output rows (padded when fewer are found)
MAX_PER_IMG = 100
# mask head output: one MASK_SIZE x MASK_SIZE map per class and detection
MASK_SIZE = 28
