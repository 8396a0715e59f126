"""PointRend export: opset-11 graph without GridSample, ONNX Runtime vs PyTorch on the same input.

Sizes: at 128x256 the 8192-point budget covers the whole first subdivision grid (64x128 = 8192
cells) but only a quarter of the second (128x256 = 32768 cells), so the selection really picks
the uncertain cells there; 256x512 (both grids larger than the budget) is the slow variant.
At 64x128 the budget covers both grids (32x64 and 64x128): test_pointrend_pipeline runs that
size end to end.
"""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from common.cli import UserError
from common.runtime.export import export_onnx
from common.pipeline.packs import pack_module
from pointrend_shared import demo_checkpoint, assert_class_maps_agree, assert_graph_is_opset11_without_grid_sample

torch.set_num_threads(2)
model = pack_module("PointRend", "model")
pkl2onnx = pack_module("PointRend", "PointRend_pkl2onnx")
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def demo_pkl(tmp_path_factory):
    return demo_checkpoint(tmp_path_factory)


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


@pytest.mark.parametrize("input_hw", [(128, 256)])
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


def test_config_of_another_depth_is_refused(demo_pkl, tmp_path):
    config = _write_config_chain(tmp_path, depth=50)
    args = pkl2onnx.parse_args([str(config), str(demo_pkl), str(tmp_path / "x.onnx")])
    with pytest.raises(UserError, match="DEPTH"):
        pkl2onnx.main(args)
    assert not (tmp_path / "x.onnx").exists()


def test_config_values_are_read_through_the_base_chain(tmp_path):
    config = _write_config_chain(tmp_path)
    values, chain = pkl2onnx.read_config(config)
    assert values["MODEL.POINT_HEAD.SUBDIVISION_STEPS"] == 2 and len(chain) == 2
    # A value only the base sets is read (and checked) there: 3 steps would double the output.
    _write_config_chain(tmp_path, steps=3)
    with pytest.raises(UserError, match="Base-PointRend-Semantic-FPN.yaml: MODEL.POINT_HEAD.SUBDIVISION_STEPS is 3"):
        pkl2onnx.read_config(config)
    defaults, none_read = pkl2onnx.read_config(tmp_path / "missing.yaml")
    assert defaults["MODEL.POINT_HEAD.SUBDIVISION_STEPS"] == 2 and none_read == []
