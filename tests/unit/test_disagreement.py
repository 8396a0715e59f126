"""python3 -m common.disagreement: two --show-dir folders compared image by image (counts in the
JSON equal the differing pixels, pictures red exactly there), and its one-line errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from common import disagreement
from common.viz.disagreement import DIFFERENT
from common.viz.palettes import VOC
from common.viz.show import write_show_pictures
from helpers import expect_one_line, run_cli

STEMS = ("a.b c", "2007_000002")
HW = (23, 41)


@pytest.fixture
def show_dirs(tmp_path):
    rng = np.random.default_rng(0)
    image = tmp_path / "image.png"
    Image.fromarray(rng.integers(0, 256, size=HW, dtype=np.uint8)).save(image)  # a grey input
    counts = {}
    for index, stem in enumerate(STEMS):
        reference = rng.integers(0, 21, size=HW, dtype=np.uint8)
        candidate = reference.copy()
        candidate[index, : 5 * index] = (candidate[index, : 5 * index] + 1) % 21
        counts[stem] = int((candidate != reference).sum())
        write_show_pictures(tmp_path / "pytorch", stem, reference, VOC, image)
        write_show_pictures(tmp_path / "onnxruntime", stem, candidate, VOC, image)
    return tmp_path, counts


def test_counts_and_pictures_are_those_of_the_differing_pixels(show_dirs, capsys):
    root, counts = show_dirs
    code, _ = run_cli(disagreement, root / "pytorch", root / "onnxruntime", "--out", root / "out", capsys=capsys)
    assert code == 0
    result = json.loads((root / "out" / "disagreement.json").read_text())
    assert {image["stem"]: image["pixels_differing"] for image in result["images"]} == counts
    assert result["pixels_differing"] == sum(counts.values()) == 5
    assert result["pixels"] == len(STEMS) * HW[0] * HW[1]
    with Image.open(root / "out" / "2007_000002_disagreement.png") as picture:
        pixels = np.asarray(picture.convert("RGB"))
    assert np.all(pixels == DIFFERENT, axis=2).sum() == counts["2007_000002"] == 5


def test_an_image_missing_in_one_run_is_one_line_unless_allowed(show_dirs, capsys):
    root, counts = show_dirs
    for path in (root / "onnxruntime").glob("2007_000002_*"):
        path.unlink()
    code, lines = run_cli(disagreement, root / "pytorch", root / "onnxruntime", "--out", root / "out", capsys=capsys)
    expect_one_line(code, lines, "pytorch: 1 image(s) have no picture in", "2007_000002", "--allow-missing")
    code, _ = run_cli(disagreement, root / "pytorch", root / "onnxruntime", "--out", root / "out",
                      "--allow-missing", capsys=capsys)
    assert code == 0
    assert json.loads((root / "out" / "disagreement.json").read_text())["only_in_reference"] == ["2007_000002"]


def test_maps_of_other_sizes_are_one_line_naming_both(show_dirs, capsys):
    root, _ = show_dirs
    Image.fromarray(np.zeros((HW[0], HW[1] + 1), np.uint8)).save(root / "onnxruntime" / "a.b c_classes.png")
    code, lines = run_cli(disagreement, root / "pytorch", root / "onnxruntime", "--out", root / "out", capsys=capsys)
    expect_one_line(code, lines, "onnxruntime/a.b c_classes.png: 23x42", "pytorch/a.b c_classes.png is 23x41")


def test_a_folder_without_show_pictures_is_one_line(tmp_path, capsys):
    code, lines = run_cli(disagreement, tmp_path / "nope", tmp_path, "--out", tmp_path / "out", capsys=capsys)
    expect_one_line(code, lines, "nope: show folder not found")
