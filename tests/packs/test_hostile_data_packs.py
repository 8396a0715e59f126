"""Issue 14, data families, for PointRend, 3D_HRNet, Wseg and MaskRCNN_mmdet: decompression
bombs in each dataset folder, absurd sizes, one name in two city folders or as .jpg and .png,
ids with dots, label ids outside the label set, all-void splits, labels of another size,
metadata and annotations the postprocess cannot trust, detections of unknown classes.

Each case asserts exit code 2, the one line's fragments and that the output folder (or the
metric file of an earlier run) is unchanged; valid but odd input (grey and CMYK JPEGs) runs and
gives what the upstream decoder gives. Scripts run in-process on tiny synthetic datasets, with
fake outputs of the right shapes (no network is built).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.data.synth.coco import write_synthetic_coco
from common.files.bins import write_bin
from common.pipeline.packs import pack_module
from helpers import expect_one_line, run_cli
from helpers import snapshot
from hostile_data_files import copy_datasets, set_label_pixels, write_pack_datasets, write_jpeg_bomb, write_png_bomb

CS_HW = (64, 128)
WSEG_PAD = 64
CANVAS = 64
COUNT = 3

pointrend_pre = pack_module("PointRend", "PointRend_preprocess")
pointrend_post = pack_module("PointRend", "PointRend_postprocess")
hrnet_pre = pack_module("3D_HRNet", "HRNet_preprocess")
hrnet_post = pack_module("3D_HRNet", "HRNet_postprocess")
wseg_pre = pack_module("Wseg", "wseg_preprocess")
wseg_post = pack_module("Wseg", "wseg_postprocess")
wseg_eval = pack_module("Wseg", "eval_seg")
mmdet_pre = pack_module("MaskRCNN_mmdet", "mmdet_preprocess")
mmdet_post = pack_module("MaskRCNN_mmdet", "mmdet_postprocess")
mmdet_info = pack_module("MaskRCNN_mmdet", "get_info")


# ---- datasets: written once per module, copied by each test -----------------------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return write_pack_datasets(tmp_path_factory.mktemp("pristine"), COUNT, CS_HW, seed=4)


@pytest.fixture
def data(tmp_path, pristine) -> dict[str, Path]:
    return copy_datasets(pristine, tmp_path / "data")


@pytest.fixture
def earlier(tmp_path) -> Path:
    """An output folder holding an earlier run's file: a refused run leaves it as it was."""
    folder = tmp_path / "out"
    write_bin(folder / "earlier.bin", np.arange(4, dtype=np.float32))
    (folder / "metric.json").write_text('{"from": "an earlier run"}\n')
    return folder


def cs_images(data: dict) -> list[Path]:
    return sorted((data["cs"] / "cityscapes" / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))


def cs_labels(data: dict) -> list[Path]:
    return sorted((data["cs"] / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))


def cs_name(path: Path) -> str:
    return path.name.split("_leftImg8bit")[0].split("_gtFine")[0]


def voc_dir(data: dict) -> Path:
    return data["voc"] / "VOCdevkit" / "VOC2012"


def voc_list(data: dict) -> Path:
    return voc_dir(data) / "ImageSets" / "Segmentation" / "val.txt"


def voc_ids(data: dict) -> list[str]:
    return voc_list(data).read_text().split()


def coco_images(data: dict) -> list[Path]:
    return sorted((data["coco"] / "val2017").glob("*.jpg"))


PREPROCESS_ARGS = {
    "PointRend": (pointrend_pre, lambda d, out: [d["cs"], out, "--input-size", *CS_HW]),
    "3D_HRNet": (hrnet_pre, lambda d, out: ["--src_path", d["cs"], "--save_path", out]),
    "Wseg": (wseg_pre, lambda d, out: [d["voc"], voc_list(d), out, "--pad-size", WSEG_PAD]),
    "MaskRCNN_mmdet": (mmdet_pre, lambda d, out: ["--image_src_path", d["coco"] / "val2017", "--bin_file_path", out,
                                                 "--model_input_height", CANVAS, "--model_input_width", CANVAS]),
}


def run_preprocess(pack: str, data: dict, out: Path, *extra, capsys):
    module, argv = PREPROCESS_ARGS[pack]
    return run_cli(module, *argv(data, out), *extra, capsys=capsys)


