"""3D_HRNet pack end to end on synthetic Cityscapes at 64x128: export, the Resize edit,
preprocess, ONNX Runtime vs PyTorch on the same bins, postprocess, and the user errors."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from PIL import Image

from common.files.bins import read_bin
from common.cli import UserError
from common.data.cityscapes import CityscapesFine, read_cityscapes_train_ids
from common.runtime.graph import atc_out_nodes, get_attribute, read_metadata
from common.pipeline.packs import pack_module
from common.eval.parity import compare_arrays
from common.data.synth.cityscapes import write_synthetic_cityscapes
from common.eval.upsample import bilinear_argmax
from helpers import assert_classes_agree, error_lines, run_script

HEIGHT, WIDTH = 64, 128  # the guide's 1024x2048 divided by 16
OUT_HW = (HEIGHT // 4, WIDTH // 4)
PACK = "3D_HRNet"
model_py = pack_module(PACK, "model")
fix_py = pack_module(PACK, "performance_optimize_resize")
preprocess_py = pack_module(PACK, "HRNet_preprocess")
postprocess_py = pack_module(PACK, "HRNet_postprocess")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Every guide step through the scripts, as a user runs them; returns the work folder."""
    work = tmp_path_factory.mktemp("hrnet")
    write_synthetic_cityscapes(work / "data", count=3, size_hw=(HEIGHT, WIDTH), seed=5)
    checkpoint = model_py.write_demo_checkpoint(work / "hrnet.pth", seed=2)
    run_script(PACK, "HRNet_preprocess.py", f"--src_path={work / 'data'}", f"--save_path={work / 'prep'}")
    export = run_script(PACK, "HRNet_pth2onnx.py", "--pth", checkpoint, "--save_path", work / "hrnet.onnx",
                        "--input-hw", HEIGHT, WIDTH)
    fix = run_script(PACK, "performance_optimize_resize.py", work / "hrnet.onnx", work / "hrnet_nearest.onnx")
    for name, onnx_file in (("ort", "hrnet.onnx"), ("ort_nearest", "hrnet_nearest.onnx")):
        run_script(None, "common.infer", "--model", work / onnx_file, "--input", work / "prep",
                   "--output", work / "result", "--output_dirname", name, "--batchsize", 2)
    run_script(None, "common.torch_infer", "--model", work / "hrnet.onnx", "--checkpoint", checkpoint,
               "--input", work / "prep", "--output", work / "result", "--output_dirname", "torch")
    for name in ("ort", "ort_nearest", "torch"):
        run_script(PACK, "HRNet_postprocess.py", "--res_path", work / "result" / name, "--data_path",
                   work / "data" / "cityscapes" / "gtFine" / "val", "--save_path", work / f"metric_{name}.json",
                   "--aux-index", 0)
    return {"work": work, "export_stdout": export.stdout, "fix_stdout": fix.stdout}


def _metric(pipeline, name):
    return json.loads((pipeline["work"] / f"metric_{name}.json").read_text())


def _outputs(pipeline, name, index):
    folder = pipeline["work"] / "result" / name
    return {p.name: read_bin(p, (19, *OUT_HW)) for p in sorted(folder.glob(f"*_{index}.bin"))}


# ---- export ----------------------------------------------------------------------------------

def test_export_has_the_guide_inputs_outputs_and_opset(pipeline):
    graph_model = onnx.load(str(pipeline["work"] / "hrnet.onnx"), load_external_data=False)
    assert [i.name for i in graph_model.graph.input] == ["image"]
    assert [o.name for o in graph_model.graph.output] == ["output1", "output2"]
    dims = [d.dim_param or d.dim_value for d in graph_model.graph.input[0].type.tensor_type.shape.dim]
    assert dims[1:] == [3, HEIGHT, WIDTH] and isinstance(dims[0], str)  # dynamic batch
    assert {o.version for o in graph_model.opset_import if o.domain in ("", "ai.onnx")} == {11}
    assert read_metadata(graph_model)["segzoo_pack"] == PACK
    assert sum(n.op_type == "Resize" for n in graph_model.graph.node) == 34


def test_onnxruntime_matches_pytorch_on_the_same_bins(pipeline):
    flipped = 0
    for index in (0, 1):
        reference, candidate = _outputs(pipeline, "torch", index), _outputs(pipeline, "ort", index)
        assert len(reference) == 3 and reference.keys() == candidate.keys()
        for name in reference:
            flipped += assert_classes_agree(reference[name], candidate[name])
    torch_metric, ort_metric = _metric(pipeline, "torch"), _metric(pipeline, "ort")
    # Equal metrics unless a near-tied position flipped (which moves an IoU by a few pixels).
    tolerance = 0 if flipped == 0 else 1e-3
    for head, key in (("value", "Iou_array"), ("aux_head", "Iou_array")):
        np.testing.assert_allclose(ort_metric[head][key], torch_metric[head][key], rtol=0, atol=tolerance)
    assert abs(ort_metric["value"]["mean_Iou"] - torch_metric["value"]["mean_Iou"]) <= tolerance
    assert ort_metric["images"] == 3


