"""Issue 14, data families, for common/ and the RefineNet pack: every bad input at the layer where
data enters (image reader, list reader, label reader, annotation reader, sizes, names) ends in
one line naming the file and what is wrong, exit code 2, with nothing written; valid but odd
input (grey, palette, RGBA, CMYK images, a byte-order mark, Windows line ends, spaces in .info
paths) does what the upstream decoder does.

Each script case checks the exit code, the one line's fragments and that the output folder (or
an earlier metric file) is unchanged. Datasets are the 4-image synthetic VOC of conftest.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from common.cli import UserError
from common.data.coco import load_coco_json
from common.data.images import (MAX_IMAGE_PIXELS, image_sizes, load_image_rgb, read_image_bgr, read_image_rgb,
                                read_palette_label)
from common.data.labels import LabelSet, unknown_id_pixels
from common.data.lists import read_list_lines
from common.data.synth.coco import write_synthetic_coco
from common.data.voc import VOC_LABEL_SET, VOCSegmentation, read_id_list, read_sample_list
from common.files.bins import write_bin
from common.files.info import parse_info, write_info
from common.pipeline.packs import pack_module
from common.pipeline.sizes import MAX_SAMPLE_BYTES, check_run_size
from helpers import REPO_ROOT, voc_root, expect_one_line, run_cli
from helpers import snapshot
from hostile_data_files import set_label_pixels, write_jpeg_bomb, write_png_bomb

SIZE = 64
OUT_HW = 16  # RefineNet's output side for a 64 input
preprocess_py = pack_module("RefineNet", "RefineNet_preprocess")
postprocess_py = pack_module("RefineNet", "RefineNet_postprocess")
infer_py = __import__("common.infer", fromlist=["main"])
info_cli_py = __import__("common.info_cli", fromlist=["main"])


def split_list(parent: Path) -> Path:
    return voc_root(parent) / "ImageSets" / "Segmentation" / "val.txt"


def ids_of(parent: Path) -> list[str]:
    return VOCSegmentation.from_parent(parent).ids


def fake_results(folder: Path, ids, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for image_id in ids:
        write_bin(folder / f"{image_id}_0.bin", rng.standard_normal((21, OUT_HW, OUT_HW)).astype(np.float32))
    return folder


def preprocess(capsys, parent: Path, bins: Path, *extra):
    return run_cli(preprocess_py, "--root-dir", voc_root(parent), "--bin-dir", bins, "--size", SIZE, *extra,
                   capsys=capsys)


def postprocess(capsys, parent: Path, results: Path, save: Path, *extra):
    return run_cli(postprocess_py, "--val-dir", parent, "--result-dir", results, "--size", SIZE,
                   "--save_path", save, *extra, capsys=capsys)


@pytest.fixture
def earlier_metric(tmp_path) -> Path:
    """A metric file of an earlier run: a refused run must leave it as it was."""
    path = tmp_path / "metric.json"
    path.write_text('{"miou": 0.5, "from": "an earlier run"}\n')
    return path


def assert_untouched(metric: Path) -> None:
    assert json.loads(metric.read_text()) == {"miou": 0.5, "from": "an earlier run"}


@pytest.fixture
def earlier_bins(tmp_path) -> Path:
    """A bin folder holding an earlier run's file: a refused run must not touch it."""
    folder = tmp_path / "bins"
    write_bin(folder / "earlier.bin", np.arange(6, dtype=np.float32))
    return folder


# ---- images: decompression bombs, refused from the header ---------------------------------------

@pytest.mark.parametrize("writer, suffix", [(write_png_bomb, ".png"), (write_jpeg_bomb, ".jpg")])
def test_image_whose_header_declares_900_megapixels_is_refused(writer, suffix, tmp_path):
    bomb = writer(tmp_path / f"bomb{suffix}")
    assert bomb.stat().st_size < 20_000
    for read in (lambda p: image_sizes([p]), read_image_rgb, read_image_bgr, read_palette_label):
        with pytest.raises(UserError) as err:
            read(bomb)
        assert str(err.value).startswith(f"{bomb}: ")
        assert "declares 30000x30000 pixels (900 megapixels), more than the bound of 100 megapixels" in str(err.value)


