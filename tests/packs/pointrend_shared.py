"""Helpers shared by the PointRend test files."""
from __future__ import annotations

import numpy as np
import onnx


def assert_class_maps_agree(reference_logits: np.ndarray, candidate_map: np.ndarray, tol: float) -> int:
    """Class maps equal except where the reference's top-2 logits are closer than the drift.

    A pixel whose two best classes differ by less than the largest logit difference between
    the backends can flip without either being wrong; nowhere else may they disagree. The class
    axis is the one before the last two. Returns the number of (tolerated) flips.
    """
    reference_map = reference_logits.argmax(-3)
    differ = reference_map != candidate_map
    top2 = np.sort(reference_logits, axis=-3)
    margin = np.take(top2, -1, axis=-3) - np.take(top2, -2, axis=-3)
    assert np.all(margin[differ] <= tol), f"{int(differ.sum())} pixels differ beyond the drift"
    assert differ.mean() <= 1e-3
    return int(differ.sum())


def assert_graph_is_opset11_without_grid_sample(onnx_model: onnx.ModelProto) -> None:
    assert {imp.version for imp in onnx_model.opset_import if imp.domain in ("", "ai.onnx")} == {11}
    op_types = {node.op_type for node in onnx_model.graph.node}
    assert "GridSample" not in op_types
    assert {"TopK", "Gather", "ScatterElements"} <= op_types


_DEMO_CHECKPOINT = {}


def demo_checkpoint(tmp_path_factory):
    """One demo `model_final_cf6ac1.pkl` per test session (190 MB: written once, shared)."""
    if "path" not in _DEMO_CHECKPOINT:
        from common.pipeline.packs import pack_module
        model = pack_module("PointRend", "model")
        folder = tmp_path_factory.mktemp("pointrend_weights")
        _DEMO_CHECKPOINT["path"] = model.write_demo_checkpoint(folder / "model_final_cf6ac1.pkl")
    return _DEMO_CHECKPOINT["path"]