# ---- decompression bombs in every dataset folder -------------------------------------------------------

@pytest.mark.parametrize("pack", sorted(PREPROCESS_ARGS))
def test_bomb_in_the_dataset_folder_is_refused_before_any_bin(pack, data, earlier, capsys):
    if pack in ("PointRend", "3D_HRNet"):
        victim = write_png_bomb(cs_images(data)[-1])
    elif pack == "Wseg":
        victim = write_jpeg_bomb(voc_dir(data) / "JPEGImages" / f"{voc_ids(data)[-1]}.jpg")
    else:
        victim = write_jpeg_bomb(coco_images(data)[-1])
    before = snapshot(earlier)
    code, lines = run_preprocess(pack, data, earlier, capsys=capsys)
    expect_one_line(code, lines, f"{victim}: image header declares 30000x30000 pixels (900 megapixels)",
                    "not decoded")
    assert snapshot(earlier) == before


def test_mmdet_get_info_with_a_bomb(data, tmp_path, capsys):
    victim = write_jpeg_bomb(coco_images(data)[0])
    code, lines = run_cli(mmdet_info, "jpg", data["coco"] / "val2017", tmp_path / "val2017.info", capsys=capsys)
    expect_one_line(code, lines, f"{victim}: image header declares 30000x30000 pixels")
    assert not (tmp_path / "val2017.info").exists()


def test_cityscapes_label_bomb_stops_the_postprocess(data, tmp_path, earlier, capsys):
    label = write_png_bomb(cs_labels(data)[0], mode="L")
    results = pointrend_outputs(data, tmp_path / "res")
    code, lines = run_cli(pointrend_post, data["cs"], results, "--input-size", *CS_HW,
                          "--save_path", earlier / "metric.json", capsys=capsys)
    expect_one_line(code, lines, f"{label}: label header declares 30000x30000 pixels")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


# ---- absurd sizes -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pack, flags, given", [
    ("PointRend", ("--input-size", 60000, 60000), "--input-size 60000 60000"),
    ("Wseg", ("--pad-size", 60000), "--pad-size 60000"),
    ("MaskRCNN_mmdet", ("--model_input_height", 60000, "--model_input_width", 60000),
     "--model_input_height 60000 --model_input_width 60000"),
])
def test_absurd_size_is_refused_before_anything(pack, flags, given, data, earlier, capsys):
    before = snapshot(earlier)
    code, lines = run_preprocess(pack, data, earlier, *flags, capsys=capsys)
    expect_one_line(code, lines, f"{given}: one input of 3x60000x60000 float32 would take 40.2 GiB",
                    "more than the bound of 4.0 GiB per sample")
    assert snapshot(earlier) == before


def test_pointrend_postprocess_absurd_size(data, tmp_path, earlier, capsys):
    code, lines = run_cli(pointrend_post, data["cs"], pointrend_outputs(data, tmp_path / "res"), "--input-size",
                          60000, 60000, "--save_path", earlier / "metric.json", capsys=capsys)
    line = expect_one_line(code, lines, "--input-size 60000 60000: one input of 3x60000x60000 float32")
    assert "WARNING" not in line
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


# ---- name collisions ----------------------------------------------------------------------------------

def _same_name_in_two_cities(data: dict) -> tuple[Path, Path]:
    """Copy the first image (and its labels) into a second city folder under the same name."""
    first = cs_images(data)[0]
    other_city = first.parent.parent / "zurich"
    other_city.mkdir()
    copy = Path(shutil.copy(first, other_city / first.name))
    gt = data["cs"] / "cityscapes" / "gtFine" / "val"
    for label in (gt / first.parent.name).glob(f"{cs_name(first)}_gtFine_*.png"):
        (gt / "zurich").mkdir(exist_ok=True)
        shutil.copy(label, gt / "zurich" / label.name)
    return first, copy


@pytest.mark.parametrize("pack", ["PointRend", "3D_HRNet"])
def test_one_name_in_two_city_folders_is_refused(pack, data, earlier, capsys):
    first, copy = _same_name_in_two_cities(data)
    before = snapshot(earlier)
    code, lines = run_preprocess(pack, data, earlier, capsys=capsys)
    # sorted glob: frankfurt/lindau/munster before zurich
    expect_one_line(code, lines, f"{copy}: image name {cs_name(first)} also found at {first}",
                    "one bin and one score for two images")
    assert snapshot(earlier) == before


