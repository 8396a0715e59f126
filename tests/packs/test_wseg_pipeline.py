"""Wseg end to end on synthetic VOC at a 64-pixel pad: preprocess, ONNX Runtime and PyTorch on
the same bins, postprocess with and without CRF, lean mask output, eval against an independent
IoU computation, and the one-line errors."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from PIL import Image

from common.cli import UserError
from common.data.images import read_palette_label
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.runtime.runner import run_inference
from common.pipeline.packs import pack_module
from common.eval.parity import compare_output_folders
from common.data.synth.voc import write_synthetic_voc
from common.runtime.torch_backend import TorchBackend
from helpers import error_lines, run_script
from wseg_shared import TEST_INPUT_SIDE, demo_checkpoint, exported_onnx, fixed_onnx

preprocess = pack_module("Wseg", "wseg_preprocess")
postprocess = pack_module("Wseg", "wseg_postprocess")
evaluate = pack_module("Wseg", "eval_seg")

# Sides at most half the pad (scale 2.0 must fit); odd sides exercise half-to-even rounding.
IMAGE_SIZES_HW = ((24, 32), (17, 31))
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    """(data root, upstream-format list, plain id list) of a 2-image synthetic VOC."""
    root = tmp_path_factory.mktemp("wseg_voc")
    voc2012 = write_synthetic_voc(root / "data", count=len(IMAGE_SIZES_HW), seed=4,
                                  sizes_hw=IMAGE_SIZES_HW)
    plain = voc2012 / "ImageSets" / "Segmentation" / "val.txt"
    ids = plain.read_text(encoding="utf-8").split()
    upstream = root / "val_voc.txt"
    upstream.write_text("".join(f"VOCdevkit/VOC2012/JPEGImages/{i}.jpg "
                                f"VOCdevkit/VOC2012/SegmentationClass/{i}.png\n" for i in ids))
    return root / "data", upstream, plain


@pytest.fixture(scope="module")
def prep(voc, tmp_path_factory):
    out = tmp_path_factory.mktemp("wseg_prep") / "prep_data"
    preprocess.main(preprocess.parse_args([str(voc[0]), str(voc[1]), str(out),
                                           "--pad-size", str(TEST_INPUT_SIDE)]))
    return out


def infer(backend, prep, out_root, name):
    run_inference(backend, str(prep), out_root, name, batchsize=8, warmup_count=0, progress=False)
    return out_root / name


@pytest.fixture(scope="module")
def results(prep, tmp_path_factory):
    """Result folders of ONNX Runtime (fixed graph), PyTorch, and ONNX Runtime (lean mask)."""
    out_root = tmp_path_factory.mktemp("wseg_result")
    fixed = fixed_onnx(tmp_path_factory)
    return {
        "onnxruntime": infer(OnnxRuntimeBackend(fixed, threads=1), prep, out_root, "onnxruntime"),
        "pytorch": infer(TorchBackend(fixed, demo_checkpoint(tmp_path_factory)), prep, out_root, "pytorch"),
        # The fix is tested on the full graph; the lean one runs unfixed (correct on ORT too).
        "lean": infer(OnnxRuntimeBackend(exported_onnx(tmp_path_factory, lean_mask=True), threads=1),
                      prep, out_root, "lean"),
    }


@pytest.fixture(scope="module")
def masks(voc, results, tmp_path_factory):
    out_root = tmp_path_factory.mktemp("wseg_masks")
    folders = {}
    for name, result_dir in results.items():
        folders[name] = out_root / name
        postprocess.main(postprocess.parse_args([str(voc[0]), str(voc[1]), str(result_dir),
                                                 str(folders[name]), "--crf", "on"]))
    return folders


def miou(voc, mask_dir, save_path):
    evaluate.main(evaluate.parse_args(["--data", str(voc[0]), "--filelist", str(voc[1]),
                                       "--masks", str(mask_dir), "--save_path", str(save_path)]))
    return json.loads(save_path.read_text(encoding="utf-8"))


def read_png(path):
    with Image.open(path) as image:
        return np.asarray(image)


# ---- preprocess -----------------------------------------------------------------------------

def test_spec_worked_example_sizes_and_pads():
    # 500x375 image at the four scales (docs/specs/Wseg.md §3.1): rounding half to even, floor pads.
    expected = {1.0: [324, 262, 375, 500], 0.5: [418, 387, 188, 250],
                1.5: [231, 137, 562, 750], 2.0: [137, 12, 750, 1000]}
    for scale, pads in expected.items():
        width, height = preprocess.scaled_size(500, 375, scale)
        assert [*preprocess.centred_pads(height, width, 1024), height, width] == pads


def test_preprocess_writes_eight_normalised_padded_variants(voc, prep):
    meta = json.loads((prep / preprocess.META_NAME).read_text(encoding="utf-8"))
    image_id = "2007_000001"  # 17 x 31
    variants = meta["images"][image_id]["variants"]
    assert [(v["scale"], v["flip"]) for v in variants] == list(preprocess.VARIANTS)
    # 31*0.5 = 15.5 -> 16 and 17*1.5 = 25.5 -> 26 (even), 31*1.5 = 46.5 -> 46 (even)
    assert variants[2]["pads"] == [28, 24, 8, 16] and variants[4]["pads"] == [19, 9, 26, 46]
    side = TEST_INPUT_SIDE
    plain = np.fromfile(prep / f"{image_id}_0.bin", np.float32).reshape(3, side, side)
    flipped = np.fromfile(prep / f"{image_id}_1.bin", np.float32).reshape(3, side, side)
    top, left, height, width = variants[0]["pads"]
    rgb = np.asarray(Image.open(voc[0] / "VOCdevkit/VOC2012/JPEGImages" / f"{image_id}.jpg").convert("RGB"))
    expected = ((rgb / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)
    inside = plain[:, top:top + height, left:left + width]
    assert np.allclose(inside, expected, atol=1e-6)
    assert np.array_equal(flipped[:, top:top + height, left:left + width], inside[:, :, ::-1])
    outside = plain.copy()
    outside[:, top:top + height, left:left + width] = 0
    assert not outside.any()  # the pad area is exactly zero
    assert len(list(prep.glob("*.bin"))) == 8 * len(IMAGE_SIZES_HW)


def test_plain_id_list_gives_the_same_bins(voc, prep, tmp_path):
    out = tmp_path / "from_ids"
    preprocess.main(preprocess.parse_args([str(voc[0]), str(voc[2]), str(out),
                                           "--pad-size", str(TEST_INPUT_SIDE)]))
    for path in prep.glob("*.bin"):
        assert (out / path.name).read_bytes() == path.read_bytes(), path.name


def test_preprocess_rejects_a_pad_smaller_than_the_largest_scale(voc, tmp_path):
    result = run_script("Wseg", "wseg_preprocess.py", voc[0], voc[1], tmp_path / "p",
                        "--pad-size", "56", check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and ".jpg" in lines[0] and "larger than --pad-size 56" in lines[0]


# ---- inference parity and postprocess -------------------------------------------------------

@pytest.mark.parametrize("backend", ["onnxruntime"])
def test_backend_outputs_match_pytorch_on_the_same_bins(results, backend):
    difference = compare_output_folders(results["pytorch"], results[backend], ["float32"])
    assert difference.count == 2 * 8 * len(IMAGE_SIZES_HW)
    assert difference.within(REL_TOL), difference


def test_masks_and_miou_equal_for_pytorch_and_onnx_runtime(voc, masks, tmp_path):
    for sub in ("", "crf"):
        reference = miou(voc, masks["pytorch"] / sub, tmp_path / f"pt{sub}.json")
        candidate = miou(voc, masks["onnxruntime"] / sub, tmp_path / f"ort{sub}.json")
        assert candidate["miou"] == reference["miou"] and candidate["images"] == len(IMAGE_SIZES_HW)
        for png in (masks["pytorch"] / sub).glob("*.png"):
            assert np.array_equal(read_png(png), read_png(masks["onnxruntime"] / sub / png.name))


def test_lean_mask_output_gives_the_same_masks(results, masks):
    full = np.fromfile(next(results["onnxruntime"].glob("*_1.bin")), np.float32)
    lean = np.fromfile(next(results["lean"].glob("*_1.bin")), np.float32)
    assert lean.size * 16 == full.size
    for sub in ("", "crf"):
        for png in (masks["onnxruntime"] / sub).glob("*.png"):
            assert np.array_equal(read_png(png), read_png(masks["lean"] / sub / png.name)), png


def test_postprocess_masks_hold_selected_classes(voc, masks):
    summary = json.loads((masks["onnxruntime"] / "postprocess_summary.json").read_text())
    assert summary["crf"] is True and summary["images"] == len(IMAGE_SIZES_HW)
    for record in summary["per_image"]:
        raw = read_png(masks["onnxruntime"] / f"{record['id']}.png")
        label = read_palette_label(voc[0] / "VOCdevkit/VOC2012/SegmentationClass" / f"{record['id']}.png")
        assert raw.shape == label.shape
        # A class can only win where the class selection kept it.
        assert set(np.unique(raw)) <= {0, *record["classes"]}


def test_eval_agrees_with_an_independent_iou(voc, masks, tmp_path):
    mask_dir = masks["onnxruntime"] / "crf"
    result = miou(voc, mask_dir, tmp_path / "eval.json")
    pairs = []
    for line in voc[1].read_text().splitlines():
        label_path = voc[0] / line.split()[1]
        pairs.append((np.asarray(Image.open(label_path)), read_png(mask_dir / label_path.name)))
    ious = []
    for cls in range(21):
        inter = union = 0
        for label, pred in pairs:
            valid = label != 255
            inter += int(np.sum((label == cls) & (pred == cls) & valid))
            union += int(np.sum(((label == cls) | (pred == cls)) & valid))
        ious.append(inter / union if union else 0.0)
    assert result["miou"] == pytest.approx(np.mean(ious), abs=1e-12)
    assert result["miou_foreground"] == pytest.approx(np.mean(ious[1:]), abs=1e-12)


def test_missing_crf_library_still_writes_raw_masks(voc, results, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    out = tmp_path / "no_crf"
    postprocess.main(postprocess.parse_args([str(voc[0]), str(voc[1]), str(results["lean"]), str(out)]))
    assert "CRF skipped" in capsys.readouterr().out
    assert len(list(out.glob("*.png"))) == len(IMAGE_SIZES_HW) and not (out / "crf").exists()
    with pytest.raises(UserError, match="pydensecrf"):
        postprocess.main(postprocess.parse_args([str(voc[0]), str(voc[1]), str(results["lean"]),
                                                 str(out), "--crf", "on"]))


# ---- bad input ------------------------------------------------------------------------------

def test_truncated_output_bin_is_named(voc, prep, results, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in results["lean"].glob("*.bin"):
        (broken / path.name).write_bytes(path.read_bytes())
    victim = broken / "2007_000000_3_1.bin"
    victim.write_bytes(victim.read_bytes()[:-4])
    result = run_script("Wseg", "wseg_postprocess.py", voc[0], voc[1], broken, tmp_path / "out",
                        "--crf", "off", "--meta", prep / preprocess.META_NAME, check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and str(victim) in lines[0]


def test_postprocess_without_metadata_says_where_to_find_it(voc, results, tmp_path):
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    for path in results["lean"].glob("*.bin"):
        (lonely / path.name).write_bytes(path.read_bytes())
    args = postprocess.parse_args([str(voc[0]), str(voc[1]), str(lonely), str(tmp_path / "out")])
    with pytest.raises(UserError, match="--meta"):
        postprocess.main(args)


def test_eval_names_a_missing_mask_and_can_skip_it(voc, masks, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    kept = sorted((masks["onnxruntime"]).glob("*.png"))[0]
    (partial / kept.name).write_bytes(kept.read_bytes())
    result = run_script("Wseg", "eval_seg.py", "--data", voc[0], "--filelist", voc[1],
                        "--masks", partial, check=False)
    assert result.returncode == 2
    assert len(error_lines(result)) == 1 and "mask not found" in error_lines(result)[0]
    args = evaluate.parse_args(["--data", str(voc[0]), "--filelist", str(voc[1]), "--masks",
                                str(partial), "--allow-missing", "--save_path", str(tmp_path / "p.json")])
    evaluate.main(args)
    saved = json.loads((tmp_path / "p.json").read_text())
    assert saved["images"] == 1 and saved["images_skipped"] == len(IMAGE_SIZES_HW) - 1
