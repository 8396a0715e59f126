"""`--show-dir` of the four segmentation postprocesses: the pictures are of the class map that is
scored (its mIoU recomputed from the written class-id PNGs equals the metric), in the dataset's
colours, and the guide's own outputs (metric JSON, labelId PNGs, Wseg masks) stay byte for byte
what they are without the flag. Output bins are random smooth logits (no network needed)."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from refinenet.config import output_shapes
import pytest
from PIL import Image

from common import cli
from common.files.bins import write_bin
from common.data.voc import VOCSegmentation
from common.data.cityscapes import (cityscapes_image_of_label, list_cityscapes_labels,
                                    read_cityscapes_train_ids)
from common.data.images import read_palette_label
from common.data.geometry import letterbox
from common.eval.confusion import ConfusionMatrix
from common.pipeline.packs import pack_module
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.data.synth.voc import write_synthetic_voc
from common.viz.draw import read_class_png
from common.viz.palettes import CITYSCAPES, VOC
from common.viz.show import list_show_records

refinenet = pack_module("RefineNet", "RefineNet_postprocess")
hrnet = pack_module("3D_HRNet", "HRNet_postprocess")
pointrend = pack_module("PointRend", "PointRend_postprocess")
wseg_pre = pack_module("Wseg", "wseg_preprocess")
wseg = pack_module("Wseg", "wseg_postprocess")


def smooth_logits(rng, classes: int, hw: tuple[int, int]) -> np.ndarray:
    """Class scores that vary slowly in space, so predictions have regions of several classes."""
    coarse = rng.normal(0, 3, size=(max(2, hw[0] // 4), max(2, hw[1] // 4), classes)).astype(np.float32)
    return cv2.resize(coarse, hw[::-1], interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1).copy()


def run(module, *argv):
    code = cli.run_script(module.main, module.parse_args, [str(a) for a in argv])
    assert code == 0


def file_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def check_pictures(show_dir: Path, palette, count: int) -> dict:
    """Every image has its class-id PNG, colour PNG in the palette's colours, and an overlay."""
    records = list_show_records(show_dir)
    assert len(records) == count
    for stem, record in records.items():
        class_map = record.class_map()
        with Image.open(show_dir / f"{stem}_colour.png") as image:
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), palette.colours[class_map])
        with Image.open(show_dir / f"{stem}_overlay.jpg") as image:
            assert image.height >= class_map.shape[0] and image.width > class_map.shape[1]  # legend beside
        assert record.palette is palette and record.image_path.is_file()
    return records


# ---- RefineNet: scored on the 64x64 canvas; the pictures are its image area --------------------

@pytest.fixture(scope="module")
def voc_with_grey_image(tmp_path_factory):
    root = tmp_path_factory.mktemp("show_voc")
    voc = write_synthetic_voc(root, count=3, seed=5, sizes_hw=((45, 61), (64, 37), (30, 100)))
    first = voc / "JPEGImages" / "2007_000000.jpg"
    Image.open(first).convert("L").save(first)  # VOC holds a few grey JPEGs
    return root


def test_refinenet_show_dir_is_the_scored_map_and_keeps_the_metric_bytes(voc_with_grey_image, tmp_path):
    size = 64
    dataset = VOCSegmentation.from_parent(voc_with_grey_image)
    rng = np.random.default_rng(0)
    side = output_shapes((size, size))[0][1]
    for image_id in dataset.ids:
        write_bin(tmp_path / "res" / f"{image_id}_0.bin", smooth_logits(rng, 21, (side, side)))
    common = ["--val-dir", voc_with_grey_image, "--result-dir", tmp_path / "res", "--size", size]
    run(refinenet, *common, "--save_path", tmp_path / "plain.json")
    run(refinenet, *common, "--save_path", tmp_path / "shown.json", "--show-dir", tmp_path / "show")
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "shown.json").read_bytes()
    records = check_pictures(tmp_path / "show", VOC, len(dataset.ids))
    matrix = ConfusionMatrix(21, 255)
    for image_id in dataset.ids:
        label = dataset.read_label(image_id)
        box = letterbox(label.shape, size)
        class_map = records[image_id].class_map()
        assert class_map.shape == box.resized_hw
        matrix.update(box.unpadded(refinenet.label_on_canvas(label, box)), class_map)
    assert matrix.mean_iou() == pytest.approx(json.loads((tmp_path / "plain.json").read_text())["miou"], abs=1e-12)


# ---- 3D_HRNet and PointRend: Cityscapes, at the label's size -------------------------------------

@pytest.fixture(scope="module")
def cityscapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("show_cs")
    write_synthetic_cityscapes(root, count=3, size_hw=(64, 128), seed=6)
    return root


