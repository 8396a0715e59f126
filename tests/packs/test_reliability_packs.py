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

from hostile_data_files import copy_datasets, write_pack_datasets
from helpers import expect_one_line, run_cli
from common.files.bins import list_bins, write_bin
from common.weights.manifest import manifest_shapes
from common.pipeline.packs import pack_module

CITYSCAPES_HW = (64, 128)  # PointRend wants multiples of 32; HRNet takes the images as they are
WSEG_PAD = 64  # Wseg's largest scale is 2.0: images up to 32 px fit
MMDET_CANVAS = 64
IMAGE_COUNT = 3
ALL_PACKS = ("PointRend", "3D_HRNet", "Wseg", "MaskRCNN_mmdet")


# ---- datasets (written once, copied by the tests that break them) --------------------------

@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> dict[str, Path]:
    return write_pack_datasets(tmp_path_factory.mktemp("pristine"), IMAGE_COUNT, CITYSCAPES_HW, seed=2)


@pytest.fixture
def data(tmp_path, pristine) -> dict[str, Path]:
    """A private copy of the datasets."""
    return copy_datasets(pristine, tmp_path / "data")


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
    "PointRend": Preprocess("PointRend_preprocess", lambda d, out: [d["cs"], out, "--input-size", *CITYSCAPES_HW],
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
    return pack_module(pack, PREPROCESS[pack].script)


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


# ---- postprocess: fake outputs of the right shapes, matched by name --------------------------

def _logits(rng, *shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def _write_mmdet_outputs(folder: Path, stem: str, rng) -> None:
    """One 30x30 box of class 0 and 99 padding rows (label -1), as the exported graph pads."""
    dets = np.zeros((100, 5), np.float32)
    dets[0] = [10, 10, 40, 40, 0.9]
    labels = np.full(100, -1, np.int64)
    labels[0] = 0
    masks = np.zeros((100, 80, 28, 28), np.float32)
    masks[0, 0] = rng.uniform(0, 1, (28, 28))
    for index, array in enumerate((dets, labels, masks)):
        write_bin(folder / f"{stem}_{index}.bin", array)


def _write_wseg_outputs(folder: Path, image_id: str, rng) -> None:
    lean = pack_module("Wseg", "model").lean_mask_size(WSEG_PAD)  # the --lean-mask output size
    for k in range(8):
        write_bin(folder / f"{image_id}_{k}_0.bin", _logits(rng, 20))
        write_bin(folder / f"{image_id}_{k}_1.bin", np.abs(_logits(rng, 21, lean, lean)))


@dataclass
class Postprocess:
    script: str
    samples: Callable[[dict], list[str]]  # the names outputs are matched by, in list order
    write_outputs: Callable[[Path, str, np.random.Generator], None]  # every output file of one sample
    argv: Callable[[dict, Path, Path], list]  # (prepared inputs, result folder, metric JSON) -> arguments
    poisoned_file: str  # output file (after the sample name) given a NaN
    unit_outputs: Callable[[str], list[str]] = lambda name: [name]  # match_outputs units of a sample


def cityscapes_names(data: dict) -> list[str]:
    return [p.name[:-len("_leftImg8bit.png")] for p in cityscapes_images(data)]


POSTPROCESS = {
    "PointRend": Postprocess(
        "PointRend_postprocess", lambda d: [f"{n}_leftImg8bit" for n in cityscapes_names(d)],
        lambda folder, stem, rng: write_bin(folder / f"{stem}_0.bin", _logits(rng, 19, *CITYSCAPES_HW)),
        lambda d, res, save: [d["cs"], res, "--input-size", *CITYSCAPES_HW, "--save_path", save],
        "_0.bin"),
    "3D_HRNet": Postprocess(
        "HRNet_postprocess", cityscapes_names,
        lambda folder, name, rng: write_bin(folder / f"{name}_leftImg8bit_1.bin",
                                            _logits(rng, 19, CITYSCAPES_HW[0] // 4, CITYSCAPES_HW[1] // 4)),
        lambda d, res, save: ["--res_path", res, "--data_path", d["cs"] / "cityscapes" / "gtFine" / "val",
                              "--save_path", save, "--aux-index", -1],
        "_leftImg8bit_1.bin"),
    "Wseg": Postprocess(
        "wseg_postprocess",
        lambda d: (voc_list(d["voc"])).read_text().split(),
        _write_wseg_outputs,
        lambda d, res, save: [d["voc"], voc_list(d["voc"]), res, save.parent / "masks", "--crf", "off",
                              "--meta", d["wseg_bins"] / "wseg_preprocess_meta.json"],
        "_3_0.bin",  # a class score: NaN there would silently drop the class
        lambda image_id: [f"{image_id}_{k}" for k in range(8)]),
    "MaskRCNN_mmdet": Postprocess(
        "mmdet_postprocess", lambda d: [p.stem for p in sorted((d["coco"] / "val2017").glob("*.jpg"))],
        _write_mmdet_outputs,
        lambda d, res, save: ["--bin_data_path", res, "--test_annotation", d["coco_info"],
                              "--val2017_json_path", d["coco"] / "annotations" / "instances_val2017.json",
                              "--det_results_path", save.parent / "det", "--net_input_height", MMDET_CANVAS,
                              "--net_input_width", MMDET_CANVAS, "--meta", d["coco_bins"] / "preprocess_meta.json",
                              "--save_path", save],
        "_2.bin"),
}


def metric_json(pack: str, save: Path) -> Path:
    return save.parent / "masks" / "postprocess_summary.json" if pack == "Wseg" else save


@pytest.fixture(scope="module")
def prepared(pristine, tmp_path_factory) -> dict[str, Path]:
    """The datasets plus what the Wseg and MaskRCNN postprocess read: preprocess metadata, info file."""
    root = tmp_path_factory.mktemp("prepared")
    for pack, name in (("Wseg", "wseg_bins"), ("MaskRCNN_mmdet", "coco_bins")):
        module = preprocess_module(pack)
        module.main(module.parse_args([str(a) for a in PREPROCESS[pack].argv(pristine, root / name)]))
    info = pack_module("MaskRCNN_mmdet", "get_info")
    info.main(info.parse_args(["jpg", str(pristine["coco"] / "val2017"), str(root / "coco.info")]))
    return {**pristine, "wseg_bins": root / "wseg_bins", "coco_bins": root / "coco_bins",
            "coco_info": root / "coco.info"}


@pytest.fixture(scope="module")
def all_outputs(prepared, tmp_path_factory) -> dict[str, Path]:
    """Every sample's outputs for each pack, written once; tests link the ones they need."""
    root = tmp_path_factory.mktemp("outputs")
    rng = np.random.default_rng(0)
    for pack, case in POSTPROCESS.items():
        for name in case.samples(prepared):
            case.write_outputs(root / pack, name, rng)
    return {pack: root / pack for pack in POSTPROCESS}


def linked_results(source: Path, folder: Path, names) -> Path:
    """A result folder holding (links to) the outputs of `names` only."""
    folder.mkdir(parents=True)
    for name in names:
        for path in source.glob(f"{name}_*.bin"):
            (folder / path.name).symlink_to(path)
    return folder


def postprocess(pack: str, prepared: dict, results: Path, save: Path, *extra, capsys):
    case = POSTPROCESS[pack]
    return run_cli(pack_module(pack, case.script), *case.argv(prepared, results, save), *extra, capsys=capsys)


@pytest.mark.parametrize("pack", ["PointRend", "Wseg", "MaskRCNN_mmdet"])
def test_missing_outputs_name_count_and_first_samples(pack, prepared, all_outputs, tmp_path, capsys):
    case = POSTPROCESS[pack]
    names = case.samples(prepared)
    results = linked_results(all_outputs[pack], tmp_path / "res", names[:1])
    code, lines = postprocess(pack, prepared, results, tmp_path / "m.json", capsys=capsys)
    units = [unit for name in names for unit in case.unit_outputs(name)]
    missing = [unit for name in names[1:] for unit in case.unit_outputs(name)]
    expect_one_line(code, lines, f"{results}: outputs missing for {len(missing)} of {len(units)} samples (first: "
                                 f"{', '.join(missing[:3])}); pass --allow-missing to score the rest")
    assert not (tmp_path / "m.json").exists()


def test_hrnet_missing_outputs_name_the_label_count_and_first_names(prepared, all_outputs, tmp_path, capsys):
    names = cityscapes_names(prepared)
    results = linked_results(all_outputs["3D_HRNet"], tmp_path / "res", names[:1])
    code, lines = postprocess("3D_HRNet", prepared, results, tmp_path / "m.json", capsys=capsys)
    label = prepared["cs"] / "cityscapes" / "gtFine" / "val" / names[1].split("_")[0] / f"{names[1]}_gtFine_labelIds.png"
    expect_one_line(code, lines, f"{label}: no prediction (output 1) for this label (2 of 3 labels have none, "
                                 f"first: {names[1]}, {names[2]}); pass --allow-missing to score the rest")


@pytest.mark.parametrize("pack", ["PointRend", "Wseg", "MaskRCNN_mmdet"])
def test_extra_outputs_are_refused(pack, prepared, all_outputs, tmp_path, capsys):
    case = POSTPROCESS[pack]
    results = linked_results(all_outputs[pack], tmp_path / "res", case.samples(prepared))
    case.write_outputs(results, "stray", np.random.default_rng(1))
    code, lines = postprocess(pack, prepared, results, tmp_path / "m.json", capsys=capsys)
    stray_files = sorted(p.name for p in results.glob("stray_*"))
    expect_one_line(code, lines, f"{results}: {len(stray_files)} output file(s) match no sample of the list "
                                 f"(first: {', '.join(stray_files[:3])}): wrong result folder or list?")


def test_hrnet_outputs_without_a_label_are_refused(prepared, all_outputs, tmp_path, capsys):
    results = linked_results(all_outputs["3D_HRNet"], tmp_path / "res", cityscapes_names(prepared))
    POSTPROCESS["3D_HRNet"].write_outputs(results, "zurich_000000_000019", np.random.default_rng(1))
    code, lines = postprocess("3D_HRNet", prepared, results, tmp_path / "m.json", capsys=capsys)
    expect_one_line(code, lines, f"{results}/zurich_000000_000019_leftImg8bit_1.bin: no label "
                                 "zurich_000000_000019_gtFine_labelIds.png for this output (1 output name(s) "
                                 "without a label, first: zurich_000000_000019): wrong --data_path?")


@pytest.mark.parametrize("pack", ALL_PACKS)
def test_allow_missing_scores_the_rest_and_says_how_many(pack, prepared, all_outputs, tmp_path, capsys):
    names = POSTPROCESS[pack].samples(prepared)
    results = linked_results(all_outputs[pack], tmp_path / "res", names[:1] + names[2:])
    code, lines = postprocess(pack, prepared, results, tmp_path / "m.json", "--allow-missing", capsys=capsys)
    assert code == 0, lines
    saved = json.loads(metric_json(pack, tmp_path / "m.json").read_text())
    assert saved["images"] == len(names) - 1 and saved["images_left_out"] == 1
    assert lines[0] == f"[WARNING] 1 of {len(names)} images left out (no outputs, --allow-missing): first {names[1]}"
    # results made without a preprocess run: a postprocess that needs its metadata says so too
    assert all("no preprocess_meta.json found" in line for line in lines[1:]), lines


@pytest.mark.parametrize("pack", ALL_PACKS)
def test_nan_in_outputs_is_named(pack, prepared, all_outputs, tmp_path, capsys):
    case = POSTPROCESS[pack]
    names = case.samples(prepared)
    results = linked_results(all_outputs[pack], tmp_path / "res", names)
    victim = results / f"{names[1]}{case.poisoned_file}"
    values = np.fromfile(victim, np.float32)
    values[len(values) // 2] = np.inf if pack == "Wseg" else np.nan
    write_bin(victim, values)  # replaces the link, not the shared file
    code, lines = postprocess(pack, prepared, results, tmp_path / "m.json", capsys=capsys)
    expect_one_line(code, lines, f"{victim}: output holds NaN or Inf values")
    assert not metric_json(pack, tmp_path / "m.json").exists()


# ---- images without labels, unreadable images at postprocess time ---------------------------

def test_pointrend_image_without_label(data, all_outputs, prepared, tmp_path, capsys):
    label = sorted((data["cs"] / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))[1]
    label.unlink()
    results = linked_results(all_outputs["PointRend"], tmp_path / "res", POSTPROCESS["PointRend"].samples(data))
    code, lines = postprocess("PointRend", data, results, tmp_path / "m.json", capsys=capsys)
    expect_one_line(code, lines, f"{label}: label missing for image {label.name.replace('gtFine_labelIds', 'leftImg8bit')}")


def test_hrnet_label_folder_missing(data, all_outputs, tmp_path, capsys):
    shutil.rmtree(data["cs"] / "cityscapes" / "gtFine")
    results = linked_results(all_outputs["3D_HRNet"], tmp_path / "res", cityscapes_names(data))
    code, lines = postprocess("3D_HRNet", data, results, tmp_path / "m.json", capsys=capsys)
    expect_one_line(code, lines, f"{data['cs']}/cityscapes/gtFine/val: label folder not found")


def test_wseg_eval_image_without_label(data, tmp_path, capsys):
    ids = voc_list(data["voc"]).read_text().split()
    label = data["voc"] / "VOCdevkit" / "VOC2012" / "SegmentationClass" / f"{ids[2]}.png"
    label.unlink()
    (tmp_path / "masks").mkdir()
    code, lines = run_cli(pack_module("Wseg", "eval_seg"), "--data", data["voc"], "--filelist",
                          voc_list(data["voc"]), "--masks", tmp_path / "masks", capsys=capsys)
    expect_one_line(code, lines, f"{label}: label missing (1 of 3 listed, first ids: {ids[2]})")


def test_wseg_unreadable_image_stops_the_postprocess_before_any_mask(data, prepared, all_outputs, tmp_path, capsys):
    ids = voc_list(data["voc"]).read_text().split()
    image = data["voc"] / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"{ids[-1]}.jpg"
    image.write_bytes(b"\xff\xd8 cut")
    results = linked_results(all_outputs["Wseg"], tmp_path / "res", ids)
    case = POSTPROCESS["Wseg"]
    argv = case.argv({**data, "wseg_bins": prepared["wseg_bins"]}, results, tmp_path / "m.json")
    code, lines = run_cli(pack_module("Wseg", case.script), *argv, capsys=capsys)
    expect_one_line(code, lines, f"{image}: unreadable image")
    assert not (tmp_path / "masks").exists()


def test_mmdet_image_missing_from_the_annotations(data, prepared, all_outputs, tmp_path, capsys):
    annotations = data["coco"] / "annotations" / "instances_val2017.json"
    dataset = json.loads(annotations.read_text())
    dropped_image = dataset["images"].pop(1)
    dropped = dropped_image["file_name"]
    # a consistent cut: without its annotations too (orphans would be warned about)
    dataset["annotations"] = [a for a in dataset["annotations"] if a["image_id"] != dropped_image["id"]]
    annotations.write_text(json.dumps(dataset))
    results = linked_results(all_outputs["MaskRCNN_mmdet"], tmp_path / "res", POSTPROCESS["MaskRCNN_mmdet"].samples(data))
    inputs = {**data, "coco_bins": prepared["coco_bins"], "coco_info": prepared["coco_info"]}
    code, lines = postprocess("MaskRCNN_mmdet", inputs, results, tmp_path / "m.json", capsys=capsys)
    expect_one_line(code, lines, f"{prepared['coco_info']}: image {dropped} is not in {annotations}")


# ---- checkpoint of another model -----------------------------------------------------------

def names_only_checkpoint(model_name: str, prefix: str = "") -> "OrderedDict[str, torch.Tensor]":
    """Another model's tensor names with 1-element tensors: identifies like the real file."""
    return OrderedDict((prefix + name, torch.zeros(1)) for name in manifest_shapes(model_name))


EXPORTS = {  # pack -> (script, (checkpoint, onnx) -> arguments at a small size)
    "PointRend": ("PointRend_pkl2onnx", lambda ckpt, out: [ckpt, out, "--input-size", 64, 128]),
    "3D_HRNet": ("HRNet_pth2onnx", lambda ckpt, out: ["--pth", ckpt, "--save_path", out, "--input-hw", 64, 128]),
    "Wseg": ("wseg_pth2onnx", lambda ckpt, out: [ckpt, out, "--input-size", 64]),
    "MaskRCNN_mmdet": ("mmdet_pth2onnx", lambda ckpt, out: [ckpt, "--output-file", out, "--shape", 64, 64]),
}


@pytest.mark.parametrize("pack, other, expected, own_tensors", [
    ("PointRend", "3D_HRNet", "PointRend", "567 PointRendSemSeg"),
    ("3D_HRNet", "Wseg", "3D_HRNet", "1890 HRNetOCR"),
    ("Wseg", "3D_HRNet", "Wseg", "309 WsegNet"),
    ("MaskRCNN_mmdet", "Wseg", "MaskRCNN_mmdet", "360 MaskRCNN"),
])
def test_checkpoint_of_another_model_is_one_short_line(pack, other, expected, own_tensors, tmp_path, capsys):
    path = tmp_path / "weights.pth"
    torch.save(names_only_checkpoint(other, "model." if other == "3D_HRNet" else ""), path)
    script, argv = EXPORTS[pack]
    code, lines = run_cli(pack_module(pack, script), *argv(path, tmp_path / "x.onnx"), capsys=capsys)
    line = expect_one_line(code, lines, f"{path}: this is a {other} checkpoint (by its tensor names), not a "
                                        f"{expected} one: only 0 of {own_tensors} tensors found by name")
    assert len(line) < 250
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("pack", ["3D_HRNet", "Wseg", "MaskRCNN_mmdet"])
def test_detectron2_pickle_given_to_a_torch_pack_names_the_model(pack, tmp_path, capsys):
    """PointRend's `.pkl` (numpy arrays under 'model') given where a `.pth` is expected."""
    path = tmp_path / "model_final_cf6ac1.pkl"
    with open(path, "wb") as handle:
        pickle.dump({"model": {k: v.numpy() for k, v in names_only_checkpoint("PointRend").items()}}, handle, protocol=2)
    script, argv = EXPORTS[pack]
    code, lines = run_cli(pack_module(pack, script), *argv(path, tmp_path / "x.onnx"), capsys=capsys)
    expect_one_line(code, lines, f"{path}: ", "the tensors under 'model' are those of a PointRend checkpoint")


@pytest.mark.parametrize("pack", ALL_PACKS)
def test_onnx_path_that_is_a_folder_fails_before_loading(pack, tmp_path, capsys):
    (tmp_path / "out.onnx").mkdir()
    script, argv = EXPORTS[pack]
    code, lines = run_cli(pack_module(pack, script), *argv(tmp_path / "absent.pth", tmp_path / "out.onnx"),
                          capsys=capsys)
    expect_one_line(code, lines, f"{tmp_path}/out.onnx: is a folder, expected a file name")
