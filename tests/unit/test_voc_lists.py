"""common/data/voc.py: upstream two-path lists and plain id lists give the same samples."""
from __future__ import annotations

import pytest

from common.cli import UserError
from common.data.voc import check_exist, find_voc2012, read_sample_list


@pytest.fixture
def data_root(tmp_path):
    voc = tmp_path / "data" / "voc" / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass"):
        (voc / folder).mkdir(parents=True)
    for image_id in ("2007_000032", "2007_000039"):
        (voc / "JPEGImages" / f"{image_id}.jpg").write_bytes(b"x")
        (voc / "SegmentationClass" / f"{image_id}.png").write_bytes(b"x")
    return tmp_path / "data"


def test_both_formats_name_the_same_files(data_root, tmp_path):
    upstream = tmp_path / "val_voc.txt"
    upstream.write_text("voc/VOCdevkit/VOC2012/JPEGImages/2007_000032.jpg "
                        "voc/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png\r\n"
                        "voc/VOCdevkit/VOC2012/JPEGImages/2007_000039.jpg "
                        "voc/VOCdevkit/VOC2012/SegmentationClass/2007_000039.png\r\n")
    plain = tmp_path / "val.txt"
    plain.write_text("2007_000032\n\n2007_000039\n")
    from_upstream = read_sample_list(data_root, upstream)
    from_plain = read_sample_list(data_root, plain)
    assert [s.image_id for s in from_upstream] == ["2007_000032", "2007_000039"]
    assert [(s.image_path.resolve(), s.label_path.resolve()) for s in from_upstream] == \
        [(s.image_path.resolve(), s.label_path.resolve()) for s in from_plain]
    check_exist(from_plain)


def test_bad_lists_are_reported_with_their_line(data_root, tmp_path):
    repeated = tmp_path / "repeated.txt"
    repeated.write_text("2007_000032\n2007_000039\n2007_000032\n")
    with pytest.raises(UserError, match=r"repeated.txt:3: id 2007_000032 is listed twice \(first on line 1\)"):
        read_sample_list(data_root, repeated)
    three = tmp_path / "three.txt"
    three.write_text("a b c\n")
    with pytest.raises(UserError, match=r"three.txt:1: expected"):
        read_sample_list(data_root, three)
    missing = tmp_path / "missing.txt"
    missing.write_text("2007_000032\n2007_999999\n")
    with pytest.raises(UserError, match="2007_999999.jpg: image missing"):
        check_exist(read_sample_list(data_root, missing))


def test_a_root_without_voc2012_names_the_places_searched(tmp_path):
    with pytest.raises(UserError, match="voc/VOCdevkit/VOC2012"):
        find_voc2012(tmp_path)
