"""common.viz: palette colours read back from the PNG files, legends of exactly the classes
present, overlays on grey and odd-sized images, disagreement counts and pictures, thumbnails."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from common.data.cityscapes import CITYSCAPES_LABELS
from common.data.voc import VOC_CLASSES
from common.viz.disagreement import DIFFERENT, RING, disagreement
from common.viz.draw import (colourize, fit_hw, legend_entries, legend_panel, overlay, read_class_png,
                             save_jpeg, save_png, resize_class_map, resize_mask)
from common.viz.palettes import CITYSCAPES, VOC


def png_pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def test_voc_colours_in_the_png_are_the_standard_palette(tmp_path):
    class_map = np.array([[0, 1, 15], [255, 20, 1]], dtype=np.uint8)
    save_png(tmp_path / "voc.png", colourize(class_map, VOC))
    pixels = png_pixels(tmp_path / "voc.png")
    assert pixels[0, 0].tolist() == [0, 0, 0]  # background
    assert pixels[0, 1].tolist() == [128, 0, 0]  # aeroplane
    assert pixels[0, 2].tolist() == [192, 128, 128]  # person
    assert pixels[1, 0].tolist() == [224, 224, 192]  # void: the colour of VOC's label borders
    assert pixels[1, 1].tolist() == [0, 64, 128]  # tvmonitor
    assert VOC.class_names == VOC_CLASSES


def test_cityscapes_colours_are_the_train_id_colours_of_the_label_table(tmp_path):
    class_map = np.array([[0, 1, 18, 255]], dtype=np.uint8)
    save_png(tmp_path / "cs.png", colourize(class_map, CITYSCAPES))
    pixels = png_pixels(tmp_path / "cs.png")
    assert pixels[0].tolist() == [[128, 64, 128], [244, 35, 232], [119, 11, 32], [0, 0, 0]]
    for label in CITYSCAPES_LABELS:
        if label.train_id != 255:
            assert CITYSCAPES.colour(label.train_id) == label.color_rgb
            assert CITYSCAPES.class_names[label.train_id] == label.name


def test_class_id_png_reads_back_the_same_ids(tmp_path):
    class_map = np.random.default_rng(0).integers(0, 256, size=(13, 7), dtype=np.uint8)
    save_png(tmp_path / "ids.png", class_map)
    np.testing.assert_array_equal(read_class_png(tmp_path / "ids.png"), class_map)


def test_class_ids_outside_a_byte_are_refused():
    with pytest.raises(ValueError, match="outside 0..255"):
        colourize(np.array([[0, 300]]), VOC)


@settings(max_examples=30, deadline=None)
@given(st.sets(st.sampled_from(list(range(21)) + [255]), min_size=1, max_size=8), st.integers(0, 2 ** 32 - 1))
def test_legend_lists_exactly_the_classes_present(present, seed):
    rng = np.random.default_rng(seed)
    ids = np.array(sorted(present), dtype=np.uint8)
    class_map = rng.permutation(np.resize(ids, 40)).reshape(5, 8)
    entries = legend_entries(class_map, VOC)
    expected = sorted(present - {255}) + ([255] if 255 in present else [])
    assert [e.class_id for e in entries] == expected
    assert [e.name for e in entries] == [VOC_CLASSES[i] if i != 255 else "void" for i in expected]


def test_legend_panel_shows_the_swatches_of_present_classes_only():
    class_map = np.array([[1, 1, 15], [12, 12, 15]], dtype=np.uint8)  # aeroplane, dog, person
    panel = legend_panel(legend_entries(class_map, VOC), height=80, font_px=12)
    colours = {tuple(c) for c in panel.reshape(-1, 3)}
    for class_id in (1, 12, 15):
        assert VOC.colour(class_id) in colours
    for absent in (2, 3, 14, 19):  # bicycle, bird, motorbike, train: not grey, so not text either
        assert VOC.colour(absent) not in colours


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 1), (1, 1), (2, 29, 3), (31, 2, 4)])
def test_overlay_blends_over_grey_rgb_and_rgba_images_of_odd_sizes(shape):
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    height, width = shape[:2]
    class_map = rng.choice(np.array([0, 7, 15, 255], np.uint8), size=(height, width))
    picture = overlay(image, class_map, VOC, alpha=0.5)
    rgb = np.repeat(image.reshape(height, width, -1)[:, :, :1], 3, 2) if len(shape) == 2 or shape[2] == 1 \
        else image[:, :, :3]
    area = picture[:height, :width].astype(int)
    expected = np.floor(rgb * 0.5 + VOC.colours[class_map] * 0.5 + 0.5).astype(int)
    void = class_map == 255
    np.testing.assert_array_equal(area[~void], expected[~void])
    np.testing.assert_array_equal(area[void], rgb[void])  # void left as the image
    assert picture.shape[1] > width  # the legend panel is beside the image, not over it


def test_overlay_of_a_map_of_another_size_is_refused():
    with pytest.raises(ValueError, match="same size"):
        overlay(np.zeros((4, 5, 3), np.uint8), np.zeros((5, 4), np.uint8), VOC)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 40), st.integers(1, 40), st.floats(0, 1), st.integers(0, 2 ** 32 - 1))
def test_disagreement_counts_and_paints_exactly_the_differing_pixels(height, width, fraction, seed):
    rng = np.random.default_rng(seed)
    class_a = rng.integers(0, 19, size=(height, width), dtype=np.uint8)
    class_b = np.where(rng.random((height, width)) < fraction, rng.integers(0, 19, size=(height, width)),
                       class_a).astype(np.uint8)
    image = rng.integers(0, 256, size=(height, width), dtype=np.uint8)  # grey input
    result = disagreement(image, class_a, class_b, title="a vs b")
    differing = class_a != class_b
    assert result.count == int(differing.sum()) and result.total == height * width
    area = result.picture[result.picture.shape[0] - height:, :width]
    np.testing.assert_array_equal(np.all(area == DIFFERENT, axis=2), differing)
    if result.count == 0:
        assert not np.any(np.all(area == RING, axis=2))


def test_disagreement_of_maps_of_other_sizes_is_refused():
    with pytest.raises(ValueError, match="cannot be compared"):
        disagreement(np.zeros((3, 3), np.uint8), np.zeros((3, 3), np.uint8), np.zeros((3, 4), np.uint8))


def test_disagreement_picture_says_the_count():
    # one pixel of 100x100 differs: the banner must make the picture wider or taller than the map
    a = np.zeros((100, 100), np.uint8)
    b = a.copy()
    b[50, 50] = 1
    result = disagreement(np.full((100, 100), 200, np.uint8), a, b)
    assert result.count == 1 and result.picture.shape[0] > 100
    banner = result.picture[:result.picture.shape[0] - 100]
    assert (banner.min(axis=2) < 128).sum() > 20  # dark text pixels in the strip


def test_thumbnails_keep_a_single_differing_pixel_and_never_enlarge():
    mask = np.zeros((1024, 2048), bool)
    mask[517, 1301] = True
    small = resize_mask(mask, fit_hw(mask.shape, 320))
    assert small.shape == (160, 320) and small.sum() >= 1
    assert fit_hw((30, 20), 320) == (30, 20)
    assert fit_hw((1, 5000), 100) == (1, 100)
    ids = np.random.default_rng(2).integers(0, 3, size=(99, 77), dtype=np.uint8)
    assert set(np.unique(resize_class_map(ids, (20, 15)))) <= {0, 1, 2}


def test_jpeg_thumbnail_of_a_full_size_picture_is_small(tmp_path):
    picture = np.random.default_rng(3).integers(0, 256, size=(180, 360, 3), dtype=np.uint8)
    save_jpeg(tmp_path / "t.jpg", picture, quality=80)
    assert (tmp_path / "t.jpg").stat().st_size < 60_000  # white noise: the worst case
