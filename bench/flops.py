"""FLOPs per image counted from an ONNX graph: Conv, ConvTranspose, MatMul, Gemm.

One multiply-add counts 2 FLOPs; biases, activations, pooling and resizes are not counted
(they are a few percent of a CNN and do not run on the matmul units the peak measures).
Shapes come from ONNX shape inference with the batch fixed to 1, then ONNX Runtime's symbolic
shape inference (it follows Shape->Resize chains); tensors both leave unknown (data-dependent
counts such as detections) are read from one ONNX Runtime run instead.
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Mapping

import numpy as np
import onnx
from onnx import shape_inference

COUNTED_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def _fix_batch(model: onnx.ModelProto, batch: int = 1) -> None:
    initializers = {init.name for init in model.graph.initializer}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = batch


def _known_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes = {}
    values = list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)
    for value in values:
        dims = value.type.tensor_type.shape.dim
        if value.type.tensor_type.HasField("shape") and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(int(d.dim_value) for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)
    return shapes


def _attribute(node: onnx.NodeProto, name: str, default):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def node_flops(node: onnx.NodeProto, shapes: Mapping[str, tuple[int, ...]]) -> int | None:
    """FLOPs of one counted node, or None when a shape it needs is unknown."""
    need = [node.input[0], node.input[1], node.output[0]]
    if any(name not in shapes for name in need):
        return None
    x, w, y = (shapes[name] for name in need)
    if node.op_type == "Conv":
        # y: N, Cout, *spatial; w: Cout, Cin/groups, *kernel
        return 2 * math.prod(y) * math.prod(w[1:])
    if node.op_type == "ConvTranspose":
        # every input pixel scatters Cin x (Cout/groups) x kernel products
        return 2 * math.prod(x) * math.prod(w[1:])
    if node.op_type == "MatMul":
        inner = x[-1] if len(x) > 1 else x[0]
        return 2 * math.prod(y) * inner
    if node.op_type == "Gemm":
        inner = x[0] if _attribute(node, "transA", 0) else x[-1]
        return 2 * math.prod(y) * inner
    return None


def _shapes_from_onnxruntime(model: onnx.ModelProto, names: list[str], feeds: Mapping[str, np.ndarray]) -> dict:
    """Run once with the missing tensors exposed as extra outputs and read their shapes."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    existing = {out.name for out in probe.graph.output}
    for name in names:
        if name not in existing:
            probe.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    # no graph rewrites: fused nodes could swallow the tensors we asked for
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    out_names = [o.name for o in session.get_outputs()]
    arrays = session.run(None, dict(feeds))
    return {name: tuple(array.shape) for name, array in zip(out_names, arrays) if name in set(names)}


def _missing(nodes, shapes) -> list[str]:
    return sorted({name for n in nodes for name in (n.input[0], n.input[1], n.output[0]) if name not in shapes})


def _symbolic_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    try:
        from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
        return _known_shapes(SymbolicShapeInference.infer_shapes(model, auto_merge=True))
    except Exception:  # it gives up on some custom/contrib ops: fall back to a run
        return {}


def count_flops(onnx_path: str | Path, feeds: Mapping[str, np.ndarray] | None = None) -> dict:
    """FLOPs for one image: total, per op type, and how the shapes were found.

    `feeds` (batch 1) is used only when shape inference leaves a counted node's shape open.
    """
    model = onnx.load(str(onnx_path))
    _fix_batch(model, 1)
    inferred = shape_inference.infer_shapes(model, data_prop=True)
    shapes = _known_shapes(inferred)
    counted = [n for n in inferred.graph.node if n.op_type in COUNTED_OPS]
    missing = _missing(counted, shapes)
    source = "onnx shape inference"
    if missing:
        shapes.update(_symbolic_shapes(model))
        missing = _missing(counted, shapes)
        source += " + symbolic shape inference"
    if missing and feeds is not None:
        shapes.update(_shapes_from_onnxruntime(inferred, missing, feeds))
        source += f" + one ONNX Runtime run for {len(missing)} tensors"
    per_op: dict[str, int] = defaultdict(int)
    unresolved = 0
    for node in counted:
        flops = node_flops(node, shapes)
        if flops is None:
            unresolved += 1
            continue
        per_op[node.op_type] += flops
    return {"total": int(sum(per_op.values())), "per_op": dict(per_op), "nodes": len(counted),
            "unresolved_nodes": unresolved, "shape_source": source}
