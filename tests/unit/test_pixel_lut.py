"""common.data.pixel_lut: the table reproduces the reference normalisation bit for bit."""
from __future__ import annotations

import numpy as np
import pytest

from common.pipeline.packs import pack_module
from common.data.pixel_lut import PixelLUT

hrnet_preprocess = pack_module("3D_HRNet", "HRNet_preprocess")
pointrend_preprocess = pack_module("PointRend", "PointRend_preprocess")


def _image(seed: int, hw=(37, 53)) -> np.ndarray:
    image = np.random.default_rng(seed).integers(0, 256, size=(*hw, 3), dtype=np.uint8)
    image[0, :3] = [[0, 0, 0], [255, 255, 255], [0, 128, 255]]  # both ends of the range
    return image


def test_hrnet_bins_are_bit_identical_to_the_reference_formula():
    image = _image(0)
    expected = hrnet_preprocess.normalise_bgr_reference(image)
    got = hrnet_preprocess.normalise_bgr(image)
    assert got.dtype == np.float32 and got.shape == expected.shape and got.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()


def test_pointrend_bins_are_bit_identical_to_the_reference_formula():
    image = _image(1)
    expected = pointrend_preprocess.subtract_mean_reference(image)
    assert pointrend_preprocess.subtract_mean(image).tobytes() == expected.tobytes()


def test_channels_come_from_the_named_source_channel():
    def reference(hwc):  # out 0 <- in 2 (x 1), out 1 <- in 0 (x 10), out 2 <- in 1 (x 100)
        chw = hwc.astype(np.float32).transpose(2, 0, 1)
        return np.stack([chw[2], chw[0] * 10, chw[1] * 100])

    image = _image(2)
    np.testing.assert_array_equal(PixelLUT(reference, (2, 0, 1))(image), reference(image))


def test_a_reference_of_the_wrong_shape_or_a_non_uint8_image_is_refused():
    with pytest.raises(ValueError, match="float32 CHW"):
        PixelLUT(lambda hwc: hwc.astype(np.float64).transpose(2, 0, 1), (0, 1, 2))
    lut = PixelLUT(lambda hwc: hwc.astype(np.float32).transpose(2, 0, 1), (0, 1, 2))
    with pytest.raises(ValueError, match="uint8"):
        lut(np.zeros((4, 4, 3), dtype=np.float32))


refinenet_preprocess = pack_module("RefineNet", "RefineNet_preprocess")


def _refinenet_full_canvas(rgb: np.ndarray, size: int) -> np.ndarray:
    """The guide's chain literally: float image, resize, pad with the mean colour, normalise all."""
    import cv2
    box = refinenet_preprocess.letterbox(rgb.shape[:2], size)
    image = rgb.astype(np.float32)
    if box.resized_hw != box.original_hw:
        image = cv2.resize(image, box.resized_hw[::-1], interpolation=cv2.INTER_LINEAR)
    canvas = np.empty((size, size, 3), dtype=np.float32)
    canvas[...] = refinenet_preprocess.MEAN_RGB * 255.0
    canvas[box.pad_top:box.pad_top + box.resized_hw[0], box.pad_left:box.pad_left + box.resized_hw[1]] = image
    return np.ascontiguousarray(refinenet_preprocess.normalise(canvas).transpose(2, 0, 1))


@pytest.mark.parametrize("hw", [(375, 500), (500, 334), (240, 320), (480, 640)])
def test_refinenet_bins_are_bit_identical_to_the_full_canvas_chain(hw):
    rgb = _image(hw[0], hw)
    chw, _ = refinenet_preprocess.preprocess_image(rgb, 500)
    assert chw.tobytes() == _refinenet_full_canvas(rgb, 500).tobytes()
