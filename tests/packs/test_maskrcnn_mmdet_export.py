"""MaskRCNN_mmdet export: ONNX Runtime vs PyTorch on the same inputs, graph facts, label_to_int32."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from common.cli import UserError
from common.runtime.graph import get_attribute, read_metadata
from common.pipeline.packs import pack_module
from common.data.synth.drawing import draw_random_shapes, smooth_background

torch.set_num_threads(2)
model = pack_module("MaskRCNN_mmdet", "model")
pth2onnx = pack_module("MaskRCNN_mmdet", "mmdet_pth2onnx")
label_to_int32 = pack_module("MaskRCNN_mmdet", "label_to_int32")

INPUT_HW = (128, 160)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("maskrcnn_export")
    checkpoint = model.write_demo_checkpoint(folder / "mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth")
    onnx_path = folder / "maskrcnn_r50_fpn_1x.onnx"
    pth2onnx.main(pth2onnx.parse_args(["configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", str(checkpoint),
                                       "--output-file", str(onnx_path), "--shape", *map(str, INPUT_HW)]))
    return checkpoint, onnx_path


def _session(path):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _normalised_image(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rgb = smooth_background(rng, *INPUT_HW)
    draw_random_shapes(rng, rgb, np.zeros(INPUT_HW, np.uint8), range(1, 5), count=4)
    chw = ((rgb - np.array(model.PIXEL_MEAN_RGB)) / np.array(model.PIXEL_STD_RGB)).transpose(2, 0, 1)
    return chw[None].astype(np.float32)


def test_onnxruntime_matches_pytorch(exported):
    checkpoint, onnx_path = exported
    net = model.load_pretrained(checkpoint, input_hw=INPUT_HW)
    session = _session(onnx_path)
    counts = []
    for seed in (0, 1):
        image = _normalised_image(seed)
        with torch.no_grad():
            dets, labels, masks = (t[0].numpy() for t in net(torch.from_numpy(image)))
        ort_dets, ort_labels, ort_masks = (out[0] for out in session.run(None, {"input": image}))
        assert ort_dets.shape == (100, 5) and ort_labels.shape == (100,) and ort_masks.shape == (100, 80, 28, 28)
        np.testing.assert_array_equal(ort_labels, labels)
        assert np.abs(ort_dets[:, :4] - dets[:, :4]).max() <= 1e-3
        assert np.abs(ort_dets[:, 4] - dets[:, 4]).max() <= 1e-5
        assert np.abs(ort_masks - masks).max() <= 1e-4
        counts.append(int((labels >= 0).sum()))
    assert max(counts) > 0, "demo weights should give detections to compare"


def test_exported_graph_uses_aligned_roi_align_and_records_options(exported):
    _, onnx_path = exported
    graph_model = onnx.load(str(onnx_path))
    roi_aligns = [n for n in graph_model.graph.node if n.op_type == "RoiAlign"]
    assert len(roi_aligns) == 8  # 4 levels x (box, mask)
    for node in roi_aligns:
        assert get_attribute(node, "coordinate_transformation_mode") == b"half_pixel"
        assert get_attribute(node, "sampling_ratio") == 0
    assert graph_model.opset_import[0].version == 16
    meta = read_metadata(graph_model)
    assert meta["segzoo_pack"] == "MaskRCNN_mmdet"
    assert json.loads(meta["segzoo_model_options"]) == {"input_hw": list(INPUT_HW)}
    dims = {out.name: [d.dim_value for d in out.type.tensor_type.shape.dim] for out in graph_model.graph.output}
    assert dims == {"boxes": [1, 100, 5], "labels": [1, 100], "masks": [1, 100, 80, 28, 28]}


def test_label_to_int32_keeps_values(exported, tmp_path):
    checkpoint, onnx_path = exported
    out_path = tmp_path / "int32.onnx"
    label_to_int32.main(label_to_int32.parse_args([str(onnx_path), str(out_path)]))
    converted = onnx.load(str(out_path))
    types = {out.name: out.type.tensor_type.elem_type for out in converted.graph.output}
    assert types == {"boxes": TensorProto.FLOAT, "labels": TensorProto.INT32, "masks": TensorProto.FLOAT}
    image = _normalised_image(1)
    labels = _session(out_path).run(["labels"], {"input": image})[0]
    assert labels.dtype == np.int32
    # the PyTorch reference rebuilt from the edited graph's metadata returns int32 too
    assert json.loads(read_metadata(converted)["segzoo_model_options"]) == {"input_hw": list(INPUT_HW),
                                                                         "labels_int32": True}
    from common.runtime.torch_backend import TorchBackend
    torch_labels = TorchBackend(out_path, checkpoint, threads=2).run({"input": image})[1]
    assert torch_labels.dtype == np.int32
    np.testing.assert_array_equal(torch_labels, labels)
    assert (labels >= 0).any()


def test_label_to_int32_retargets_an_existing_cast_found_by_structure():
    cast = helper.make_node("Cast", ["x"], ["labels"], to=TensorProto.INT64, name="Cast_622_renamed")
    graph = helper.make_graph([helper.make_node("Identity", ["boxes_in"], ["boxes"]), cast], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4]),
                               helper.make_tensor_value_info("boxes_in", TensorProto.FLOAT, [4])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [4]),
                               helper.make_tensor_value_info("labels", TensorProto.INT64, [4])])
    edited, change = label_to_int32.labels_to_int32(helper.make_model(graph))
    assert len(edited.graph.node) == 2 and "Cast_622_renamed" in change
    assert get_attribute(edited.graph.node[1], "to") == TensorProto.INT32
    assert edited.graph.output[1].type.tensor_type.elem_type == TensorProto.INT32
    with pytest.raises(UserError, match="exactly one int64"):
        label_to_int32.labels_to_int32(edited)


def test_opset_11_export_uses_the_half_cell_shift_and_matches_its_pytorch_module(exported, tmp_path):
    checkpoint, _ = exported
    with pytest.raises(UserError, match="opset >= 11"):
        pth2onnx.main(pth2onnx.parse_args([str(checkpoint), "--output-file", str(tmp_path / "x.onnx"),
                                           "--opset", "10"]))
    onnx_path = tmp_path / "opset11.onnx"
    pth2onnx.main(pth2onnx.parse_args([str(checkpoint), "--output-file", str(onnx_path), "--shape", "64", "96",
                                       "--opset", "11"]))
    graph_model = onnx.load(str(onnx_path))
    assert graph_model.opset_import[0].version == 11
    for node in [n for n in graph_model.graph.node if n.op_type == "RoiAlign"]:
        assert get_attribute(node, "coordinate_transformation_mode") is None  # RoiAlign-10
    options = json.loads(read_metadata(graph_model)["segzoo_model_options"])
    assert options == {"input_hw": [64, 96], "legacy_roi_align": True}
    net = model.load_pretrained(checkpoint, **options)
    image = np.random.default_rng(0).normal(size=(1, 3, 64, 96)).astype(np.float32)
    with torch.no_grad():
        dets, labels, masks = (t.numpy() for t in net(torch.from_numpy(image)))
    ort_dets, ort_labels, ort_masks = _session(onnx_path).run(None, {"input": image})
    assert (labels >= 0).any()
    np.testing.assert_array_equal(ort_labels, labels)
    assert np.abs(ort_dets - dets).max() <= 1e-3 and np.abs(ort_masks - masks).max() <= 1e-4


# ---- the guide's pipeline on synthetic COCO: preprocess -> both backends -> postprocess --------

def test_pipeline_gives_the_same_detections_and_ap_on_both_backends(exported, tmp_path):
    from pycocotools import mask as mask_utils

    from common.files.bins import read_bin
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from common.runtime.runner import run_inference
    from common.data.synth.coco import write_synthetic_coco
    from common.runtime.torch_backend import TorchBackend

    preprocess = pack_module("MaskRCNN_mmdet", "mmdet_preprocess")
    postprocess = pack_module("MaskRCNN_mmdet", "mmdet_postprocess")
    get_info = pack_module("MaskRCNN_mmdet", "get_info")
    checkpoint, onnx_path = exported
    write_synthetic_coco(tmp_path / "coco", count=2, seed=2, sizes_hw=((120, 160), (150, 100)))
    bins = tmp_path / "bins"
    preprocess.main(preprocess.parse_args(["--image_src_path", str(tmp_path / "coco" / "val2017"),
                                           "--bin_file_path", str(bins), "--model_input_height", str(INPUT_HW[0]),
                                           "--model_input_width", str(INPUT_HW[1])]))
    backends = {"onnxruntime": OnnxRuntimeBackend(onnx_path, threads=2),
                "pytorch": TorchBackend(onnx_path, checkpoint, threads=2)}
    for name, backend in backends.items():
        run_inference(backend, str(bins), tmp_path / "result", name, progress=False)
    stems = sorted(p.stem for p in bins.glob("*.bin"))
    for stem in stems:
        ort_dir, torch_dir = tmp_path / "result" / "onnxruntime", tmp_path / "result" / "pytorch"
        np.testing.assert_array_equal(read_bin(ort_dir / f"{stem}_1.bin", (100,), np.int64),
                                      read_bin(torch_dir / f"{stem}_1.bin", (100,), np.int64))
        assert np.abs(read_bin(ort_dir / f"{stem}_0.bin", (100, 5)) - read_bin(torch_dir / f"{stem}_0.bin", (100, 5))).max() <= 1e-3
        assert np.abs(read_bin(ort_dir / f"{stem}_2.bin", (100, 80, 28, 28))
                      - read_bin(torch_dir / f"{stem}_2.bin", (100, 80, 28, 28))).max() <= 1e-4
    info = tmp_path / "val2017_jpg.info"
    get_info.main(get_info.parse_args(["jpg", str(tmp_path / "coco" / "val2017"), str(info)]))
    reports, detections = {}, {}
    for name in backends:
        det_dir = tmp_path / f"det_{name}"
        postprocess.main(postprocess.parse_args([
            "--bin_data_path", str(tmp_path / "result" / name), "--test_annotation", str(info),
            "--val2017_json_path", str(tmp_path / "coco" / "annotations" / "instances_val2017.json"),
            "--det_results_path", str(det_dir), "--net_input_height", str(INPUT_HW[0]),
            "--net_input_width", str(INPUT_HW[1])]))
        reports[name] = json.loads((det_dir / "metrics.json").read_text())
        detections[name] = json.loads((det_dir / "detections_segm.json").read_text())
    assert reports["onnxruntime"]["detections"] == reports["pytorch"]["detections"] > 0
    for iou_type in ("bbox", "segm"):
        assert reports["onnxruntime"][iou_type] == reports["pytorch"][iou_type]
    for ort_det, torch_det in zip(detections["onnxruntime"], detections["pytorch"]):
        assert ort_det["category_id"] == torch_det["category_id"]
        assert np.abs(np.array(ort_det["bbox"]) - torch_det["bbox"]).max() <= 1e-2  # canvas 1e-3 / scale
        differing = mask_utils.area(mask_utils.merge([ort_det["segmentation"], torch_det["segmentation"]], intersect=False)) \
            - mask_utils.area(mask_utils.merge([ort_det["segmentation"], torch_det["segmentation"]], intersect=True))
        assert differing <= 2  # pixels exactly at the 0.5 threshold may flip
