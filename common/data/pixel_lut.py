"""uint8 image -> normalised float32 CHW through a per-channel lookup table.

Why: a normalisation such as `(x / 255 - mean) / std` maps each (channel, uint8 value) to one
float, so 3 x 256 numbers describe it completely. The table is built by running the pack's own
reference function on the 256 possible values, so the bins stay bit-identical to it
(float64 steps, rounding order and all), while OpenCV's LUT fills a 1024x2048 image in a few
milliseconds instead of tens of passes of numpy arithmetic.
"""
from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

UINT8_VALUES = 256


class PixelLUT:
    """`lut(hwc_uint8)` == `reference(hwc_uint8)` for a reference that works per pixel value.

    `reference` takes an HWC uint8 image and returns CHW float32; output channel c must depend
    only on input channel `source_channels[c]` (e.g. (2, 1, 0) for a BGR -> RGB reference).
    """

    def __init__(self, reference: Callable[[np.ndarray], np.ndarray], source_channels: Sequence[int]):
        self.source_channels = tuple(int(c) for c in source_channels)
        ramp = np.repeat(np.arange(UINT8_VALUES, dtype=np.uint8)[None, :, None], len(self.source_channels), axis=2)
        values = np.asarray(reference(ramp))
        if values.shape != (len(self.source_channels), 1, UINT8_VALUES) or values.dtype != np.float32:
            raise ValueError(f"reference returned {values.dtype} {values.shape}, expected float32 CHW "
                             f"({len(self.source_channels)}, 1, {UINT8_VALUES})")
        self.tables = [np.ascontiguousarray(values[c, 0]) for c in range(len(self.source_channels))]

    def __call__(self, image_hwc: np.ndarray) -> np.ndarray:
        if image_hwc.dtype != np.uint8 or image_hwc.ndim != 3:
            raise ValueError(f"expected an HWC uint8 image, got {image_hwc.dtype} {image_hwc.shape}")
        planes = cv2.split(image_hwc)
        out = np.empty((len(self.tables), *image_hwc.shape[:2]), dtype=np.float32)
        for channel, (table, source) in enumerate(zip(self.tables, self.source_channels)):
            out[channel] = cv2.LUT(planes[source], table)
        return out
