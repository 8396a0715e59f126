"""Model input sizes given on the command line, checked against one stated bound.

`--size 60000` would make a preprocess try to allocate tens of gigabytes per image (and an
export a dummy input as large) before failing with a traceback. Every size a pack script
takes is checked here first: one sample's input and output tensors together may take at most
MAX_SAMPLE_BYTES. The guides' sizes are far below it (PointRend at 1024x2048, the largest,
needs 184 MB: a 25 MB input bin and 159 MB of logits).
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from common.cli import UserError

MAX_SAMPLE_BYTES = 4 << 30  # 4 GiB of inputs and outputs per sample


def tensor_bytes(shape: Sequence[int], dtype=np.float32) -> int:
    return math.prod(int(d) for d in shape) * np.dtype(dtype).itemsize


def check_run_size(given: str, input_hw: Sequence[int], input_channels: int = 3,
                   output_shapes: Callable[[tuple[int, int]], list[tuple[int, ...]]] | None = None,
                   dtype=np.float32) -> tuple[int, int]:
    """(height, width) when positive and within the bound; otherwise one line starting with
    `given`, the arguments as the user typed them (e.g. "--size 60000")."""
    height, width = (int(v) for v in input_hw)
    if height <= 0 or width <= 0:
        raise UserError(f"{given}: sizes must be positive")
    input_bytes = tensor_bytes((input_channels, height, width), dtype)
    output_bytes = sum(tensor_bytes(shape, dtype) for shape in output_shapes((height, width))) if output_shapes else 0
    if input_bytes + output_bytes > MAX_SAMPLE_BYTES:
        outputs = f" and its outputs {_gb(output_bytes)}" if output_shapes else ""
        raise UserError(f"{given}: one input of {input_channels}x{height}x{width} {np.dtype(dtype).name} would take "
                        f"{_gb(input_bytes)}{outputs}, more than the bound of {_gb(MAX_SAMPLE_BYTES)} per sample")
    return height, width


def _gb(nbytes: int) -> str:
    if nbytes < 1 << 30:
        return f"{nbytes / (1 << 20):.0f} MiB"
    return f"{nbytes / (1 << 30):.1f} GiB"
