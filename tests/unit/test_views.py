"""Dataset views of real data (common/data/views.py): the first N images with their own labels
and lists, resized copies where a quick run needs them, links otherwise, and nothing written
into the user's dataset."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from common.cli import UserError
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.data.synth.coco import write_synthetic_coco
from common.data.synth.voc import write_synthetic_voc
from common.data.views import make_view
from helpers import snapshot


@pytest.fixture
def voc_root(tmp_path):
    """The guides' own layout (data/voc/VOCdevkit/VOC2012), odd sizes, one grayscale image."""
    root = tmp_path / "user_data"
    write_synthetic_voc(root / "voc", count=4, seed=5, sizes_hw=((333, 500), (500, 281), (97, 130), (500, 500)),
                        grayscale=(1,))
    return root


def test_voc_quick_view_takes_the_first_ids_with_their_labels_and_leaves_the_source_alone(voc_root, tmp_path):
    before = snapshot(voc_root)
    view = make_view("voc", voc_root, tmp_path / "view", count=2, input_hw=(128, 128), resize="half_input")
    voc = view / "VOCdevkit" / "VOC2012"
    source = voc_root / "voc" / "VOCdevkit" / "VOC2012"
    listed = (source / "ImageSets" / "Segmentation" / "val.txt").read_text().split()
    assert (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split() == listed[:2]
    for image_id in listed[:2]:
        with Image.open(source / "SegmentationClass" / f"{image_id}.png") as original, \
                Image.open(voc / "SegmentationClass" / f"{image_id}.png") as label, \
                Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as image:
            assert max(image.size) == 64 and image.size == label.size  # long side input/2, as the pack pads at scale 2
            assert label.mode == "P" and label.getpalette() == original.getpalette()
            # nearest neighbour: only ids of the original (255 borders included), no blends
            assert set(np.unique(np.asarray(label))) <= set(np.unique(np.asarray(original)))
            assert 255 in np.unique(np.asarray(label))
    with Image.open(voc / "JPEGImages" / f"{listed[1]}.jpg") as grey:
        assert grey.mode == "L" and grey.format == "JPEG"
    assert not (voc / "JPEGImages" / f"{listed[2]}.jpg").exists()
    assert snapshot(voc_root) == before


def test_voc_view_without_resize_links_the_files(voc_root, tmp_path):
    view = make_view("voc", voc_root, tmp_path / "view", count=3)
    voc = view / "VOCdevkit" / "VOC2012"
    linked = sorted((voc / "JPEGImages").iterdir())
    assert len(linked) == 3 and all(path.is_symlink() for path in linked)
    whole = make_view("voc", voc_root, tmp_path / "whole")
    assert (whole / "VOCdevkit" / "VOC2012").is_symlink()  # all images, as they are: one link


def test_cityscapes_quick_view_resizes_frames_and_label_ids_to_the_input(tmp_path):
    root = tmp_path / "user_data"
    write_synthetic_cityscapes(root, count=3, size_hw=(256, 512), seed=2)
    before = snapshot(root)
    view = make_view("cityscapes", root, tmp_path / "view", count=2, input_hw=(64, 128), resize="to_input")
    images = sorted((view / "cityscapes" / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))
    labels = sorted((view / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(images) == len(labels) == 2
    originals = {p.name: p for p in (root / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png")}
    for label_path in labels:
        with Image.open(label_path) as label, Image.open(originals[label_path.name]) as original:
            assert label.size == (128, 64) and label.mode == original.mode
            assert set(np.unique(np.asarray(label))) <= set(np.unique(np.asarray(original)))
    assert snapshot(root) == before


def test_coco_quick_view_keeps_the_first_images_and_only_their_annotations(tmp_path):
    root = tmp_path / "user_data" / "coco"
    write_synthetic_coco(root, count=4, seed=1)
    original = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    view = make_view("coco", root.parent, tmp_path / "view", count=2)
    subset = json.loads((view / "coco" / "annotations" / "instances_val2017.json").read_text())
    kept = [image["id"] for image in original["images"][:2]]
    assert [image["id"] for image in subset["images"]] == kept
    assert subset["annotations"] == [a for a in original["annotations"] if a["image_id"] in kept]
    assert subset["categories"] == original["categories"]
    assert sorted(p.name for p in (view / "coco" / "val2017").iterdir()) == sorted(
        image["file_name"] for image in original["images"][:2])


def test_a_view_of_a_missing_folder_or_an_unknown_resize_is_one_line(tmp_path):
    with pytest.raises(UserError, match="data folder not found"):
        make_view("voc", tmp_path / "absent", tmp_path / "view")
    (tmp_path / "present").mkdir()
    with pytest.raises(UserError, match="resize mode 'stretch'"):
        make_view("voc", tmp_path / "present", tmp_path / "view", resize="stretch")
    with pytest.raises(UserError, match="no VOC2012 folder"):
        make_view("voc", tmp_path / "present", tmp_path / "view", count=1)