def cityscapes_miou(records, labels) -> ConfusionMatrix:
    matrix = ConfusionMatrix(19, 255)
    for name, label_path in labels.items():
        matrix.update(read_cityscapes_train_ids(label_path), records[name].class_map())
    return matrix


def test_hrnet_show_dir_is_the_ocr_map_and_keeps_the_metric_bytes(cityscapes, tmp_path):
    gt = cityscapes / "cityscapes" / "gtFine" / "val"
    labels = list_cityscapes_labels(gt)
    rng = np.random.default_rng(1)
    for name in labels:
        for index in (0, 1):  # aux and OCR
            write_bin(tmp_path / "res" / f"{name}_leftImg8bit_{index}.bin", smooth_logits(rng, 19, (16, 32)))
    run(hrnet, "--res_path", tmp_path / "res", "--data_path", gt, "--save_path", tmp_path / "plain.json")
    run(hrnet, "--res_path", tmp_path / "res", "--data_path", gt, "--save_path", tmp_path / "shown.json",
        "--aux-index", "-1", "--show-dir", tmp_path / "show")
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "shown.json").read_bytes()
    records = check_pictures(tmp_path / "show", CITYSCAPES, len(labels))
    for name, label_path in labels.items():
        assert records[name].image_path == cityscapes_image_of_label(label_path).resolve()
    iou = np.nan_to_num(cityscapes_miou(records, labels).iou_per_class(), nan=0.0).mean()
    assert iou == pytest.approx(json.loads((tmp_path / "plain.json").read_text())["value"]["mean_Iou"], abs=1e-12)


def test_pointrend_show_dir_at_label_size_keeps_metric_and_label_id_pngs(cityscapes, tmp_path):
    labels = list_cityscapes_labels(cityscapes / "cityscapes" / "gtFine" / "val")
    rng = np.random.default_rng(2)
    for name in labels:  # a 32x64 input: the prediction is resized back to the 64x128 label
        write_bin(tmp_path / "res" / f"{name}_leftImg8bit_0.bin", smooth_logits(rng, 19, (32, 64)))
    common = [cityscapes, tmp_path / "res", "--input-size", 32, 64]
    run(pointrend, *common, "--save_path", tmp_path / "plain.json", "--pred-dir", tmp_path / "pred_plain")
    run(pointrend, *common, "--save_path", tmp_path / "shown.json", "--pred-dir", tmp_path / "pred_shown",
        "--show-dir", tmp_path / "show")
    assert (tmp_path / "plain.json").read_bytes() == (tmp_path / "shown.json").read_bytes()
    assert file_bytes(tmp_path / "pred_plain") == file_bytes(tmp_path / "pred_shown")
    records = check_pictures(tmp_path / "show", CITYSCAPES, len(labels))
    assert all(r.class_map().shape == (64, 128) for r in records.values())
    metric = json.loads((tmp_path / "plain.json").read_text())["miou"]
    assert cityscapes_miou(records, labels).mean_iou() == pytest.approx(metric, abs=1e-12)


# ---- Wseg: the final mask (CRF when it runs) -------------------------------------------------------

@pytest.mark.parametrize("crf", ["on", "off"])
def test_wseg_show_dir_is_the_final_mask_and_keeps_the_masks(tmp_path, crf):
    pad = 64
    voc = write_synthetic_voc(tmp_path / "data", count=2, seed=7, sizes_hw=((24, 32), (17, 31)))
    id_list = voc / "ImageSets" / "Segmentation" / "val.txt"
    run(wseg_pre, tmp_path / "data", id_list, tmp_path / "prep", "--pad-size", pad)
    rng = np.random.default_rng(3)
    for image_id in id_list.read_text().split():
        for k in range(wseg.NUM_VARIANTS):
            write_bin(tmp_path / "res" / f"{image_id}_{k}_0.bin", rng.normal(0, 2, size=20).astype(np.float32))
            mask = np.abs(smooth_logits(rng, 21, (pad, pad))) / 4
            write_bin(tmp_path / "res" / f"{image_id}_{k}_1.bin", mask.astype(np.float32))
    common = [tmp_path / "data", id_list, tmp_path / "res", tmp_path / "out", "--crf", crf,
              "--meta", tmp_path / "prep" / wseg.META_NAME]
    run(wseg, *common)
    guide_files = file_bytes(tmp_path / "out")
    run(wseg, *common, "--show-dir", tmp_path / "show")
    assert file_bytes(tmp_path / "out") == guide_files
    records = check_pictures(tmp_path / "show", VOC, 2)
    final_dir = tmp_path / "out" / ("crf" if crf == "on" else "")
    for image_id, record in records.items():
        np.testing.assert_array_equal(record.class_map(), read_class_png(final_dir / f"{image_id}.png"))
        assert record.class_map().shape == read_palette_label(voc / "SegmentationClass" / f"{image_id}.png").shape