def test_bomb_in_the_voc_folder_stops_the_preprocess_before_any_bin(voc, earlier_bins, capsys):
    victim = voc_root(voc) / "JPEGImages" / f"{ids_of(voc)[-1]}.jpg"
    write_jpeg_bomb(victim)
    before = snapshot(earlier_bins)
    code, lines = preprocess(capsys, voc, earlier_bins)
    expect_one_line(code, lines, f"{victim}: image header declares 30000x30000 pixels", "not decoded")
    assert snapshot(earlier_bins) == before


def test_bomb_label_stops_the_postprocess(voc, tmp_path, earlier_metric, capsys):
    ids = ids_of(voc)
    label = voc_root(voc) / "SegmentationClass" / f"{ids[1]}.png"
    write_png_bomb(label, mode="P")
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric)
    expect_one_line(code, lines, f"{label}: label header declares 30000x30000 pixels")
    assert_untouched(earlier_metric)


def test_the_bound_is_checked_before_opencv_decodes(tmp_path, monkeypatch):
    bomb = write_png_bomb(tmp_path / "bomb.png", width=20000, height=6000)  # 120 MP: under OpenCV's 1 GP
    assert 20000 * 6000 > MAX_IMAGE_PIXELS
    monkeypatch.setattr(cv2, "imdecode", lambda *a: pytest.fail("decoded a bomb"))
    with pytest.raises(UserError, match="declares 20000x6000 pixels"):
        read_image_bgr(bomb)


def test_get_info_with_a_bomb_in_the_image_folder(tmp_path, capsys):
    Image.new("RGB", (5, 3)).save(tmp_path / "a.jpg")
    bomb = write_jpeg_bomb(tmp_path / "b.jpg")
    code, lines = run_cli(info_cli_py, "jpg", tmp_path, tmp_path / "out" / "d.info", capsys=capsys)
    expect_one_line(code, lines, f"{bomb}: image header declares 30000x30000 pixels")
    assert not (tmp_path / "out" / "d.info").exists()


def test_16_bit_image_is_refused_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray((np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)).save(path)
    for read in (read_image_rgb, read_image_bgr, lambda p: image_sizes([p])):
        with pytest.raises(UserError, match=r"deep.png: image has mode I;16 \(more than 8 bits per channel\)"):
            read(path)


def test_empty_and_folder_images(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(UserError, match=r"empty.jpg: unreadable image \(not an image file\)"):
        read_image_bgr(tmp_path / "empty.jpg")
    (tmp_path / "dir.png").mkdir()
    with pytest.raises(UserError, match="dir.png: is a folder"):
        image_sizes([tmp_path / "dir.png"])


# ---- images: valid but odd, converted as the upstream decoders do ----------------------------------

def test_grey_image_becomes_three_equal_channels(tmp_path):
    grey = np.random.default_rng(0).integers(0, 256, (9, 13), dtype=np.uint8)
    Image.fromarray(grey).save(tmp_path / "g.png")
    for read in (read_image_rgb, read_image_bgr):
        colour = read(tmp_path / "g.png")
        assert colour.shape == (9, 13, 3) and colour.dtype == np.uint8
        for channel in range(3):
            np.testing.assert_array_equal(colour[..., channel], grey)


def test_palette_and_rgba_images_give_their_colours(tmp_path):
    indices = np.array([[0, 1], [2, 1]], np.uint8)
    palette = Image.fromarray(indices)
    palette.putpalette([10, 20, 30, 200, 100, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "p.png")
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [250, 251, 252]]]
    rgba[..., 3] = [[0, 255], [128, 9]]  # alpha is dropped, not blended
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    expected_palette = np.array([[[10, 20, 30], [200, 100, 0]], [[0, 255, 0], [200, 100, 0]]], np.uint8)
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "p.png"), expected_palette)
    np.testing.assert_array_equal(read_image_bgr(tmp_path / "p.png")[..., ::-1], expected_palette)
    np.testing.assert_array_equal(read_image_rgb(tmp_path / "a.png"), rgba[..., :3])
    np.testing.assert_array_equal(read_image_bgr(tmp_path / "a.png")[..., ::-1], rgba[..., :3])


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cmyk.jpg", quality=95)  # pure cyan
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    cyan = np.array([0, 255, 255])
    assert np.abs(read_image_rgb(tmp_path / "cmyk.jpg").astype(int) - cyan).max() <= 3
    assert np.abs(read_image_bgr(tmp_path / "cmyk.jpg")[..., ::-1].astype(int) - cyan).max() <= 3
    assert load_image_rgb(tmp_path / "cmyk.jpg").mode == "RGB"


