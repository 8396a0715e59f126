import numpy as np
import pytest
from PIL import Image

from common.cli import UserError
from common.data.voc import VOCSegmentation, read_id_list
from common.data.synth.voc import write_synthetic_voc


def test_synthetic_voc_has_the_real_layout(tmp_path):
    voc = write_synthetic_voc(tmp_path, count=5, seed=1)
    assert voc == tmp_path / "VOCdevkit" / "VOC2012"
    dataset = VOCSegmentation.from_parent(tmp_path)
    dataset.check_files()
    assert len(dataset) == 5
    sizes = {dataset.read_image_rgb(i).shape[:2] for i in dataset.ids}
    assert any(max(s) == 500 for s in sizes) and any(max(s) != 500 for s in sizes)
    with Image.open(dataset.label_path(dataset.ids[0])) as label:
        assert label.mode == "P"  # palette PNG, class ids as indices
    values = np.unique(np.concatenate([np.unique(dataset.read_label(i)) for i in dataset.ids]))
    assert 0 in values and 255 in values and len(values) >= 4


def test_missing_label_is_reported_with_count(tmp_path):
    write_synthetic_voc(tmp_path, count=3, sizes_hw=((20, 30),))
    dataset = VOCSegmentation.from_parent(tmp_path)
    dataset.label_path(dataset.ids[1]).unlink()
    with pytest.raises(UserError, match=r"label missing \(1 of 3 ids, first: 2007_000001\)"):
        dataset.check_files()


def test_id_list_accepts_plain_and_upstream_formats(tmp_path):
    (tmp_path / "a.txt").write_text("2007_000033\n\n2007_000042\n")
    (tmp_path / "b.txt").write_text("/JPEGImages/2007_000033.jpg /SegmentationClassAug/2007_000033.png\n")
    assert read_id_list(tmp_path / "a.txt") == ["2007_000033", "2007_000042"]
    assert read_id_list(tmp_path / "b.txt") == ["2007_000033"]


def test_unreadable_image_and_rgb_label(tmp_path):
    write_synthetic_voc(tmp_path, count=1, sizes_hw=((20, 30),))
    dataset = VOCSegmentation.from_parent(tmp_path)
    dataset.image_path(dataset.ids[0]).write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="unreadable image"):
        dataset.read_image_rgb(dataset.ids[0])
    Image.new("RGB", (30, 20)).save(dataset.label_path(dataset.ids[0]))
    with pytest.raises(UserError, match="mode RGB"):
        dataset.read_label(dataset.ids[0])


def test_no_vocdevkit_below_the_folder(tmp_path):
    with pytest.raises(UserError, match="no VOC2012 folder"):
        VOCSegmentation.from_parent(tmp_path)
