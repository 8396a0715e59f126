"""PointRend export: opset-11 graph without GridSample, ONNX Runtime vs PyTorch on the same input.

Sizes: at 64x128 the 8192-point budget covers every cell of both subdivision grids (32x64 and
64x128 = 8192 cells); at 128x256 it covers the whole first grid (64x128) but only a quarter of
the second (128x256 = 32768 cells), so the selection really picks the uncertain cells.
"""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from common.cli import UserError
from common.onnx_tools import META_OPTIONS, export_onnx, read_metadata
from common.packs import load_pack_module

torch.set_num_threads(2)
model = load_pack_module("PointRend", "model")
pkl2onnx = load_pack_module("PointRend", "PointRend_pkl2onnx")
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def demo_pkl(tmp_path_factory):
    return model.write_demo_checkpoint(tmp_path_factory.mktemp("pointrend") / "model_final_cf6ac1.pkl")


def structured_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Normalised BGR-like input: flat blocks (tied uncertainties), a ramp, textured noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 40, (3, height, width)).astype(np.float32)
    image[:, : height // 2, : width // 3] = np.array([20.0, -30.0, 5.0])[:, None, None]
    image[:, height // 2:, width // 2:] += np.linspace(-60, 60, width - width // 2, dtype=np.float32)
    return image[None]


def ort_run(path, feeds):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def assert_class_maps_agree(reference_logits: np.ndarray, candidate_map: np.ndarray, tol: float):
    """Class maps equal except where PyTorch's top-2 logits are closer than the float drift.

    A pixel whose two best classes differ by less than the largest logit difference between
    the backends can flip without either being wrong; nowhere else may they disagree.
    """
    reference_map = reference_logits.argmax(1)
    differ = reference_map != candidate_map
    top2 = np.sort(reference_logits, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    assert np.all(margin[differ] <= tol), f"{int(differ.sum())} pixels differ beyond drift"
    assert differ.mean() <= 1e-3
    return int(differ.sum())


def assert_graph_is_opset11_without_grid_sample(onnx_model: onnx.ModelProto):
    assert {imp.version for imp in onnx_model.opset_import if imp.domain in ("", "ai.onnx")} == {11}
    op_types = {node.op_type for node in onnx_model.graph.node}
    assert "GridSample" not in op_types
    assert {"TopK", "Gather", "ScatterElements"} <= op_types


@pytest.mark.parametrize("input_hw", [(64, 128), (128, 256)])
def test_onnx_runtime_matches_pytorch_points_and_logits(demo_pkl, tmp_path, input_hw):
    network = model.load_pretrained(demo_pkl, return_point_indices=True, input_hw=list(input_hw))
    images = structured_image(*input_hw)
    path = tmp_path / "pointrend_points.onnx"
    exported = export_onnx(network, [torch.from_numpy(images)], path, input_names=["images"],
                           output_names=["results", "points_step1", "points_step2"],
                           pack="PointRend", model_options={"return_point_indices": True})
    assert_graph_is_opset11_without_grid_sample(exported)
    onnx_logits, *onnx_points = ort_run(path, {"images": images})
    with torch.no_grad():
        torch_logits, *torch_points = (t.numpy() for t in network(torch.from_numpy(images)))

    height, width = input_hw
    expected_counts = [min(8192, (height // 2) * (width // 2)), min(8192, height * width)]
    for step, (got, want, count) in enumerate(zip(onnx_points, torch_points, expected_counts), 1):
        assert got.shape == want.shape == (1, count), f"step {step}"
        # The same cells are refined; their order only matters to TopK, not to the scatter.
        np.testing.assert_array_equal(np.sort(got, axis=1), np.sort(want, axis=1), f"step {step}")
    value_range = float(torch_logits.max() - torch_logits.min())
    max_abs = float(np.abs(onnx_logits - torch_logits).max())
    assert max_abs <= REL_TOL * value_range, (max_abs, value_range)
    assert_class_maps_agree(torch_logits, onnx_logits.argmax(1), tol=2 * max_abs)


def _write_config_chain(folder, depth=101, steps=2):
    base = folder / "Base-PointRend-Semantic-FPN.yaml"
    base.write_text("MODEL:\n  POINT_HEAD:\n    SUBDIVISION_STEPS: %d\n    COARSE_PRED_EACH_LAYER: False\n"
                    "INPUT:\n  FORMAT: BGR\n" % steps)
    config = folder / "pointrend_semantic_R_101_FPN_1x_cityscapes.yaml"
    config.write_text("_BASE_: Base-PointRend-Semantic-FPN.yaml\nMODEL:\n  RESNETS:\n    DEPTH: %d\n"
                      "  SEM_SEG_HEAD:\n    NUM_CLASSES: 19\n  POINT_HEAD:\n    NUM_CLASSES: 19\n"
                      "    SUBDIVISION_NUM_POINTS: 8192\nINPUT:\n  MIN_SIZE_TEST: 1024\n"
                      "  MAX_SIZE_TEST: 2048\n" % depth)
    return config


def test_export_script_with_fused_argmax_gives_the_pytorch_class_map(demo_pkl, tmp_path):
    config = _write_config_chain(tmp_path, steps=2)
    out = tmp_path / "PointRend_uint8.onnx"
    args = pkl2onnx.parse_args([str(config), str(demo_pkl), str(out), "--input_size", "64", "128",
                                "--class_map", "uint8"])
    assert pkl2onnx.main(args) == 0
    onnx_model = onnx.load(str(out))
    assert_graph_is_opset11_without_grid_sample(onnx_model)
    assert onnx_model.graph.input[0].name == "images"
    assert onnx_model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    options = __import__("json").loads(read_metadata(onnx_model)[META_OPTIONS])
    assert options == {"num_classes": 19, "subdivision_steps": 2, "subdivision_num_points": 8192,
                       "class_map_dtype": "uint8", "input_hw": [64, 128]}

    images = structured_image(64, 128, seed=1)
    (class_map,) = ort_run(out, {"images": images})
    assert class_map.dtype == np.uint8 and class_map.shape == (1, 64, 128)
    float_network = model.load_pretrained(demo_pkl)
    with torch.no_grad():
        torch_logits = float_network(torch.from_numpy(images)).numpy()
    tol = 2 * REL_TOL * float(torch_logits.max() - torch_logits.min())
    assert_class_maps_agree(torch_logits, class_map, tol)


def test_config_of_another_depth_is_refused(demo_pkl, tmp_path):
    config = _write_config_chain(tmp_path, depth=50)
    args = pkl2onnx.parse_args([str(config), str(demo_pkl), str(tmp_path / "x.onnx")])
    with pytest.raises(UserError, match="DEPTH"):
        pkl2onnx.main(args)
    assert not (tmp_path / "x.onnx").exists()


def test_config_values_are_read_through_the_base_chain(tmp_path):
    config = _write_config_chain(tmp_path, steps=3)
    values, chain = pkl2onnx.read_config(config)
    assert values["MODEL.POINT_HEAD.SUBDIVISION_STEPS"] == 3 and len(chain) == 2
    defaults, none_read = pkl2onnx.read_config(tmp_path / "missing.yaml")
    assert defaults["MODEL.POINT_HEAD.SUBDIVISION_STEPS"] == 2 and none_read == []
