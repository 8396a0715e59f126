"""Issue 7 for the four packs after RefineNet (3D_HRNet, PointRend, Wseg, MaskRCNN_mmdet): the
preprocess `--resume`, input checks before any work, name-matched outputs, `--allow-missing`,
NaN/Inf in outputs and another model's checkpoint, one test per message.

Scripts run in-process (common.cli.run_script: the command line minus sys.exit) on tiny
synthetic datasets; result folders are fake outputs of the right shapes, so no network is built
except by the checkpoint tests, which stop at the strict load.
"""
from __future__ import annotations

import json
import os
import pickle
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from common import cli
from common.binio import list_bins, write_bin
from common.demo_weights import manifest_shapes
from common.packs import load_pack_module
from common.synth import write_synthetic_cityscapes, write_synthetic_coco, write_synthetic_voc

CITYSCAPES_HW = (64, 128)  # PointRend wants multiples of 32; HRNet takes the images as they are
WSEG_PAD = 64  # Wseg's largest scale is 2.0: images up to 32 px fit
MMDET_CANVAS = 64
IMAGE_COUNT = 3
ALL_PACKS = ("PointRend", "3D_HRNet", "Wseg", "MaskRCNN_mmdet")


def run_cli(module, *argv, capsys) -> tuple[int, list[str]]:
    """Exit code and the non-progress stderr lines of a script run in-process."""
    code = cli.run_script(module.main, module.parse_args, [str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip() and "%|" not in line]


def expect_one_line(code: int, lines: list[str], *fragments: str) -> str:
    assert code == 2, lines
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- datasets (written once, copied by the tests that break them) --------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pristine")
    write_synthetic_cityscapes(root / "cs", count=IMAGE_COUNT, size_hw=CITYSCAPES_HW, seed=2)
    write_synthetic_voc(root / "voc", count=IMAGE_COUNT, seed=2, sizes_hw=((24, 32), (17, 31)))
    write_synthetic_coco(root / "coco", count=IMAGE_COUNT, seed=2, sizes_hw=((40, 56), (48, 30)))
    return {"cs": root / "cs", "voc": root / "voc", "coco": root / "coco"}


@pytest.fixture
def data(tmp_path, pristine) -> dict[str, Path]:
    """A private copy of the datasets."""
    return {name: Path(shutil.copytree(path, tmp_path / "data" / name)) for name, path in pristine.items()}


def voc_list(voc_parent: Path) -> Path:
    return voc_parent / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "val.txt"


# ---- preprocess: one description per pack --------------------------------------------------

@dataclass
class Preprocess:
    script: str
    argv: Callable[[dict, Path], list]  # (datasets, output folder) -> arguments
    images: Callable[[dict], list[Path]]  # the image files, in the order the script lists them
    meta_name: str


def cityscapes_images(data: dict) -> list[Path]:
    return sorted((data["cs"] / "cityscapes" / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))


PREPROCESS = {
    "PointRend": Preprocess("PointRend_preprocess", lambda d, out: [d["cs"], out, "--input_size", *CITYSCAPES_HW],
                            cityscapes_images, "preprocess_meta.json"),
    "3D_HRNet": Preprocess("HRNet_preprocess", lambda d, out: ["--src_path", d["cs"], "--save_path", out],
                           cityscapes_images, "preprocess_meta.json"),
    "Wseg": Preprocess("wseg_preprocess", lambda d, out: [d["voc"], voc_list(d["voc"]), out, "--pad-size", WSEG_PAD],
                       lambda d: sorted((d["voc"] / "VOCdevkit" / "VOC2012" / "JPEGImages").glob("*.jpg")),
                       "wseg_preprocess_meta.json"),
    "MaskRCNN_mmdet": Preprocess("mmdet_preprocess",
                                 lambda d, out: ["--image_src_path", d["coco"] / "val2017", "--bin_file_path", out,
                                                 "--model_input_height", MMDET_CANVAS,
                                                 "--model_input_width", MMDET_CANVAS],
                                 lambda d: sorted((d["coco"] / "val2017").glob("*.jpg")), "preprocess_meta.json"),
}


def preprocess_module(pack: str):
    return load_pack_module(pack, PREPROCESS[pack].script)


@pytest.mark.parametrize("pack", ALL_PACKS)
def test_preprocess_resume_redoes_only_what_is_not_finished(pack, pristine, tmp_path, capsys):
    case, module = PREPROCESS[pack], preprocess_module(pack)
    assert run_cli(module, *case.argv(pristine, tmp_path / "full"), capsys=capsys)[0] == 0
    part = tmp_path / "part"
    assert run_cli(module, *case.argv(pristine, part), capsys=capsys)[0] == 0
    bins = list_bins(part)
    bins[0].unlink()  # never written
    write_bin(bins[1], np.zeros((3, 32, 32), np.float32))  # left by a run at another size
    (part / f".{bins[2].name}.ab12_cd.tmp.bin").write_bytes(b"\0" * 5)  # killed mid-write
    (part / case.meta_name).unlink()  # written last: absent after a kill
    os.utime(bins[-1], ns=(1, 1))
    assert run_cli(module, *case.argv(pristine, part), "--resume", capsys=capsys)[0] == 0
    assert bins[-1].stat().st_mtime_ns == 1  # finished bin kept, not rewritten
    full = tmp_path / "full"
    assert sorted(p.name for p in part.iterdir()) == sorted(p.name for p in full.iterdir())
    for path in full.iterdir():
        assert path.read_bytes() == (part / path.name).read_bytes(), path.name


@pytest.mark.parametrize("pack", ALL_PACKS)
def test_unreadable_image_stops_preprocess_before_the_first_bin(pack, data, tmp_path, capsys):
    case = PREPROCESS[pack]
    victim = case.images(data)[-1]
    victim.write_bytes(b"<html>not found</html>")
    code, lines = run_cli(preprocess_module(pack), *case.argv(data, tmp_path / "bins"), capsys=capsys)
    expect_one_line(code, lines, f"{victim}: unreadable image (not an image file)")
    assert not (tmp_path / "bins").exists()


@pytest.mark.parametrize("pack, folder, message", [
    ("PointRend", "cs/cityscapes/leftImg8bit/val", "cs/cityscapes/leftImg8bit/val: image folder not found"),
    ("3D_HRNet", "cs/cityscapes/leftImg8bit/val", "cs/cityscapes/leftImg8bit/val: image folder not found"),
    ("Wseg", "voc/VOCdevkit/VOC2012/ImageSets", "ImageSets/Segmentation/val.txt: file list not found"),
    ("MaskRCNN_mmdet", "coco/val2017", "coco/val2017: folder not found"),
])
def test_missing_dataset_folder_is_named(pack, folder, message, data, tmp_path, capsys):
    shutil.rmtree(data["cs"].parent / folder)
    code, lines = run_cli(preprocess_module(pack), *PREPROCESS[pack].argv(data, tmp_path / "bins"), capsys=capsys)
    expect_one_line(code, lines, message)


def test_wseg_image_too_large_for_the_pad_is_refused_before_any_bin(data, tmp_path, capsys):
    module = preprocess_module("Wseg")
    code, lines = run_cli(module, data["voc"], voc_list(data["voc"]), tmp_path / "bins", "--pad-size", 48,
                          capsys=capsys)
    first = PREPROCESS["Wseg"].images(data)[0]
    expect_one_line(code, lines, f"{first}: 32x24 at scale 2.0 is 64x48, larger than --pad-size 48")
    assert not (tmp_path / "bins").exists()


def test_bin_folder_that_is_a_file(data, tmp_path, capsys):
    (tmp_path / "bins").write_text("x")
    code, lines = run_cli(preprocess_module("PointRend"), *PREPROCESS["PointRend"].argv(data, tmp_path / "bins"),
                          capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/bins: exists and is not a folder")
