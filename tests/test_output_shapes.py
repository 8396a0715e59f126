"""Every export declares its outputs' static dimensions (only the batch axis symbolic, where the
batch is dynamic), the graph fixes keep them, and ONNX Runtime returns exactly those shapes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from common.infer import OnnxRuntimeBackend
from common.packs import load_pack_module
from conftest import run_script

# pack -> (checkpoint name, export argv with {ckpt} and {onnx}, graph fixes run after it)
EXPORTS = {
    "RefineNet": ("RefineNet_910.pth.tar",
                  ["RefineNet_pth2onnx.py", "--input-file", "{ckpt}", "--output-file", "{onnx}", "--size", "64"], []),
    "3D_HRNet": ("hrnet.pth",
                 ["HRNet_pth2onnx.py", "--pth", "{ckpt}", "--save_path", "{onnx}", "--input_hw", "64", "128"],
                 [["performance_optimize_resize.py", "{onnx}", "{fixed}"]]),
    "PointRend": ("model_final_cf6ac1.pkl",
                  ["PointRend_pkl2onnx.py", "missing.yaml", "{ckpt}", "{onnx}", "--input_size", "64", "128"], []),
    "Wseg": ("model_enc_e020Xs0.928.pth",
             ["wseg_pth2onnx.py", "{ckpt}", "{onnx}", "--input-size", "64"],
             [["fix_softmax_transpose.py", "{onnx}", "{fixed}"]]),
    "MaskRCNN_mmdet": ("mask_rcnn_r50_fpn_1x_coco_20200205-d4b0c5d6.pth",
                       ["mmdet_pth2onnx.py", "configs/mask_rcnn/mask_rcnn_r50_fpn_1x_coco.py", "{ckpt}",
                        "--output-file", "{onnx}", "--shape", "64", "64"],
                       [["label_to_int32.py", "{onnx}", "{fixed}"]]),
}


def declared_shapes(model: onnx.ModelProto) -> list[list]:
    return [[d.dim_param if d.HasField("dim_param") else d.dim_value
             for d in out.type.tensor_type.shape.dim] for out in model.graph.output]


def check_declared_against_runtime(path: Path) -> None:
    model = onnx.load(str(path), load_external_data=False)
    declared = declared_shapes(model)
    for shape in declared:
        # Every axis but a dynamic batch axis has a size, not a name left by the tracer.
        assert all(isinstance(d, int) and d > 0 for d in shape[1:]), (path.name, declared)
        assert isinstance(shape[0], int) or shape[0] == "batch_size", (path.name, declared)
    backend = OnnxRuntimeBackend(path)
    feeds = {spec.name: np.zeros((1, *spec.shape[1:]), dtype=spec.dtype) for spec in backend.input_specs()}
    returned = [list(out.shape) for out in backend.run(feeds)]
    expected = [[1 if d == "batch_size" else d for d in shape] for shape in declared]
    assert returned == expected, (path.name, declared, returned)


@pytest.mark.parametrize("pack", list(EXPORTS))
def test_declared_output_shapes_are_static_and_what_onnx_runtime_returns(pack, tmp_path):
    checkpoint_name, export_argv, fixes = EXPORTS[pack]
    checkpoint = tmp_path / checkpoint_name
    load_pack_module(pack, "model").write_demo_checkpoint(str(checkpoint))
    paths = {"ckpt": checkpoint, "onnx": tmp_path / "exported.onnx", "fixed": tmp_path / "fixed.onnx"}
    run_script(pack, *[arg.format(**paths) for arg in export_argv])
    check_declared_against_runtime(paths["onnx"])
    for fix_argv in fixes:
        run_script(pack, *[arg.format(**paths) for arg in fix_argv])
        check_declared_against_runtime(paths["fixed"])
