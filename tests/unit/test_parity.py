import numpy as np
import pytest

from common.files.bins import write_bin
from common.cli import UserError
from common.eval.parity import compare_arrays, compare_output_folders


def test_identical_arrays():
    a = np.random.default_rng(0).standard_normal((3, 4, 4)).astype(np.float32)
    diff = compare_arrays(a, a.copy(), class_axis=0)
    assert diff.max_abs == 0 and diff.max_rel == 0 and diff.cosine == pytest.approx(1) and diff.argmax_mismatch == 0


def test_relative_difference_is_against_the_value_range():
    ref = np.array([0.0, 10.0, 5.0])
    cand = np.array([0.0, 10.0, 5.5])
    diff = compare_arrays(ref, cand)
    assert diff.max_abs == pytest.approx(0.5) and diff.max_rel == pytest.approx(0.05)
    assert diff.within(0.06) and not diff.within(0.04)


def test_argmax_mismatch_fraction():
    ref = np.array([[1.0, 0.0], [0.0, 1.0]])  # class axis 0: argmax per column = [0, 1]
    cand = np.array([[1.0, 2.0], [0.0, 1.0]])  # argmax = [0, 0]
    assert compare_arrays(ref, cand, class_axis=0).argmax_mismatch == 0.5


def test_folders_need_partners(tmp_path):
    write_bin(tmp_path / "r" / "a_0.bin", np.ones(4, np.float32))
    write_bin(tmp_path / "c" / "a_0.bin", np.ones(4, np.float32) * 1.5)
    assert compare_output_folders(tmp_path / "r", tmp_path / "c", ["float32"]).max_abs == pytest.approx(0.5)
    write_bin(tmp_path / "c" / "b_0.bin", np.ones(4, np.float32))
    with pytest.raises(UserError, match=r"c/b_0\.bin: no such output in .*/r"):
        compare_output_folders(tmp_path / "r", tmp_path / "c", ["float32"])


def test_class_changes_are_pooled_over_files_of_any_size(tmp_path):
    small = np.zeros((3, 2), np.float32)
    large = np.zeros((3, 6), np.float32)
    flipped = small.copy()
    flipped[1, 0] = 1.0  # one of the 2 positions of the small file changes class
    for folder, first in (("r", small), ("c", flipped)):
        write_bin(tmp_path / folder / "a_0.bin", first)
        write_bin(tmp_path / folder / "b_0.bin", large)
    difference = compare_output_folders(tmp_path / "r", tmp_path / "c", ["float32"], [3])
    assert (difference.class_changed, difference.class_positions) == (1, 8)
    assert difference.argmax_mismatch == pytest.approx(1 / 8)  # not the mean of 1/2 and 0