# ---- the Resize edit -------------------------------------------------------------------------

def test_resize_edit_finds_the_guides_four_nodes_by_structure(pipeline):
    graph_model = onnx.load(str(pipeline["work"] / "hrnet.onnx"))
    # stage2 has 1 module (1 upsample into branch 0), stage3 4 modules (2), stage4 3 modules (3)
    assert [len(chain) for chain in fix_py.branch0_fuse_chains(graph_model.graph)] == [1, 2, 2, 2, 2, 3, 3, 3]
    targets = fix_py.guide_resize_targets(graph_model.graph)
    # torch >= 1.13 scope names of the torch 1.8 nodes Resize_1376/1363/1350/585 (docs/specs/3D_HRNet.md §5.2)
    assert [t.node.name for t in targets] == ["/Resize_2", "/Resize_1", "/Resize", "/stage3/stage3.3/Resize"]
    assert atc_out_nodes(graph_model) == ["/aux_head/aux_head.3/Conv:0", "/cls_head/Conv:0"]
    assert '--out_nodes="/aux_head/aux_head.3/Conv:0;/cls_head/Conv:0"' in pipeline["fix_stdout"]


def test_edited_graph_has_exactly_those_four_nearest(pipeline):
    edited = onnx.load(str(pipeline["work"] / "hrnet_nearest.onnx"), load_external_data=False)
    modes = {n.name: get_attribute(n, "mode") for n in edited.graph.node if n.op_type == "Resize"}
    nearest = sorted(name for name, mode in modes.items() if mode == b"nearest")
    assert nearest == sorted(["/Resize", "/Resize_1", "/Resize_2", "/stage3/stage3.3/Resize"])
    assert sum(mode == b"linear" for mode in modes.values()) == 30
    for node in edited.graph.node:
        if node.op_type == "Resize":
            assert get_attribute(node, "coordinate_transformation_mode") == b"align_corners"


def test_resize_edit_changes_the_outputs_and_is_reported(pipeline, tmp_path):
    for index in (0, 1):
        linear, nearest = _outputs(pipeline, "ort", index), _outputs(pipeline, "ort_nearest", index)
        worst = max(compare_arrays(linear[n], nearest[n]).max_abs for n in linear)
        assert worst > 1e-3 and all(np.isfinite(a).all() for a in nearest.values())
    work = pipeline["work"]
    run_script(PACK, "resize_edit_report.py", "--reference", work / "result" / "ort", "--candidate",
               work / "result" / "ort_nearest", "--reference-metric", work / "metric_ort.json",
               "--candidate-metric", work / "metric_ort_nearest.json", "--save_path", tmp_path / "edit.json")
    report = json.loads((tmp_path / "edit.json").read_text())
    assert report["outputs"]["OCR (output2)"]["max_abs"] > 1e-3
    assert report["mean_Iou"]["difference"] == pytest.approx(
        _metric(pipeline, "ort_nearest")["value"]["mean_Iou"] - _metric(pipeline, "ort")["value"]["mean_Iou"])


def test_linear_choice_restores_the_exported_modes(pipeline):
    graph_model = onnx.load(str(pipeline["work"] / "hrnet_nearest.onnx"))
    changes = fix_py.optimize(graph_model, "linear")
    assert [previous for _, previous in changes] == ["nearest"] * 4
    assert all(get_attribute(n, "mode") == b"linear" for n in graph_model.graph.node if n.op_type == "Resize")
    assert read_metadata(graph_model)[fix_py.META_RESIZE_EDIT].startswith("linear:")


def test_resize_edit_refuses_a_graph_that_is_not_hrnet():
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["x"], ["y"])], "g",
                                   [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
                                   [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])])
    with pytest.raises(UserError, match="HRNet head"):
        fix_py.optimize(onnx.helper.make_model(graph))


# ---- preprocess --------------------------------------------------------------------------------

def test_bins_are_named_after_images_and_normalised_rgb(pipeline):
    work = pipeline["work"]
    meta = json.loads((work / "prep" / "preprocess_meta.json").read_text())
    assert meta["input_hw"] == [HEIGHT, WIDTH]
    dataset = CityscapesFine(work / "data")
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for sample in dataset:
        stem = f"{sample.name}_leftImg8bit"
        assert meta["images"][stem]["label"] == str(sample.label_path)
        # independent path: PIL decodes RGB directly, float64 arithmetic
        rgb = np.asarray(Image.open(sample.image_path).convert("RGB"), dtype=np.float64)
        expected = ((rgb / 255.0 - mean) / std).transpose(2, 0, 1)
        actual = read_bin(work / "prep" / f"{stem}.bin", (3, HEIGHT, WIDTH))
        np.testing.assert_allclose(actual, expected, atol=2e-6, rtol=0)


