"""The NPU's float16 arithmetic on the CPU, by rewriting the ONNX graph.

Every operator still computes in float32 on ONNX Runtime; what changes is where values are
rounded to float16 (a Cast to float16 and back, which ONNX Runtime does with IEEE
round-to-nearest-even, inf past 65504 and subnormals kept):

- a matrix operator (Conv, ConvTranspose, MatMul, Gemm) that runs in float16 gets its data,
  weights and bias rounded, computes in float32 (the Cube unit's float32 accumulator) and has
  its output rounded (float16 leaves the accumulator);
- a vector operator that runs in float16 (force_fp16) gets its float inputs rounded and its
  output rounded: elementwise +, -, *, / and sqrt of float16 operands computed in float32 and
  rounded once equal float16 arithmetic exactly; operators that reduce or interpolate
  (Softmax, ReduceMean, Resize, AveragePool, ...) are rounded at their boundary only, their
  internal sums stay float32;
- kept nodes (`--keep_dtype`) and must_keep_origin_dtype stay float32; their consumers that run
  in float16 round what they read;
- under saturation overflow a value is clipped to +-65504 before rounding instead of becoming
  inf.

Left untouched: integer tensors, the shape subgraph (everything computed from Shape/Size and
constants alone, which ATC folds at compile time), and parameter inputs such as Resize scales.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from common.fp16.modes import (FP16_MAX, MATRIX_OPS, PARAMETER_INPUTS, SATURATION, SHAPE_OPS,
                               VALUE_PRESERVING_OPS, round_to_fp16, runs_in_fp16)

FLOAT = TensorProto.FLOAT
EXACT_TYPES = frozenset({TensorProto.INT64, TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8,
                         TensorProto.BOOL})
# Weights below this many values are copied through shape inference as they are; larger
# float initializers become typed graph inputs there, so inference does not copy the weights.
_SMALL_INITIALIZER = 64


@dataclass
class GraphFacts:
    """What the rewrite and the statistics need to know about a graph, computed once."""
    elem_types: dict[str, int]           # tensor name -> ONNX elem type, where known
    shapes: dict[str, tuple]             # tensor name -> dims (int or None) at the analysed input shape
    data_tensors: set[str]               # tensors whose value depends on the graph inputs' values
    initializers: set[str]
    order: dict[str, int] = field(default_factory=dict)  # node name -> position in graph order

    def is_float(self, name: str) -> bool:
        return self.elem_types.get(name) == FLOAT

    def is_exact(self, name: str) -> bool:
        """An integer or boolean tensor: compared value for value, never rounded."""
        return self.elem_types.get(name) in EXACT_TYPES

    def nbytes(self, name: str) -> int | None:
        dims = self.shapes.get(name)
        if dims is None or any(not isinstance(d, int) or d < 0 for d in dims):
            return None
        itemsize = 8 if self.elem_types.get(name) == TensorProto.INT64 else 4
        return int(np.prod(dims, dtype=np.int64)) * itemsize


def analyse(model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]]) -> GraphFacts:
    """Types and shapes (by ONNX shape inference at `input_shapes`) and which tensors carry data."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    elem_types, shapes = _infer_types_and_shapes(model, input_shapes)
    data = {value.name for value in graph.input if value.name not in initializers}
    for node in graph.node:
        if node.op_type not in SHAPE_OPS and any(name in data for name in node.input if name):
            data.update(name for name in node.output if name)
    order = {node.name: index for index, node in enumerate(graph.node)}
    return GraphFacts(elem_types, shapes, data, initializers, order)


def _infer_types_and_shapes(model: onnx.ModelProto, input_shapes) -> tuple[dict, dict]:
    light = onnx.ModelProto()
    if _is_small(model):
        light.CopyFrom(model)
    else:
        _copy_without_weights(model, light)
    for value in light.graph.input:
        if value.name in input_shapes:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, input_shapes[value.name]):
                dim.Clear()
                dim.dim_value = int(size)
    inferred = onnx.shape_inference.infer_shapes(light, strict_mode=False, data_prop=True)
    elem_types, shapes = {}, {}
    values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
    for value in values:
        tensor_type = value.type.tensor_type
        if tensor_type.elem_type:
            elem_types[value.name] = tensor_type.elem_type
        if tensor_type.HasField("shape"):
            shapes[value.name] = tuple(d.dim_value if d.HasField("dim_value") else None
                                       for d in tensor_type.shape.dim)
    for init in model.graph.initializer:
        elem_types[init.name] = init.data_type
        shapes[init.name] = tuple(init.dims)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    elem_types[node.output[0]] = attr.t.data_type
                    shapes[node.output[0]] = tuple(attr.t.dims)
    return elem_types, shapes


def _is_small(model: onnx.ModelProto) -> bool:
    return sum(np.prod(init.dims, dtype=np.int64) for init in model.graph.initializer) < 1_000_000


def _copy_without_weights(model: onnx.ModelProto, light: onnx.ModelProto) -> None:
    """A copy whose large float weights are typed graph inputs: the same shapes and types for
    inference, without copying hundreds of MB of values."""
    light.ir_version = model.ir_version
    light.opset_import.extend(model.opset_import)
    graph = light.graph
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    graph.value_info.extend(model.graph.value_info)
    listed = {value.name for value in model.graph.input}
    for init in model.graph.initializer:
        if init.data_type == FLOAT and np.prod(init.dims, dtype=np.int64) > _SMALL_INITIALIZER:
            if init.name not in listed:
                graph.input.append(helper.make_tensor_value_info(init.name, FLOAT, list(init.dims)))
        else:
            graph.initializer.append(init)


# ---- the rewrite --------------------------------------------------------------------------