def test_grey_voc_jpeg_gives_the_bin_of_its_rgb_copy(voc, tmp_path, capsys):
    """A one-channel JPEG is preprocessed as PIL's convert('RGB') of it: the bin of the same
    pixels stored as an RGB PNG (lossless) is byte-identical."""
    from common.data.synth.voc import write_synthetic_voc
    grey_set = write_synthetic_voc(tmp_path / "grey", count=2, seed=5, sizes_hw=((40, 56),), grayscale=(1,))
    grey_jpeg = grey_set / "JPEGImages" / "2007_000001.jpg"
    assert Image.open(grey_jpeg).mode == "L"
    code, lines = run_cli(preprocess_py, "--root-dir", grey_set, "--bin-dir", tmp_path / "b1", "--size", SIZE,
                          capsys=capsys)
    assert code == 0, lines
    rgb_copy = tmp_path / "rgb" / "2007_000001.jpg"
    rgb_copy.parent.mkdir()
    Image.open(grey_jpeg).convert("RGB").save(rgb_copy, format="PNG")  # a PNG under the .jpg name
    reference = preprocess_py.preprocess_image(read_image_rgb(rgb_copy), SIZE)[0]
    assert (tmp_path / "b1" / "2007_000001.bin").read_bytes() == reference.tobytes()


# ---- lists -----------------------------------------------------------------------------------------

def test_split_list_that_is_not_utf8_names_the_line(voc, earlier_bins, capsys):
    ids = ids_of(voc)
    split_list(voc).write_bytes(f"{ids[0]}\n{ids[1]}\n".encode() + b"2007_\xff\xfe0003\n")
    before = snapshot(earlier_bins)
    code, lines = preprocess(capsys, voc, earlier_bins)
    expect_one_line(code, lines, f"{split_list(voc)}:3: not UTF-8 text (byte 0xff at offset 29)")
    assert snapshot(earlier_bins) == before


def test_id_listed_twice_is_refused_with_both_lines(voc, tmp_path, earlier_metric, capsys):
    ids = ids_of(voc)
    split_list(voc).write_text("\n".join(ids + [ids[1]]) + "\n")
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric)
    expect_one_line(code, lines, f"{split_list(voc)}:5: id {ids[1]} is listed twice (first on line 2)",
                    "counted twice")
    assert_untouched(earlier_metric)


def test_id_with_a_space_is_refused(voc, earlier_bins, capsys):
    ids = ids_of(voc)
    split_list(voc).write_text(f"{ids[0]}\n2007 000009\n")
    code, lines = preprocess(capsys, voc, earlier_bins)
    expect_one_line(code, lines, f"{split_list(voc)}:2: expected one id per line, got 2 fields",
                    "VOC ids hold no spaces")


def test_bom_and_windows_line_ends_give_the_same_bins(voc, tmp_path, capsys):
    assert preprocess(capsys, voc, tmp_path / "plain")[0] == 0
    ids = ids_of(voc)
    split_list(voc).write_bytes(b"\xef\xbb\xbf" + "\r\n".join(ids).encode() + b"\r\n\r\n")
    assert ids_of(voc) == ids
    code, lines = preprocess(capsys, voc, tmp_path / "windows")
    assert code == 0, lines
    assert snapshot(tmp_path / "windows") == snapshot(tmp_path / "plain")


@settings(max_examples=60, deadline=None)
@given(ids=st.lists(st.from_regex(r"20[01][0-9]_[0-9]{6}", fullmatch=True), min_size=1, max_size=8, unique=True),
       line_end=st.sampled_from(["\n", "\r\n"]), bom=st.booleans(), blank_every=st.integers(0, 3))
def test_id_list_round_trip(tmp_path_factory, ids, line_end, bom, blank_every):
    lines = []
    for index, image_id in enumerate(ids):
        lines.append(image_id)
        if blank_every and index % blank_every == 0:
            lines.append("   ")
    data = (b"\xef\xbb\xbf" if bom else b"") + line_end.join(lines).encode()
    path = tmp_path_factory.mktemp("ids") / "val.txt"
    path.write_bytes(data)
    assert read_id_list(path) == ids


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.from_regex(r"[a-z]{1,3}", fullmatch=True), min_size=2, max_size=6),
       twice=st.integers(0, 5))
