"""common.eval.upsample.bilinear_argmax against torch's F.interpolate + argmax."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.eval.upsample import argmax_classes, bilinear_argmax, linear_taps, settled_cells


def _torch_argmax(logits: np.ndarray, size: tuple[int, int], align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    """torch's class map and, per pixel, the gap between its two largest upsampled logits."""
    with torch.no_grad():
        upsampled = F.interpolate(torch.from_numpy(logits)[None], size=size, mode="bilinear",
                                  align_corners=align_corners)[0]
        top2 = upsampled.topk(2, dim=0).values
        return upsampled.argmax(0).numpy(), (top2[0] - top2[1]).numpy()


def _blocky_logits(rng, classes: int, hw: tuple[int, int], block: int) -> np.ndarray:
    """Logits of piecewise-constant regions plus noise: like a network's, mostly settled."""
    coarse = rng.integers(0, classes, size=(hw[0] // block + 1, hw[1] // block + 1))
    regions = np.kron(coarse, np.ones((block, block), dtype=np.int64))[:hw[0], :hw[1]]
    one_hot = (np.arange(classes)[:, None, None] == regions[None]).astype(np.float32) * 4.0
    return (one_hot + rng.normal(scale=0.7, size=(classes, *hw))).astype(np.float32)


@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("case", ["blocky", "noise", "upsample_x4", "odd_sizes", "downsample"])
def test_matches_torch_except_exact_near_ties(case, align_corners):
    rng = np.random.default_rng(sum(map(ord, case)))
    if case == "blocky":
        logits, size = _blocky_logits(rng, 19, (32, 64), block=6), (128, 256)
    elif case == "noise":  # every cell unsettled: the exact path everywhere
        logits, size = rng.normal(size=(19, 16, 24)).astype(np.float32), (64, 96)
    elif case == "upsample_x4":
        logits, size = _blocky_logits(rng, 5, (20, 30), block=4), (80, 120)
    elif case == "odd_sizes":
        logits, size = _blocky_logits(rng, 7, (13, 17), block=3), (50, 67)
    else:
        logits, size = _blocky_logits(rng, 4, (40, 40), block=8), (25, 33)
    expected, gap = _torch_argmax(logits, size, align_corners)
    got = bilinear_argmax(logits, size, align_corners)
    assert got.dtype == np.uint8 and got.shape == size
    differs = got != expected
    # float32 rounding of the interpolation may only decide exact near-ties
    assert not differs.any() or gap[differs].max() < 1e-5, gap[differs].max()
    assert differs.mean() < 1e-3


def test_taps_are_torchs_sampling_positions():
    # torch's own weights: interpolate a ramp 0..n-1 and read back the sampled position
    for align_corners in (True, False):
        for n_in, n_out in ((5, 17), (256, 1024), (7, 3), (9, 9)):
            ramp = torch.arange(n_in, dtype=torch.float32)[None, None, None].expand(1, 1, 2, n_in).contiguous()
            with torch.no_grad():
                sampled = F.interpolate(ramp, size=(2, n_out), mode="bilinear", align_corners=align_corners)
            taps = linear_taps(n_in, n_out, align_corners)
            ours = taps.index0 * taps.weight0 + taps.index1 * taps.weight1
            np.testing.assert_allclose(ours, sampled[0, 0, 0].numpy(), atol=1e-5)
            assert (taps.index1 - taps.index0 <= 1).all() and (taps.index1 < n_in).all()


def test_cells_with_a_disagreeing_or_unsure_corner_are_not_settled():
    top = np.array([[1, 1, 1], [1, 1, 2], [1, 1, 1]])
    confident = np.ones_like(top, dtype=bool)
    confident[2, 0] = False
    settled = settled_cells(top, confident)
    # cell (i, j) covers corners (i..i+1, j..j+1), clamped at the last row/column
    expected = np.array([[True, False, False], [False, False, False], [False, True, True]])
    np.testing.assert_array_equal(settled, expected)


def test_ties_go_to_the_lowest_class_as_torch():
    logits = np.zeros((3, 4, 4), dtype=np.float32)
    logits[1] = 1.0
    logits[2] = 1.0
    assert (bilinear_argmax(logits, (8, 8), align_corners=True) == 1).all()


def test_argmax_classes_is_numpys_first_maximum():
    rng = np.random.default_rng(3)
    logits = rng.integers(0, 4, size=(19, 30, 40)).astype(np.float32)  # many exact ties
    got = argmax_classes(logits)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, logits.argmax(axis=0))
