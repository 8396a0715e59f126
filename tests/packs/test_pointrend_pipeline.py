"""PointRend end to end on synthetic Cityscapes (64x128): preprocess, export (float logits and
fused uint8 argmax), ONNX Runtime and PyTorch on the same bins, postprocess, bad inputs."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest

from common.runtime.graph import META_OPTIONS, read_metadata
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.runtime.runner import run_inference
from common.pipeline.packs import pack_module
from common.eval.parity import compare_output_folders
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.runtime.torch_backend import TorchBackend
from helpers import error_lines, run_script
from pointrend_shared import demo_checkpoint, assert_class_maps_agree, assert_graph_is_opset11_without_grid_sample

model = pack_module("PointRend", "model")
preprocess = pack_module("PointRend", "PointRend_preprocess")
pkl2onnx = pack_module("PointRend", "PointRend_pkl2onnx")
postprocess = pack_module("PointRend", "PointRend_postprocess")
INPUT_HW = (64, 128)
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Run every guide step once; the tests below read what it produced."""
    work = tmp_path_factory.mktemp("pointrend_e2e")
    data = work / "data"
    write_synthetic_cityscapes(data, count=3, size_hw=INPUT_HW, seed=5)
    checkpoint = demo_checkpoint(tmp_path_factory)
    bins = work / "prep"
    assert preprocess.main(preprocess.parse_args([str(data), str(bins), "--input-size", *map(str, INPUT_HW)])) == 0
    results = {}
    for kind in ("none", "uint8"):
        onnx_path = work / f"PointRend_{kind}.onnx"
        # The guide's config path does not exist here: defaults are used, as documented.
        args = pkl2onnx.parse_args(["detectron2/missing.yaml", str(checkpoint), str(onnx_path),
                                    "--input-size", *map(str, INPUT_HW), "--class-map", kind])
        assert pkl2onnx.main(args) == 0
        run_inference(OnnxRuntimeBackend(onnx_path, threads=1), str(bins), work / "result",
                      f"ort_{kind}", progress=False)
        run_inference(TorchBackend(onnx_path, checkpoint), str(bins), work / "result",
                      f"torch_{kind}", progress=False)
        for backend in ("ort", "torch"):
            name = f"{backend}_{kind}"
            save = work / f"{name}.json"
            postprocess.main(postprocess.parse_args([str(data), str(work / "result" / name),
                                                     "--save_path", str(save)]))
            results[name] = json.loads(save.read_text())
    return {"work": work, "data": data, "bins": bins, "results": results}


def test_preprocess_writes_bgr_minus_mean_bins_named_after_the_images(pipeline):
    bins = sorted(p.name for p in pipeline["bins"].glob("*.bin"))
    assert len(bins) == 3 and all(name.endswith("_leftImg8bit.bin") for name in bins)
    image_path = next(pipeline["data"].rglob(bins[0].replace(".bin", ".png")))
    import cv2
    bgr = cv2.imread(str(image_path)).astype(np.float32)
    stored = np.fromfile(pipeline["bins"] / bins[0], dtype=np.float32).reshape(3, *INPUT_HW)
    np.testing.assert_allclose(stored[0], bgr[:, :, 0] - 103.53, atol=1e-4)
    np.testing.assert_allclose(stored[2], bgr[:, :, 2] - 123.675, atol=1e-4)
    meta = json.loads((pipeline["bins"] / "preprocess_meta.json").read_text())
    assert meta["input_hw"] == list(INPUT_HW) and len(meta["images"]) == 3


def test_onnx_runtime_and_pytorch_outputs_agree(pipeline):
    result = pipeline["work"] / "result"
    difference = compare_output_folders(result / "torch_none", result / "ort_none", ["float32"], [19])
    assert difference.count == 3
    assert difference.max_rel <= REL_TOL, difference
    assert difference.argmax_mismatch <= 1e-3
    tol = 2 * difference.max_abs
    for path in sorted((result / "torch_none").glob("*_0.bin")):
        logits = np.fromfile(path, dtype=np.float32).reshape(19, *INPUT_HW)
        for kind in ("ort_none", "ort_uint8"):
            candidate = np.fromfile(result / kind / path.name, np.float32 if kind == "ort_none" else np.uint8)
            if kind == "ort_none":
                candidate = candidate.reshape(19, *INPUT_HW).argmax(0)
            assert_class_maps_agree(logits, candidate.reshape(INPUT_HW), tol)