def test_preprocess_resume_redoes_only_unfinished_bins(pipeline, tmp_path):
    prep = tmp_path / "prep"
    shutil.copytree(pipeline["work"] / "prep", prep)
    bins = sorted(prep.glob("*.bin"))
    reference = bins[0].read_bytes()
    bins[0].write_bytes(reference[:1000])  # as if cut short by hand (never by a killed run)
    (prep / ".stale.bin.tmp").write_bytes(b"x")
    kept_mtime = bins[1].stat().st_mtime_ns
    preprocess_py.main(preprocess_py.parse_args([f"--src_path={pipeline['work'] / 'data'}",
                                                 f"--save_path={prep}", "--resume"]))
    assert bins[0].read_bytes() == reference
    assert bins[1].stat().st_mtime_ns == kept_mtime
    assert not (prep / ".stale.bin.tmp").exists()


def test_preprocess_rejects_mixed_image_sizes(tmp_path):
    write_synthetic_cityscapes(tmp_path, count=2, size_hw=(32, 64), seed=1)
    odd = CityscapesFine(tmp_path)[1].image_path
    Image.new("RGB", (60, 32)).save(odd)
    result = run_script(PACK, "HRNet_preprocess.py", f"--src_path={tmp_path}", f"--save_path={tmp_path / 'p'}",
                        check=False)
    assert result.returncode == 2 and len(error_lines(result)) == 1 and odd.name in result.stderr


# ---- postprocess -------------------------------------------------------------------------------

