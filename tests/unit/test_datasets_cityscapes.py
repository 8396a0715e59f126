"""Cityscapes reader, label table and synthetic generator (common/data/cityscapes.py, common/data/synth/cityscapes.py)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from common.cli import UserError
from common.data.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_IGNORE, CITYSCAPES_LABELS,
                                    CityscapesFine, cityscapes_base_name,
                                    cityscapes_label_ids_to_train_ids, list_cityscapes_labels,
                                    read_cityscapes_train_ids)
from common.data.synth.cityscapes import write_synthetic_cityscapes

# The upstream HRNet `Cityscapes.label_mapping` (docs/specs/3D_HRNet.md section 2), written out
# independently of the table under test: label id -> trainId, everything else ignored.
HRNET_TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
                   24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


def test_label_table_matches_the_hrnet_mapping_for_every_id():
    label_ids = np.arange(256, dtype=np.uint8)
    expected = np.array([HRNET_TRAIN_IDS.get(i, CITYSCAPES_IGNORE) for i in range(256)], dtype=np.uint8)
    np.testing.assert_array_equal(cityscapes_label_ids_to_train_ids(label_ids), expected)
    assert len(CITYSCAPES_CLASSES) == 19
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[-1] == "bicycle"
    assert [label.label_id for label in CITYSCAPES_LABELS] == list(range(34))


def test_label_table_matches_cityscapesscripts_when_installed():
    labels = pytest.importorskip("cityscapesscripts.helpers.labels")
    for label in labels.labels:
        if 0 <= label.id <= 33:
            ours = CITYSCAPES_LABELS[label.id]
            assert (ours.name, ours.train_id, ours.color_rgb) == (label.name, label.trainId, label.color)


def test_remap_accepts_wider_integer_arrays_and_rejects_out_of_range():
    np.testing.assert_array_equal(cityscapes_label_ids_to_train_ids(np.array([[7, 0], [33, 34]], np.int32)),
                                  [[0, 255], [18, 255]])
    with pytest.raises(ValueError):
        cityscapes_label_ids_to_train_ids(np.array([300]))


def test_base_name_strips_every_dataset_and_bin_suffix():
    for name in ("frankfurt_000000_000294_leftImg8bit.png", "frankfurt_000000_000294_gtFine_labelIds.png",
                 "x/frankfurt_000000_000294_gtFine_instanceIds.png", "frankfurt_000000_000294_leftImg8bit.bin",
                 "frankfurt_000000_000294_gtFine_labelIds.bin"):
        assert cityscapes_base_name(name) == "frankfurt_000000_000294"


@pytest.fixture
def synthetic_root(tmp_path):
    write_synthetic_cityscapes(tmp_path, count=5, size_hw=(32, 64), seed=3)
    return tmp_path


def test_synthetic_layout_is_read_back_and_paired_by_name(synthetic_root):
    dataset = CityscapesFine(synthetic_root, "val")
    assert len(dataset) == 5
    assert {s.city for s in dataset} == {"frankfurt", "lindau", "munster"}
    for sample in dataset:
        assert sample.image_path.name == f"{sample.name}_leftImg8bit.png"
        assert sample.label_path.name == f"{sample.name}_gtFine_labelIds.png"
        assert dataset.instance_path(sample).is_file()
        with Image.open(sample.image_path) as image:
            assert (image.mode, image.size) == ("RGB", (64, 32))
    # the cityscapes folder itself is accepted as root too
    assert [s.name for s in CityscapesFine(synthetic_root / "cityscapes")] == [s.name for s in dataset]
    labels = list_cityscapes_labels(synthetic_root / "cityscapes" / "gtFine" / "val")
    assert sorted(labels) == sorted(s.name for s in dataset)


def test_synthetic_labels_hold_void_and_instance_ids(synthetic_root):
    dataset = CityscapesFine(synthetic_root)
    all_ids = set()
    for sample in dataset:
        label_ids = np.asarray(Image.open(sample.label_path))
        instance_ids = np.asarray(Image.open(dataset.instance_path(sample)))
        all_ids |= set(np.unique(label_ids).tolist())
        assert instance_ids.dtype == np.uint16
        # instanceIds // 1000 gives back the label id wherever an instance was numbered
        numbered = instance_ids >= 1000
        np.testing.assert_array_equal(instance_ids[numbered] // 1000, label_ids[numbered])
        np.testing.assert_array_equal(instance_ids[~numbered], label_ids[~numbered])
        train_ids = read_cityscapes_train_ids(sample.label_path)
        assert (train_ids == CITYSCAPES_IGNORE).any() and (train_ids < 19).any()
    assert all_ids & {0, 1, 2, 4, 5, 6, 9, 10, 14, 15, 16, 18, 29, 30}, "no void id drawn"


def test_synthetic_is_deterministic_per_seed(tmp_path):
    write_synthetic_cityscapes(tmp_path / "a", count=2, size_hw=(16, 32), seed=7)
    write_synthetic_cityscapes(tmp_path / "b", count=2, size_hw=(16, 32), seed=7)
    for path in (tmp_path / "a").rglob("*.png"):
        twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(twin)))


def test_missing_label_is_one_error_naming_it(synthetic_root):
    sample = CityscapesFine(synthetic_root)[2]
    sample.label_path.unlink()
    with pytest.raises(UserError, match=sample.label_path.name):
        CityscapesFine(synthetic_root)
    assert len(CityscapesFine(synthetic_root, require_labels=False)) == 5


def test_missing_dataset_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="leftImg8bit"):
        CityscapesFine(tmp_path)
    with pytest.raises(UserError, match="no .*_gtFine_labelIds.png"):
        list_cityscapes_labels(tmp_path)


def test_command_line_writes_the_layout(tmp_path):
    from common.synth import main, parse_args
    main(parse_args(["cityscapes", "--out", str(tmp_path), "--count", "3", "--height", "16", "--width", "32"]))
    assert len(CityscapesFine(tmp_path)) == 3