def test_fused_argmax_export_is_an_opset11_uint8_graph_with_its_options(pipeline):
    onnx_model = onnx.load(str(pipeline["work"] / "PointRend_uint8.onnx"))
    assert_graph_is_opset11_without_grid_sample(onnx_model)
    assert onnx_model.graph.input[0].name == "images"
    output = onnx_model.graph.output[0]
    assert output.name == "class_map" and output.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert json.loads(read_metadata(onnx_model)[META_OPTIONS]) == {
        "num_classes": 19, "subdivision_steps": 2, "subdivision_num_points": 8192,
        "class_map_dtype": "uint8", "input_hw": list(INPUT_HW), "point_sampler": "exact"}


def test_miou_is_equal_across_backends_and_output_kinds(pipeline):
    results = pipeline["results"]
    reference = results["torch_none"]["miou"]
    assert 0.0 <= reference <= 1.0
    for name in ("ort_none", "ort_uint8", "torch_uint8"):
        # Equal unless a pixel's two best logits are within float drift (see the class-map test).
        assert results[name]["miou"] == pytest.approx(reference, abs=1e-4), name
    assert results["ort_uint8"]["output_kind"] == "uint8"
    assert results["ort_none"]["output_kind"] == "float32"
    assert results["torch_none"]["images"] == 3


def test_fused_argmax_equals_argmax_of_the_float_output(pipeline):
    result = pipeline["work"] / "result"
    for path in sorted((result / "torch_none").glob("*_0.bin")):
        logits = np.fromfile(path, dtype=np.float32).reshape(19, *INPUT_HW)
        class_map = np.fromfile(result / "torch_uint8" / path.name, dtype=np.uint8).reshape(INPUT_HW)
        np.testing.assert_array_equal(class_map, logits.argmax(0))


def test_postprocess_reports_a_truncated_output_in_one_line(pipeline, tmp_path):
    broken = tmp_path / "ort_none"
    shutil.copytree(pipeline["work"] / "result" / "ort_none", broken)
    victim = sorted(broken.glob("*_0.bin"))[0]
    victim.write_bytes(victim.read_bytes()[:1000])
    run = run_script("PointRend", "PointRend_postprocess.py", pipeline["data"], broken,
                     "--input-size", *INPUT_HW, check=False)
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and victim.name in lines[0] and "1000 bytes" in lines[0]


def test_postprocess_reports_missing_outputs_in_one_line(pipeline, tmp_path):
    partial = tmp_path / "ort_uint8"
    shutil.copytree(pipeline["work"] / "result" / "ort_uint8", partial)
    sorted(partial.glob("*_0.bin"))[1].unlink()
    run = run_script("PointRend", "PointRend_postprocess.py", pipeline["data"], partial,
                     "--input-size", *INPUT_HW, check=False)
    assert run.returncode == 2
    lines = error_lines(run)
    assert len(lines) == 1 and "missing for 1 of 3" in lines[0]


def test_postprocess_writes_label_id_pngs_for_the_official_evaluator(pipeline, tmp_path):
    import cv2
    args = postprocess.parse_args([str(pipeline["data"]), str(pipeline["work"] / "result" / "ort_uint8"),
                                   "--save_path", str(tmp_path / "m.json"), "--pred-dir", str(tmp_path / "pred")])
    assert postprocess.main(args) == 0
    pngs = sorted((tmp_path / "pred").glob("*_pred.png"))
    assert len(pngs) == 3
    first = pngs[0].name.replace("_pred.png", "_leftImg8bit_0.bin")
    train_ids = np.fromfile(pipeline["work"] / "result" / "ort_uint8" / first, np.uint8).reshape(INPUT_HW)
    label_ids = cv2.imread(str(pngs[0]), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(postprocess.train_id_to_label_id_lut()[train_ids], label_ids)
    assert set(np.unique(label_ids)) <= {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}


def test_preprocess_reports_a_folder_without_images(tmp_path):
    run = run_script("PointRend", "PointRend_preprocess.py", tmp_path, tmp_path / "out", check=False)
    assert run.returncode == 2 and len(error_lines(run)) == 1