def test_a_duplicate_anywhere_names_both_lines(tmp_path, ids, twice):
    ids = list(dict.fromkeys(ids))
    repeated = ids[twice % len(ids)]
    listed = ids + [repeated]
    (tmp_path / "val.txt").write_text("\n".join(listed) + "\n")
    first = listed.index(repeated) + 1
    with pytest.raises(UserError, match=rf"val.txt:{len(listed)}: id {repeated} is listed twice "
                                        rf"\(first on line {first}\)"):
        read_id_list(tmp_path / "val.txt")


def test_upstream_two_path_list_with_spaces_is_called_ambiguous(voc, tmp_path):
    listed = tmp_path / "val_voc.txt"
    listed.write_text("VOCdevkit/VOC2012/JPEGImages/my image.jpg VOCdevkit/VOC2012/SegmentationClass/my image.png\n")
    with pytest.raises(UserError, match=r"val_voc.txt:1: expected 'IMAGE LABEL' paths or one id, got 4 fields "
                                        r"\(paths are split at spaces: a path holding a space is ambiguous"):
        read_sample_list(voc, listed)


def test_list_with_a_nul_byte(tmp_path):
    (tmp_path / "val.txt").write_bytes(b"2007_000001\n2007\x00000002\n")
    with pytest.raises(UserError, match=r"val.txt:2: holds a NUL byte: not a text id list"):
        read_id_list(tmp_path / "val.txt")


def test_info_paths_with_spaces_are_read_whole(tmp_path):
    """Valid but odd: a dataset folder with a space (index first, width and height last)."""
    paths = [f"{tmp_path}/my data/a b.jpg", f"{tmp_path}/c.jpg"]
    write_info(tmp_path / "d.info", paths, [(5, 3), (7, 2)])
    assert parse_info(tmp_path / "d.info") == [(0, paths[0], 5, 3), (1, paths[1], 7, 2)]
    (tmp_path / "bad.info").write_bytes(b"0 a.jpg 5 3\n1 \xe9t\xe9.jpg 4 4\n")
    with pytest.raises(UserError, match=r"bad.info:2: not UTF-8 text"):
        parse_info(tmp_path / "bad.info")


def test_list_lines_keep_their_numbers(tmp_path):
    """1-based numbers, blank lines skipped; U+2028 and \\x0b separate fields, not lines."""
    (tmp_path / "l.txt").write_bytes("a b\r\n\n  \nc\u2028d\ne\x0bf\n".encode())
    assert read_list_lines(tmp_path / "l.txt") == [(1, ["a", "b"]), (4, ["c", "d"]), (5, ["e", "f"])]


# ---- sizes -----------------------------------------------------------------------------------------

def test_absurd_size_is_refused_before_anything(voc, earlier_bins, capsys):
    before = snapshot(earlier_bins)
    code, lines = preprocess(capsys, voc, earlier_bins, "--size", 60000)
    expect_one_line(code, lines, "--size 60000: one input of 3x60000x60000 float32 would take 40.2 GiB",
                    "more than the bound of 4.0 GiB per sample")
    assert snapshot(earlier_bins) == before


def test_absurd_size_in_the_postprocess(voc, tmp_path, earlier_metric, capsys):
    code, lines = run_cli(postprocess_py, "--val-dir", voc, "--result-dir", fake_results(tmp_path / "r", ids_of(voc)),
                          "--size", 60000, "--save_path", earlier_metric, capsys=capsys)
    expect_one_line(code, lines, "--size 60000: one input of 3x60000x60000 float32")
    assert_untouched(earlier_metric)


@given(side=st.integers(1, 200_000))
def test_size_bound_turns_at_the_stated_bytes(side):
    needed = 3 * side * side * 4
    if needed <= MAX_SAMPLE_BYTES:
        assert check_run_size(f"--size {side}", (side, side)) == (side, side)
    else:
        with pytest.raises(UserError, match=f"--size {side}: one input"):
            check_run_size(f"--size {side}", (side, side))


# ---- name collisions ---------------------------------------------------------------------------------