def fp16_nodes(model: onnx.ModelProto, facts: GraphFacts, mode: str, keep: Iterable[str] = ()) -> set[str]:
    """Names of the nodes that compute in float16: data-carrying, not kept, and of a type the
    mode lowers."""
    keep = set(keep)
    return {node.name for node in model.graph.node
            if node.name not in keep and node.op_type not in SHAPE_OPS and not _has_subgraph(node)
            and any(name in facts.data_tensors for name in node.input if name)
            and runs_in_fp16(node.op_type, mode)}


def _has_subgraph(node: onnx.NodeProto) -> bool:
    # If/Loop/Scan bodies read outer tensors without naming them as inputs: left as they are.
    return any(attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for attr in node.attribute)


def emulate(model: onnx.ModelProto, facts: GraphFacts, mode: str, keep: Iterable[str] = (),
            overflow: str = "inf_nan") -> onnx.ModelProto:
    """A copy of `model` that computes as the NPU would under `mode` with `keep` in float32."""
    lowered = fp16_nodes(model, facts, mode, keep)
    rewriter = _Rewriter(model, facts, overflow)
    for node in model.graph.node:
        if node.name in lowered:
            rewriter.add_fp16_node(node)
        else:
            rewriter.nodes.append(node)
    return rewriter.build()


class _Rewriter:
    def __init__(self, model: onnx.ModelProto, facts: GraphFacts, overflow: str):
        self.model, self.facts, self.overflow = model, facts, overflow
        self.nodes: list[onnx.NodeProto] = []
        self.rounded: set[str] = set()      # tensors already holding float16 values
        self.copies: dict[str, str] = {}    # tensor -> name of its rounded copy
        self.new_initializers: list[onnx.TensorProto] = []
        self.initializers = {init.name: init for init in model.graph.initializer}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 11)

    def add_fp16_node(self, node: onnx.NodeProto) -> None:
        node = _copy_node(node)
        skip = PARAMETER_INPUTS.get(node.op_type, ())
        for index, name in enumerate(node.input):
            if name and index not in skip and self.facts.is_float(name) and name not in self.rounded:
                node.input[index] = self._rounded_copy(name)
        float_outputs = [name for name in node.output if name and self.facts.is_float(name)]
        if node.op_type in VALUE_PRESERVING_OPS and node.op_type not in MATRIX_OPS:
            self.nodes.append(node)
            self.rounded.update(float_outputs)
            return
        for index, name in enumerate(node.output):
            if name in float_outputs:
                node.output[index] = f"{name}__fp32"
        self.nodes.append(node)
        for name in float_outputs:
            self._append_rounding(f"{name}__fp32", name)
            self.rounded.add(name)

    def _rounded_copy(self, name: str) -> str:
        if name not in self.copies:
            copy = f"{name}__fp16"
            if name in self.initializers:
                values = numpy_helper.to_array(self.initializers[name])
                self.new_initializers.append(numpy_helper.from_array(round_to_fp16(values, self.overflow), copy))
            else:
                self._append_rounding(name, copy)
            self.copies[name] = copy
        return self.copies[name]

    def _append_rounding(self, source: str, target: str) -> None:
        if self.overflow == SATURATION:
            clipped = f"{target}__clip"
            self.nodes.append(self._clip(source, clipped))
            source = clipped
        half = f"{target}__half"
        self.nodes.append(helper.make_node("Cast", [source], [half], to=TensorProto.FLOAT16,
                                           name=f"{target}__to_fp16"))
        self.nodes.append(helper.make_node("Cast", [half], [target], to=FLOAT, name=f"{target}__to_fp32"))

    def _clip(self, source: str, target: str) -> onnx.NodeProto:
        if self.opset < 11:
            return helper.make_node("Clip", [source], [target], min=-FP16_MAX, max=FP16_MAX, name=f"{target}__sat")
        if "fp16_sat_min" not in self.initializers:
            for bound, value in (("fp16_sat_min", -FP16_MAX), ("fp16_sat_max", FP16_MAX)):
                tensor = numpy_helper.from_array(np.array(value, np.float32), bound)
                self.new_initializers.append(tensor)
                self.initializers[bound] = tensor
        return helper.make_node("Clip", [source, "fp16_sat_min", "fp16_sat_max"], [target], name=f"{target}__sat")

    def build(self) -> onnx.ModelProto:
        out = onnx.ModelProto()
        out.ir_version = self.model.ir_version
        out.opset_import.extend(self.model.opset_import)
        out.metadata_props.extend(self.model.metadata_props)
        graph = out.graph
        graph.name = self.model.graph.name
        graph.node.extend(self.nodes)
        # Weights now read only through their rounded copy are left out rather than carried twice.
        used = {name for node in self.nodes for name in node.input}
        graph.input.extend(value for value in self.model.graph.input
                           if value.name not in self.initializers or value.name in used)
        graph.output.extend(self.model.graph.output)
        graph.initializer.extend(init for init in self.model.graph.initializer if init.name in used)
        graph.initializer.extend(self.new_initializers)
        return out


def _copy_node(node: onnx.NodeProto) -> onnx.NodeProto:
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    return copy


# ---- running ------------------------------------------------------------------------------

def with_outputs(model: onnx.ModelProto, names: Sequence[str], elem_types: Mapping[str, int]) -> onnx.ModelProto:
    """A copy of the model that also returns the tensors `names`."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {value.name for value in out.graph.output}
    for name in names:
        if name not in present:
            out.graph.output.append(helper.make_tensor_value_info(name, elem_types.get(name, FLOAT), None))
    return out


def make_session(model: onnx.ModelProto, threads: int | None = None):
    import onnxruntime as ort

    from common.runtime.onnxruntime_backend import session_options

    return ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                providers=["CPUExecutionProvider"])