def _bilinear_align_corners(logits_chw: np.ndarray, out_hw) -> np.ndarray:
    """Independent numpy bilinear with align_corners=True: src = dst * (in - 1) / (out - 1)."""
    channels, in_h, in_w = logits_chw.shape
    ys = np.arange(out_hw[0]) * (in_h - 1) / (out_hw[0] - 1)
    xs = np.arange(out_hw[1]) * (in_w - 1) / (out_hw[1] - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = logits_chw[:, y0][:, :, x0] * (1 - wx) + logits_chw[:, y0][:, :, x1] * wx
    bottom = logits_chw[:, y1][:, :, x0] * (1 - wx) + logits_chw[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy


# float32 bilinear interpolation of float32 logits is within a few ulp of the exact value; a
# pixel whose two best classes are closer than this bound may go either way, depending on the
# CPU's kernels (FMA, vector width) that computed the logits and the interpolation.
FLOAT32_TIE_ULPS = 8


def near_tied_classes(logits64: np.ndarray, out_hw) -> tuple[np.ndarray, np.ndarray]:
    """(exact argmax, mask of classes within the float32 rounding bound of the best) per pixel."""
    upsampled = _bilinear_align_corners(logits64, out_hw)
    scale = _bilinear_align_corners(np.abs(logits64), out_hw).max(0)
    bound = FLOAT32_TIE_ULPS * np.finfo(np.float32).eps * scale
    return upsampled.argmax(0), upsampled >= upsampled.max(0) - bound


def test_metric_agrees_with_an_independent_computation(pipeline):
    """The postprocess's IoUs are those of its class map, counted independently in float64;
    that class map is the exact (float64) argmax everywhere except at near-tied pixels, where
    it must pick one of the tied classes. The near-ties are counted, not hidden."""
    work = pipeline["work"]
    intersection, union = np.zeros(19), np.zeros(19)
    tied_pixels = total_pixels = 0
    for sample in CityscapesFine(work / "data"):
        logits = read_bin(work / "result" / "ort" / f"{sample.name}_leftImg8bit_1.bin", (19, *OUT_HW))
        pred = bilinear_argmax(logits, (HEIGHT, WIDTH), align_corners=True)  # the postprocess's map
        exact, candidates = near_tied_classes(logits.astype(np.float64), (HEIGHT, WIDTH))
        tied = candidates.sum(0) > 1
        assert np.array_equal(pred[~tied], exact[~tied])
        assert np.take_along_axis(candidates, pred[None].astype(np.int64), 0).all()
        tied_pixels, total_pixels = tied_pixels + int(tied.sum()), total_pixels + tied.size
        train_ids = read_cityscapes_train_ids(sample.label_path)
        valid = train_ids != 255
        for cls in range(19):
            gt_mask, pred_mask = (train_ids == cls) & valid, (pred == cls) & valid
            intersection[cls] += np.sum(gt_mask & pred_mask)
            union[cls] += np.sum(gt_mask | pred_mask)
    # Demo weights give nearly flat logits, so ties are more common than with trained ones,
    # but still rare: many would mean the upsampling itself is off.
    assert tied_pixels <= 0.01 * total_pixels, f"{tied_pixels} of {total_pixels} pixels near-tied"
    expected = intersection / np.maximum(union, 1)
    value = _metric(pipeline, "ort")["value"]
    np.testing.assert_allclose(value["Iou_array"], expected, atol=1e-12)
    assert value["mean_Iou"] == pytest.approx(expected.mean(), abs=1e-12)


def test_upsampling_is_bilinear_align_corners():
    logits = np.random.default_rng(0).normal(size=(19, 4, 8)).astype(np.float32)
    expected = _bilinear_align_corners(logits.astype(np.float64), (16, 32)).argmax(0)
    np.testing.assert_array_equal(bilinear_argmax(logits, (16, 32), align_corners=True), expected)


def test_modelzoo_bin_names_score_the_same(pipeline, tmp_path):
    renamed = tmp_path / "bs1"
    renamed.mkdir()
    for path in (pipeline["work"] / "result" / "ort").glob("*.bin"):
        shutil.copy(path, renamed / path.name.replace("_leftImg8bit_", "_gtFine_labelIds_"))
    args = postprocess_py.parse_args(["--res_path", str(renamed), "--data_path",
                                      str(pipeline["work"] / "data" / "cityscapes" / "gtFine" / "val"),
                                      "--save_path", str(tmp_path / "r.json")])
    postprocess_py.main(args)
    assert json.loads((tmp_path / "r.json").read_text())["value"] == _metric(pipeline, "ort")["value"]


@pytest.fixture
def broken_results(pipeline, tmp_path):
    folder = tmp_path / "bs1"
    shutil.copytree(pipeline["work"] / "result" / "ort", folder)
    return folder


def _postprocess_error(pipeline, res_path, tmp_path, *extra: str) -> str:
    args = postprocess_py.parse_args(["--res_path", str(res_path), "--data_path",
                                      str(pipeline["work"] / "data" / "cityscapes" / "gtFine" / "val"),
                                      "--save_path", str(tmp_path / "x.json"), *extra])
    with pytest.raises(UserError) as caught:
        postprocess_py.main(args)
    assert not (tmp_path / "x.json").exists()
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_missing_prediction_names_the_label(pipeline, broken_results, tmp_path):
    victim = sorted(broken_results.glob("*_1.bin"))[1]
    victim.unlink()
    name = victim.name.replace("_leftImg8bit_1.bin", "_gtFine_labelIds.png")
    assert name in _postprocess_error(pipeline, broken_results, tmp_path)


def test_wrong_size_bin_is_one_line_and_exit_2(pipeline, broken_results, tmp_path):
    victim = sorted(broken_results.glob("*_1.bin"))[0]
    victim.write_bytes(victim.read_bytes()[:-4])
    result = run_script(PACK, "HRNet_postprocess.py", "--res_path", broken_results, "--data_path",
                        pipeline["work"] / "data" / "cityscapes" / "gtFine" / "val",
                        "--save_path", tmp_path / "x.json", check=False)
    assert result.returncode == 2
    lines = error_lines(result)
    assert len(lines) == 1 and victim.name in lines[0] and "bytes" in lines[0], lines


def test_prediction_without_label_names_it(pipeline, broken_results, tmp_path):
    shutil.copy(next(broken_results.glob("*_1.bin")), broken_results / "bonn_000000_000019_leftImg8bit_1.bin")
    assert "bonn_000000_000019" in _postprocess_error(pipeline, broken_results, tmp_path)


def test_aux_scoring_asked_without_aux_outputs_names_the_file(pipeline, broken_results, tmp_path):
    victim = sorted(broken_results.glob("*_0.bin"))[2]
    victim.unlink()
    ocr_file = victim.name.replace("_0.bin", "_1.bin")
    assert ocr_file in _postprocess_error(pipeline, broken_results, tmp_path, "--aux-index", "0")


def test_by_default_only_the_ocr_output_is_scored(pipeline, tmp_path):
    args = postprocess_py.parse_args(["--res_path", str(pipeline["work"] / "result" / "ort"), "--data_path",
                                      str(pipeline["work"] / "data" / "cityscapes" / "gtFine" / "val"),
                                      "--save_path", str(tmp_path / "ocr.json")])
    postprocess_py.main(args)
    metric = json.loads((tmp_path / "ocr.json").read_text())
    assert metric["aux_head"] is None
    assert metric["value"] == _metric(pipeline, "ort")["value"]