def test_ids_that_are_one_sample_name_are_refused(voc, earlier_bins, capsys):
    jpegs, labels = voc_root(voc) / "JPEGImages", voc_root(voc) / "SegmentationClass"
    ids = ids_of(voc)
    for new_id, source in (("img.a", ids[0]), ("img.b", ids[1])):
        shutil.copy(jpegs / f"{source}.jpg", jpegs / f"{new_id}.jpg")
        shutil.copy(labels / f"{source}.png", labels / f"{new_id}.png")
    split_list(voc).write_text("img.a\nimg.b\n")
    before = snapshot(earlier_bins)
    code, lines = preprocess(capsys, voc, earlier_bins)
    expect_one_line(code, lines, f"{jpegs}/img.b.jpg: img.b.bin and img.a.bin of {jpegs}/img.a.jpg have one "
                                 "sample name 'img' (cut at the first dot, as ais_bench does)")
    assert snapshot(earlier_bins) == before


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A 1x1 convolution over (3, 4, 4): enough for common.infer to list and check its inputs."""
    import torch
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    torch.onnx.export(torch.nn.Conv2d(3, 2, 1).eval(), (torch.zeros(1, 3, 4, 4),), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "b"}, "output": {0: "b"}},
                      opset_version=11, dynamo=False)
    return path


@pytest.mark.parametrize("names, message", [
    (("x.bin", "x.npy"), "x.npy and x.bin have one sample name 'x'"),
    (("img.a.bin", "img.b.bin"), "img.b.bin and img.a.bin have one sample name 'img'"),
])
def test_infer_refuses_inputs_that_are_one_sample_name(names, message, tmp_path, tiny_onnx, capsys):
    sample = np.zeros((3, 4, 4), np.float32)
    for name in names:
        if name.endswith(".npy"):
            np.save(tmp_path / "in" / name, sample)
        else:
            write_bin(tmp_path / "in" / name, sample)
    code, lines = run_cli(infer_py, "--model", tiny_onnx, "--input", tmp_path / "in", "--output", tmp_path / "out",
                          "--output_dirname", "r", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/in: {message}", "outputs would overwrite each other")
    assert snapshot(tmp_path / "out") == {}


def test_infer_refuses_one_file_listed_twice(tmp_path, tiny_onnx, capsys):
    write_bin(tmp_path / "a.bin", np.zeros((3, 4, 4), np.float32))
    code, lines = run_cli(infer_py, "--model", tiny_onnx, "--input", f"{tmp_path}/a.bin,{tmp_path}/a.bin",
                          "--output", tmp_path / "out", capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}: gives the file a.bin, as {tmp_path} does")
    assert snapshot(tmp_path / "out") == {}


# ---- labels ------------------------------------------------------------------------------------------

def test_label_id_outside_the_voc_set_is_named(voc, tmp_path, earlier_metric, capsys):
    ids = ids_of(voc)
    label = voc_root(voc) / "SegmentationClass" / f"{ids[2]}.png"
    count = set_label_pixels(label, 100)
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric)
    expect_one_line(code, lines, f"{label}: label ids outside the VOC label set (0..20 and 255 (void)): "
                                 f"100 ({count} px); pass --unknown-ids-as-void to count them as void")
    assert_untouched(earlier_metric)


def test_unknown_ids_as_void_scores_them_as_void_and_says_so(voc, tmp_path, capsys):
    ids = ids_of(voc)
    results = fake_results(tmp_path / "res", ids)
    label = voc_root(voc) / "SegmentationClass" / f"{ids[2]}.png"
    with Image.open(label) as image:
        original = np.array(image)
    count = set_label_pixels(label, 100, rows=slice(0, 4), cols=slice(0, 5))
    code, lines = postprocess(capsys, voc, results, tmp_path / "m.json", "--unknown-ids-as-void")
    assert code == 0, lines
    assert f"[WARNING] {count} label pixel(s) in 1 image(s) hold ids outside the VOC label set" in "\n".join(lines)
    saved = json.loads((tmp_path / "m.json").read_text())
    assert saved["label_pixels_unknown_as_void"] == count
    # the right thing: the same score as the label with those pixels set to void (255)
    original[0:4, 0:5] = 255
    set_label_pixels(label, 255, rows=slice(0, 4), cols=slice(0, 5))
    with Image.open(label) as image:
        np.testing.assert_array_equal(np.array(image), original)
    assert postprocess(capsys, voc, results, tmp_path / "void.json")[0] == 0
    assert json.loads((tmp_path / "void.json").read_text())["miou"] == saved["miou"]


def test_split_without_a_valid_label_pixel_has_no_metric(voc, tmp_path, earlier_metric, capsys):
    ids = ids_of(voc)
    for image_id in ids:
        path = voc_root(voc) / "SegmentationClass" / f"{image_id}.png"
        with Image.open(path) as image:
            height, width = image.size[1], image.size[0]
        set_label_pixels(path, 255, rows=slice(0, height), cols=slice(0, width))
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric)
    expect_one_line(code, lines, f"{voc_root(voc)}/SegmentationClass: no label pixel of the 4 scored image(s) holds "
                                 "a class (every pixel is void or ignored): the metric is undefined")
    assert_untouched(earlier_metric)


def test_label_of_another_size_than_its_image(voc, tmp_path, earlier_metric, capsys):
    ids = ids_of(voc)
    label = voc_root(voc) / "SegmentationClass" / f"{ids[1]}.png"
    image = voc_root(voc) / "JPEGImages" / f"{ids[1]}.jpg"
    with Image.open(label) as opened:
        width, height = opened.size
        opened.resize((width + 3, height)).save(label)
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric)
    expect_one_line(code, lines, f"{label}: label is {width + 3}x{height}, its image {image} is {width}x{height}")
    assert_untouched(earlier_metric)


@settings(max_examples=50, deadline=None)
@given(label=st.lists(st.integers(0, 255), min_size=1, max_size=64))
def test_unknown_pixels_are_exactly_those_outside_the_set(label):
    array = np.array(label, np.uint8).reshape(1, -1)
    outside = sum(1 for v in label if not (v <= 20 or v == 255))
    if outside:
        with pytest.raises(UserError, match="outside the VOC label set"):
            unknown_id_pixels(array, VOC_LABEL_SET, "x.png")
    assert unknown_id_pixels(array, VOC_LABEL_SET, "x.png", as_void=True) == outside


def test_label_set_names_at_most_four_ids():
    label = np.arange(30, 40, dtype=np.uint8).reshape(2, 5)
    with pytest.raises(UserError, match=r"30 \(1 px\), 31 \(1 px\), 32 \(1 px\), 33 \(1 px\) and 6 more"):
        unknown_id_pixels(label, LabelSet("X", (0,), "0"), "x.png")


# ---- preprocess metadata -------------------------------------------------------------------------------

@pytest.mark.parametrize("record, what", [
    ({"original_hw": [60, 80], "resized_hw": [48, 64], "canvas_hw": [64, 64], "pad_top": 30, "pad_left": 0},
     "not a letterbox record"),  # the resized image would reach below the canvas
    ({"original_hw": [60, 80], "resized_hw": [48, 64], "canvas_hw": [96, 96], "pad_top": 8, "pad_left": 0},
     "has a 96x96 canvas, the metadata's 'size' is 64"),
])
def test_letterbox_records_are_checked(voc, tmp_path, earlier_metric, record, what, capsys):
    ids = ids_of(voc)
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"size": SIZE, "images": {ids[0]: record}}))
    code, lines = postprocess(capsys, voc, fake_results(tmp_path / "res", ids), earlier_metric, "--meta", meta)
    expect_one_line(code, lines, f"{meta}: the geometry of '{ids[0]}'", what)
    assert_untouched(earlier_metric)


# ---- COCO instances files --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def coco_dataset(tmp_path_factory) -> dict:
    root = write_synthetic_coco(tmp_path_factory.mktemp("coco"), count=3, seed=1, sizes_hw=((40, 56), (48, 30)))
    return json.loads((root / "annotations" / "instances_val2017.json").read_text())


def broken(dataset: dict, change) -> dict:
    copy = json.loads(json.dumps(dataset))
    change(copy)
    return copy


def _drop(entry: dict, key: str) -> None:
    del entry[key]


COCO_CASES = {
    "image without file_name": (lambda d: _drop(d["images"][1], "file_name"),
                                r"images\[1\] \(id \d+\) has no 'file_name' string \(missing\)"),
    "image without id": (lambda d: _drop(d["images"][0], "id"), r"images\[0\] has no integer 'id' \(missing\)"),
    "annotation without iscrowd": (lambda d: _drop(d["annotations"][2], "iscrowd"),
                                   r"annotations\[2\] \(id 3\) has no 'iscrowd' \(COCOeval needs it"),
    "annotation without area": (lambda d: _drop(d["annotations"][0], "area"),
                                r"annotations\[0\] \(id 1\) has no 'area'"),
    "images not a list": (lambda d: d.update(images={"0": d["images"][0]}), r"'images' is a dict, expected a list"),
    "bbox a string": (lambda d: d["annotations"][1].update(bbox="10,10,5,5"),
                      r"annotations\[1\] \(id 2\): 'bbox' is '10,10,5,5', expected \[x, y, width, height\]"),
    "category outside the 80": (lambda d: d["annotations"][0].update(category_id=12),
                                r"'category_id' 12 is not one of the 80 detection categories"),
    "image id twice": (lambda d: d["images"][2].update(id=d["images"][0]["id"]), r"is listed twice"),
    "one stem as jpg and png": (lambda d: d["images"][1].update(file_name=d["images"][0]["file_name"][:-4] + ".png"),
                                r"\.png and \d+\.jpg have one sample name"),
    "iscrowd 2": (lambda d: d["annotations"][0].update(iscrowd=2), r"'iscrowd' is 2, expected 0 or 1"),
    "NaN area": (lambda d: d["annotations"][0].update(area=float("nan")), r"'area' is nan, expected a number >= 0"),
    "polygon of odd length": (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]),
                              r"'segmentation' polygon \[1, 2, 3, 4, 5, 6, 7\] is not a list of x, y number pairs"),
    "RLE of another size": (lambda d: next(a for a in d["annotations"] if isinstance(a["segmentation"], dict))
                            ["segmentation"].update(size=[7, 7]), r"'segmentation' RLE is 7x7, its image is"),
    "not an object": (lambda d: d.clear() or d.update(images=[], annotations=[], categories=[{"name": "x"}]),
                      r"categories\[0\] has no integer 'id'"),
}


@pytest.mark.parametrize("case", sorted(COCO_CASES))
def test_coco_instances_structure_is_checked_where_it_is_read(case, coco_dataset, tmp_path):
    change, message = COCO_CASES[case]
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(broken(coco_dataset, change)))
    with pytest.raises(UserError, match=message) as err:
        load_coco_json(path)
    assert str(err.value).startswith(f"{path}: ") and "\n" not in str(err.value)


def test_orphan_annotations_are_loaded_and_said(coco_dataset, tmp_path, capsys):
    """Valid but odd (a hand-cut file): pycocotools indexes them, they are never scored."""
    dataset = broken(coco_dataset, lambda d: d["images"].pop(0))
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(dataset))
    coco = load_coco_json(path)
    assert len(coco.getImgIds()) == 2
    assert "annotation(s) name an image id that is not in 'images'" in capsys.readouterr().err


def test_the_real_layout_of_the_synthetic_coco_passes(coco_dataset, tmp_path):
    path = tmp_path / "instances_val2017.json"
    path.write_text(json.dumps(coco_dataset))
    assert len(load_coco_json(path).getAnnIds()) == len(coco_dataset["annotations"]) > 0


# ---- every image read goes through common/data/images.py ---------------------------------------------------

IMAGE_READS = ("Image.open(", "cv2.imread(", "cv2.imdecode(")
SCANNED = ("common", "RefineNet", "3D_HRNet", "PointRend", "Wseg", "MaskRCNN_mmdet", "bench", "tools")


def image_reads(source: str) -> list[int]:
    """Line numbers of direct PIL / OpenCV image reads (comments aside)."""
    return [number for number, line in enumerate(source.splitlines(), 1)
            if any(call in line for call in IMAGE_READS) and not line.lstrip().startswith("#")]


def test_every_image_read_goes_through_the_one_reader():
    offenders = []
    for folder in SCANNED:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path != REPO_ROOT / "common" / "data" / "images.py":
                offenders += [f"{path.relative_to(REPO_ROOT)}:{n}" for n in image_reads(path.read_text())]
    assert not offenders, offenders


def test_the_image_read_check_finds_a_direct_read():
    source = ("from common.data.images import read_image_bgr\n"
              "image = cv2.imread(str(path), cv2.IMREAD_COLOR)\n"
              "# Image.open(path) would skip the bound\n"
              "with Image.open(path) as opened:\n")
    assert image_reads(source) == [2, 4]