def test_hrnet_postprocess_one_label_name_in_two_cities(data, tmp_path, earlier, capsys):
    first, _ = _same_name_in_two_cities(data)
    code, lines = run_cli(hrnet_post, "--res_path", hrnet_outputs(data, tmp_path / "res"), "--data_path",
                          data["cs"] / "cityscapes" / "gtFine" / "val", "--save_path", earlier / "metric.json",
                          capsys=capsys)
    expect_one_line(code, lines, f"label name {cs_name(first)} also found at")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


def test_mmdet_jpg_and_png_of_one_stem(data, earlier, capsys):
    first = coco_images(data)[0]
    Image.open(first).save(first.with_suffix(".png"))
    before = snapshot(earlier)
    code, lines = run_preprocess("MaskRCNN_mmdet", data, earlier, capsys=capsys)
    expect_one_line(code, lines, f"{first.parent}: {first.stem}.png and {first.name} have one sample name "
                                 f"'{first.stem}'", "outputs would overwrite each other")
    assert snapshot(earlier) == before


def test_wseg_id_with_a_dot_is_refused(data, earlier, capsys):
    ids = voc_ids(data)
    for folder, suffix in (("JPEGImages", ".jpg"), ("SegmentationClass", ".png")):
        shutil.move(voc_dir(data) / folder / f"{ids[0]}{suffix}", voc_dir(data) / folder / f"{ids[0]}.v2{suffix}")
    voc_list(data).write_text("\n".join([f"{ids[0]}.v2"] + ids[1:]) + "\n")
    before = snapshot(earlier)
    code, lines = run_preprocess("Wseg", data, earlier, capsys=capsys)
    image = voc_dir(data) / "JPEGImages" / f"{ids[0]}.v2.jpg"
    expect_one_line(code, lines, f"{image}: {ids[0]}.v2_1.bin and {ids[0]}.v2_0.bin have one sample name "
                                 f"'{ids[0]}'")
    assert snapshot(earlier) == before


# ---- valid but odd images: run, as the upstream decoder reads them ---------------------------------------

def test_mmdet_grey_jpeg_is_read_as_three_equal_channels(tmp_path, capsys):
    root = write_synthetic_coco(tmp_path / "coco", count=2, seed=6, sizes_hw=((40, 56),), grayscale=(0,))
    grey = root / "val2017" / json.loads((root / "annotations" / "instances_val2017.json").read_text())["images"][0]["file_name"]
    assert Image.open(grey).mode == "L"
    code, lines = run_cli(mmdet_pre, "--image_src_path", root / "val2017", "--bin_file_path", tmp_path / "bins",
                          "--model_input_height", CANVAS, "--model_input_width", CANVAS, capsys=capsys)
    assert code == 0, lines
    chw = np.fromfile(tmp_path / "bins" / f"{grey.stem}.bin", np.float32).reshape(3, CANVAS, CANVAS)
    mean = np.array(pack_module("MaskRCNN_mmdet", "config").PIXEL_MEAN_RGB, np.float32)[:, None, None]
    std = np.array(pack_module("MaskRCNN_mmdet", "config").PIXEL_STD_RGB, np.float32)[:, None, None]
    box = json.loads((tmp_path / "bins" / "preprocess_meta.json").read_text())["images"][grey.stem]
    (top, left), (height, width) = (box["pad_top"], box["pad_left"]), box["resized_hw"]
    pixels = np.round(chw * std + mean)[:, top:top + height, left:left + width]  # the image area
    np.testing.assert_array_equal(pixels[0], pixels[1])
    np.testing.assert_array_equal(pixels[1], pixels[2])


def test_wseg_grey_and_cmyk_jpegs_are_preprocessed(data, tmp_path, capsys):
    ids = voc_ids(data)
    for image_id, mode in zip(ids[:2], ("L", "CMYK")):
        path = voc_dir(data) / "JPEGImages" / f"{image_id}.jpg"
        Image.open(path).convert(mode).save(path, quality=95)
    code, lines = run_preprocess("Wseg", data, tmp_path / "bins", capsys=capsys)
    assert code == 0, lines
    meta = json.loads((tmp_path / "bins" / "wseg_preprocess_meta.json").read_text())
    assert sorted(meta["images"]) == sorted(ids)


