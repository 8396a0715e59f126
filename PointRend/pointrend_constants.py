"""PointRend facts the torch-free scripts need (preprocess, postprocess); model.py uses them too.

Kept apart from model.py so that those scripts do not import torch: a second or two of start-up
and about 450 MiB per process, and their worker processes can then be forked.
"""
from __future__ import annotations

from common.cli import UserError

NUM_CLASSES = 19
# Cityscapes test size of the published model (INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST).
DEFAULT_INPUT_HW = (1024, 2048)
# detectron2 MODEL.PIXEL_MEAN / PIXEL_STD, BGR order, 0..255 scale (MSRA/C2 convention).
PIXEL_MEAN_BGR = (103.530, 116.280, 123.675)
PIXEL_STD_BGR = (1.0, 1.0, 1.0)
# res5 stride: the FPN top-down sums need every level to be exactly half the previous one.
SIZE_DIVISIBILITY = 32


def check_input_hw(input_hw) -> tuple[int, int]:
    """Height and width must be positive multiples of 32 (the FPN's size divisibility)."""
    try:
        height, width = (int(v) for v in input_hw)
    except (TypeError, ValueError):
        raise UserError(f"input size must be two integers H W, got {input_hw!r}") from None
    if height <= 0 or width <= 0 or height % SIZE_DIVISIBILITY or width % SIZE_DIVISIBILITY:
        raise UserError(f"input size {height}x{width}: height and width must be positive "
                        f"multiples of {SIZE_DIVISIBILITY}")
    return height, width
