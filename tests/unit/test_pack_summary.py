"""common.pack_summary: the class-mismatch column next to the value differences."""
from __future__ import annotations

import numpy as np
import pytest

from common.files.bins import write_bin
from common.cli import UserError
from common.eval.parity import compare_output_folders
from common.summary.markdown import SUMMARY_COLUMNS, summary_markdown


def _two_folders(tmp_path, reference: dict, candidate: dict):
    for folder, arrays in (("reference", reference), ("candidate", candidate)):
        for name, array in arrays.items():
            write_bin(tmp_path / folder / name, array)
    return tmp_path / "reference", tmp_path / "candidate"


def test_one_flipped_position_of_per_class_scores(tmp_path):
    logits = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    flipped = logits.copy()
    top = logits[:, 2, 2].argmax()
    flipped[(top + 1) % 3, 2, 2] = logits[top, 2, 2] + 1.0  # another class wins at one position
    reference, candidate = _two_folders(tmp_path, {"a_0.bin": logits, "b_0.bin": logits},
                                        {"a_0.bin": flipped, "b_0.bin": logits})
    difference = compare_output_folders(reference, candidate, ["float32"], [3])
    assert difference.argmax_mismatch == pytest.approx((1 / 20 + 0) / 2)
    assert difference.max_abs > 0
    assert compare_output_folders(reference, candidate, ["float32"]).argmax_mismatch is None


def test_class_maps_count_differing_ids_and_other_outputs_are_left_out(tmp_path):
    scores = np.zeros(20, dtype=np.float32)
    class_map = np.arange(10, dtype=np.uint8)
    changed = class_map.copy()
    changed[[1, 7]] = 3
    reference, candidate = _two_folders(tmp_path, {"a_0.bin": scores, "a_1.bin": class_map},
                                        {"a_0.bin": scores, "a_1.bin": changed})
    difference = compare_output_folders(reference, candidate, ["float32", "uint8"], [None, 19])
    assert difference.argmax_mismatch == pytest.approx(0.2)


def test_scores_that_do_not_split_into_the_classes_name_the_file(tmp_path):
    values = np.zeros(20, dtype=np.float32)
    reference, candidate = _two_folders(tmp_path, {"a_0.bin": values}, {"a_0.bin": values})
    with pytest.raises(UserError, match=r"a_0\.bin: 20 values do not split into 21 class planes"):
        compare_output_folders(reference, candidate, ["float32"], [21])


def test_summary_table_has_the_mismatch_column():
    row = {"pack": "P", "parity_class_mismatch": 1.5e-5, "parity_max_rel": 0.37}
    header, rule, line = summary_markdown([row]).splitlines()
    assert header.count("|") == rule.count("|") == line.count("|") == len(SUMMARY_COLUMNS) + 1
    assert "pixels of another class" in header and "1.5e-05" in line


def test_output_names_split_at_the_last_underscore_before_the_first_dot(tmp_path):
    from common.files.outputs import split_output_name
    assert split_output_name(tmp_path / "frankfurt_000000_000294_leftImg8bit_1.bin") == (
        "frankfurt_000000_000294_leftImg8bit", 1)
    for bad in ("noindex.bin", "_7.bin", "img_x.bin"):
        with pytest.raises(UserError, match="not an output file name"):
            split_output_name(tmp_path / bad)