# ---- labels: ids outside the label set, all void, another size -------------------------------------------

def pointrend_outputs(data: dict, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for image in cs_images(data):
        write_bin(folder / f"{cs_name(image)}_leftImg8bit_0.bin",
                  rng.standard_normal((19, *CS_HW)).astype(np.float32))
    return folder


def hrnet_outputs(data: dict, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    for image in cs_images(data):
        write_bin(folder / f"{cs_name(image)}_leftImg8bit_1.bin",
                  rng.standard_normal((19, CS_HW[0] // 4, CS_HW[1] // 4)).astype(np.float32))
    return folder


def run_cityscapes_post(pack: str, data: dict, tmp_path: Path, save: Path, *extra, capsys):
    if pack == "PointRend":
        return run_cli(pointrend_post, data["cs"], pointrend_outputs(data, tmp_path / "res"), "--input-size", *CS_HW,
                       "--save_path", save, *extra, capsys=capsys)
    return run_cli(hrnet_post, "--res_path", hrnet_outputs(data, tmp_path / "res"), "--data_path",
                   data["cs"] / "cityscapes" / "gtFine" / "val", "--save_path", save, *extra, capsys=capsys)


def _without_meta_warning(lines: list[str]) -> list[str]:
    """PointRend run without metadata says so first; the line under test is the other one."""
    return [line for line in lines if "no preprocess_meta.json found" not in line]


@pytest.mark.parametrize("pack, value", [("PointRend", 200), ("3D_HRNet", 250)])
def test_cityscapes_label_id_outside_0_33_is_named(pack, value, data, tmp_path, earlier, capsys):
    label = cs_labels(data)[1]
    count = set_label_pixels(label, value)
    code, lines = run_cityscapes_post(pack, data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, _without_meta_warning(lines), f"{label}: label ids outside the Cityscapes label set "
                                                        f"(label ids 0..33): {value} ({count} px)",
                    "pass --unknown-ids-as-void")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


@pytest.mark.parametrize("pack", ["PointRend", "3D_HRNet"])
def test_cityscapes_unknown_ids_as_void_are_counted_and_said(pack, data, tmp_path, capsys):
    label = cs_labels(data)[0]
    count = set_label_pixels(label, 250, rows=slice(10, 20), cols=slice(10, 30))
    code, lines = run_cityscapes_post(pack, data, tmp_path, tmp_path / "m.json", "--unknown-ids-as-void",
                                      capsys=capsys)
    assert code == 0, lines
    assert (f"[WARNING] {count} label pixel(s) in 1 image(s) hold ids outside the Cityscapes label set "
            "(label ids 0..33); counted as void (--unknown-ids-as-void)") in lines
    assert json.loads((tmp_path / "m.json").read_text())["label_pixels_unknown_as_void"] == count


@pytest.mark.parametrize("pack", ["PointRend", "3D_HRNet"])
def test_cityscapes_split_of_void_labels_has_no_metric(pack, data, tmp_path, earlier, capsys):
    for label in cs_labels(data):
        set_label_pixels(label, 0, rows=slice(0, CS_HW[0]), cols=slice(0, CS_HW[1]))  # 0 = unlabeled (void)
    code, lines = run_cityscapes_post(pack, data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, _without_meta_warning(lines), f"no label pixel of the {COUNT} scored image(s) holds a "
                                                        "class (every pixel is void or ignored): the metric is undefined")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


@pytest.mark.parametrize("pack", ["PointRend", "3D_HRNet"])
def test_cityscapes_label_of_another_size_names_label_and_image(pack, data, tmp_path, earlier, capsys):
    label, image = cs_labels(data)[2], cs_images(data)[2]
    assert cs_name(label) == cs_name(image)
    with Image.open(label) as opened:
        opened.resize((CS_HW[1] // 2, CS_HW[0] // 2), Image.NEAREST).save(label)
    code, lines = run_cityscapes_post(pack, data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, _without_meta_warning(lines), f"{label}: label is {CS_HW[1] // 2}x{CS_HW[0] // 2}, "
                                                        f"its image {image} is {CS_HW[1]}x{CS_HW[0]}")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


def masks_for(data: dict, folder: Path) -> Path:
    """eval_seg input: one class-index PNG per id, at its label's size."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for image_id in voc_ids(data):
        with Image.open(voc_dir(data) / "SegmentationClass" / f"{image_id}.png") as label:
            width, height = label.size
        Image.fromarray(rng.integers(0, 21, (height, width), dtype=np.uint8)).save(folder / f"{image_id}.png")
    return folder


def run_eval(data: dict, tmp_path: Path, save: Path, *extra, capsys):
    return run_cli(wseg_eval, "--data", data["voc"], "--filelist", voc_list(data), "--masks",
                   masks_for(data, tmp_path / "masks"), "--save_path", save, *extra, capsys=capsys)


def test_wseg_eval_label_id_outside_the_voc_set(data, tmp_path, earlier, capsys):
    label = voc_dir(data) / "SegmentationClass" / f"{voc_ids(data)[1]}.png"
    count = set_label_pixels(label, 100)
    code, lines = run_eval(data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, lines, f"{label}: label ids outside the VOC label set (0..20 and 255 (void)): "
                                 f"100 ({count} px)")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


def test_wseg_eval_unknown_ids_as_void(data, tmp_path, capsys):
    label = voc_dir(data) / "SegmentationClass" / f"{voc_ids(data)[1]}.png"
    count = set_label_pixels(label, 100)
    code, lines = run_eval(data, tmp_path, tmp_path / "m.json", "--unknown-ids-as-void", capsys=capsys)
    assert code == 0, lines
    assert any(line.startswith(f"[WARNING] {count} label pixel(s) in 1 image(s)") for line in lines), lines
    assert json.loads((tmp_path / "m.json").read_text())["label_pixels_unknown_as_void"] == count


def test_wseg_eval_split_of_void_labels(data, tmp_path, earlier, capsys):
    for image_id in voc_ids(data):
        set_label_pixels(voc_dir(data) / "SegmentationClass" / f"{image_id}.png", 255, rows=slice(0, 99),
                         cols=slice(0, 99))
    code, lines = run_eval(data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, lines, f"{voc_list(data)}: no label pixel of the {COUNT} scored image(s) holds a class")
    assert (earlier / "metric.json").read_text() == '{"from": "an earlier run"}\n'


def test_wseg_eval_label_of_another_size(data, tmp_path, earlier, capsys):
    image_id = voc_ids(data)[0]
    label = voc_dir(data) / "SegmentationClass" / f"{image_id}.png"
    with Image.open(label) as opened:
        width, height = opened.size
        bigger = opened.resize((width, height + 2), Image.NEAREST)
        bigger.putpalette(opened.getpalette())
    bigger.save(label)
    code, lines = run_eval(data, tmp_path, earlier / "metric.json", capsys=capsys)
    expect_one_line(code, lines, f"{label}: label is {width}x{height + 2}, its image "
                                 f"{voc_dir(data) / 'JPEGImages' / (image_id + '.jpg')} is {width}x{height}")


# ---- preprocess metadata the postprocess reads ----------------------------------------------------------

@pytest.fixture(scope="module")
def wseg_prepared(pristine, tmp_path_factory) -> dict:
    """Wseg bins' metadata and fake outputs (lean masks) for every id of the pristine VOC."""
    root = tmp_path_factory.mktemp("wseg")
    wseg_pre.main(wseg_pre.parse_args([str(pristine["voc"]), str(voc_list(pristine)), str(root / "bins"),
                                       "--pad-size", str(WSEG_PAD)]))
    lean = pack_module("Wseg", "model").lean_mask_size(WSEG_PAD)
    rng = np.random.default_rng(2)
    for image_id in voc_ids(pristine):
        for k in range(8):
            write_bin(root / "res" / f"{image_id}_{k}_0.bin", rng.standard_normal(20).astype(np.float32))
            write_bin(root / "res" / f"{image_id}_{k}_1.bin", np.abs(rng.standard_normal((21, lean, lean))).astype(np.float32))
    return {"meta": json.loads((root / "bins" / "wseg_preprocess_meta.json").read_text()), "res": root / "res"}


def _drop_variants(meta: dict, image_id: str) -> None:
    del meta["images"][image_id]["variants"]


def _pads_beyond(meta: dict, image_id: str) -> None:
    meta["images"][image_id]["variants"][5]["pads"][0] = WSEG_PAD - 3  # top pad + height > pad size


def _no_size(meta: dict, image_id: str) -> None:
    del meta["images"][image_id]["original_hw"]


@pytest.mark.parametrize("change, message", [
    (_drop_variants, "'variants' is missing, expected a list of 8 (one per input)"),
    (_pads_beyond, f"variant 5 pads [{WSEG_PAD - 3}, "),
    (_no_size, "'original_hw' is None, expected [height, width]"),
])
def test_wseg_metadata_is_checked_before_any_mask(change, message, pristine, wseg_prepared, tmp_path, capsys):
    meta = json.loads(json.dumps(wseg_prepared["meta"]))
    image_id = voc_ids(pristine)[1]
    change(meta, image_id)
    meta_path = tmp_path / "wseg_preprocess_meta.json"
    meta_path.write_text(json.dumps(meta))
    code, lines = run_cli(wseg_post, pristine["voc"], voc_list(pristine), wseg_prepared["res"], tmp_path / "masks",
                          "--crf", "off", "--meta", meta_path, capsys=capsys)
    expect_one_line(code, lines, f"{meta_path}: images['{image_id}']", message)
    assert not (tmp_path / "masks").exists()


# ---- MaskRCNN: annotations and detections ------------------------------------------------------------------

@pytest.fixture(scope="module")
def mmdet_prepared(pristine, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mmdet")
    mmdet_pre.main(mmdet_pre.parse_args(["--image_src_path", str(pristine["coco"] / "val2017"), "--bin_file_path",
                                         str(root / "bins"), "--model_input_height", str(CANVAS),
                                         "--model_input_width", str(CANVAS)]))
    mmdet_info.main(mmdet_info.parse_args(["jpg", str(pristine["coco"] / "val2017"), str(root / "coco.info")]))
    return {"meta": root / "bins" / "preprocess_meta.json", "info": root / "coco.info"}


def mmdet_outputs(data: dict, folder: Path, labels_of_first=None) -> Path:
    rng = np.random.default_rng(3)
    for index, image in enumerate(coco_images(data)):
        dets = np.zeros((100, 5), np.float32)
        dets[:2] = [[10, 10, 40, 40, 0.9], [5, 8, 30, 20, 0.6]]
        labels = np.full(100, -1, np.int64)
        labels[:2] = [0, 17]
        if index == 0 and labels_of_first is not None:
            labels[:len(labels_of_first)] = labels_of_first
        masks = np.zeros((100, 80, 28, 28), np.float32)
        masks[:2] = rng.uniform(0, 1, (2, 80, 28, 28))
        for k, array in enumerate((dets, labels, masks)):
            write_bin(folder / f"{image.stem}_{k}.bin", array)
    return folder


def run_mmdet_post(data: dict, prepared: dict, results: Path, out: Path, *extra, capsys):
    return run_cli(mmdet_post, "--bin_data_path", results, "--test_annotation", prepared["info"],
                   "--val2017_json_path", data["coco"] / "annotations" / "instances_val2017.json",
                   "--det_results_path", out / "det", "--net_input_height", CANVAS, "--net_input_width", CANVAS,
                   "--meta", prepared["meta"], "--save_path", out / "metric.json", *extra, capsys=capsys)


def test_mmdet_detection_label_outside_the_80_classes(data, mmdet_prepared, tmp_path, earlier, capsys):
    results = mmdet_outputs(data, tmp_path / "res", labels_of_first=[0, 85])
    before = snapshot(earlier)
    code, lines = run_mmdet_post(data, mmdet_prepared, results, earlier, capsys=capsys)
    expect_one_line(code, lines, f"{results}/{coco_images(data)[0].stem}_1.bin: row 1 has label 85, outside the 80 "
                                 "classes 0..79 (and -1 for padding rows); 1 such row(s)")
    assert snapshot(earlier) == before


def test_mmdet_padding_rows_alone_are_fine(data, mmdet_prepared, tmp_path, capsys):
    results = mmdet_outputs(data, tmp_path / "res")
    code, lines = run_mmdet_post(data, mmdet_prepared, results, tmp_path, capsys=capsys)
    assert code == 0, lines
    assert json.loads((tmp_path / "metric.json").read_text())["detections"] == 2 * COUNT


@pytest.mark.parametrize("change, message", [
    (lambda d: d["annotations"][0].pop("iscrowd"), "annotations[0] (id 1) has no 'iscrowd'"),
    (lambda d: d.update(images={"first": d["images"][0]}), "'images' is a dict, expected a list"),
    (lambda d: d["images"][1].pop("file_name"), "images[1] (id "),
    (lambda d: d["annotations"][1].update(bbox="1 2 3 4"), "annotations[1] (id 2): 'bbox' is '1 2 3 4'"),
])
def test_mmdet_annotation_file_is_checked(change, message, data, mmdet_prepared, tmp_path, earlier, capsys):
    path = data["coco"] / "annotations" / "instances_val2017.json"
    dataset = json.loads(path.read_text())
    change(dataset)
    path.write_text(json.dumps(dataset))
    before = snapshot(earlier)
    code, lines = run_mmdet_post(data, mmdet_prepared, mmdet_outputs(data, tmp_path / "res"), earlier, capsys=capsys)
    expect_one_line(code, lines, f"{path}: ", message)
    assert snapshot(earlier) == before


def test_mmdet_letterbox_beyond_the_canvas(data, mmdet_prepared, tmp_path, earlier, capsys):
    meta = json.loads(mmdet_prepared["meta"].read_text())
    stem = coco_images(data)[1].stem
    meta["images"][stem]["pad_left"] = CANVAS  # the image would start at the right edge
    meta_path = tmp_path / "meta.json"
    meta_path.write_text(json.dumps(meta))
    code, lines = run_mmdet_post(data, {**mmdet_prepared, "meta": meta_path}, mmdet_outputs(data, tmp_path / "res"),
                                 earlier, capsys=capsys)
    expect_one_line(code, lines, f"{meta_path}: the geometry of '{stem}' is not a letterbox record")


def test_mmdet_images_without_ground_truth_have_no_ap(data, mmdet_prepared, tmp_path, earlier, capsys):
    """The synthetic set's last image has no annotation (as 48 of val2017's do): scored alone,
    COCOeval would report AP -1 with exit code 0."""
    annotations = json.loads((data["coco"] / "annotations" / "instances_val2017.json").read_text())
    annotated = {a["image_id"] for a in annotations["annotations"]}
    bare = next(image for image in annotations["images"] if image["id"] not in annotated)
    info = tmp_path / "bare.info"
    info.write_text(f"0 {data['coco'] / 'val2017' / bare['file_name']} {bare['width']} {bare['height']}\n")
    results = tmp_path / "res"
    for path in mmdet_outputs(data, tmp_path / "all").glob(f"{Path(bare['file_name']).stem}_*.bin"):
        write_bin(results / path.name, np.fromfile(path, np.uint8))
    before = snapshot(earlier)
    code, lines = run_mmdet_post(data, {**mmdet_prepared, "info": info}, results, earlier, capsys=capsys)
    expect_one_line(code, lines, "instances_val2017.json: the 1 scored image(s) hold no ground-truth object "
                                 "(iscrowd 0): AP is undefined")
    assert snapshot(earlier) == before


def test_wseg_metadata_of_another_list_is_refused_before_any_mask(pristine, wseg_prepared, tmp_path, capsys):
    meta = json.loads(json.dumps(wseg_prepared["meta"]))
    image_id = voc_ids(pristine)[2]
    del meta["images"][image_id]
    meta_path = tmp_path / "wseg_preprocess_meta.json"
    meta_path.write_text(json.dumps(meta))
    code, lines = run_cli(wseg_post, pristine["voc"], voc_list(pristine), wseg_prepared["res"], tmp_path / "masks",
                          "--crf", "off", "--meta", meta_path, capsys=capsys)
    expect_one_line(code, lines, f"{meta_path}: no record of 1 listed image(s) (first: {image_id})")
    assert not (tmp_path / "masks").exists()
