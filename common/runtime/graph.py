"""ONNX graphs without torch: loading, saving, metadata, and the queries the fix scripts use.

The exported file records which pack and which model options produced it (ONNX
`metadata_props`), so the PyTorch reference run (`common.torch_infer`) can rebuild exactly the
module that was exported and compare it with any backend on the same bins.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import onnx

from common.cli import UserError
from common.files.atomic import atomic_path, remove_stale_temps_of

ATC_OPSET = 11  # the opset ATC accepts (CANN 5.x/6.0); ONNX Runtime does not need it
META_PACK = "segzoo_pack"
META_OPTIONS = "segzoo_model_options"
# Set on a graph edited for an old ATC only: ONNX Runtime would run it and compute something else.
META_ATC_ONLY = "segzoo_atc_only"
BATCH_AXIS, BATCH_DIM = 0, "batch_size"  # the one dynamic axis of a dynamic-batch export


def declare_output_shapes(model: onnx.ModelProto, shapes: Sequence[Sequence[int]], dynamic_batch: bool) -> None:
    """Write each graph output's static dimensions (the tracer leaves names such as
    'Convoutput_dim_2' where the size is fixed); only the batch axis stays symbolic."""
    outputs = model.graph.output
    if len(shapes) != len(outputs):
        raise ValueError(f"traced {len(shapes)} outputs, the graph has {len(outputs)}")
    for output, shape in zip(outputs, shapes):
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for axis, size in enumerate(shape):
            dim = dims.add()
            if dynamic_batch and axis == BATCH_AXIS:
                dim.dim_param = BATCH_DIM
            else:
                dim.dim_value = int(size)


def set_metadata(model: onnx.ModelProto, values: Mapping[str, str]) -> None:
    existing = {prop.key: prop for prop in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)


def read_metadata(model: onnx.ModelProto) -> dict[str, str]:
    return {prop.key: prop.value for prop in model.metadata_props}


def load_onnx(path: str | Path, load_weights: bool = True) -> onnx.ModelProto:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: ONNX model not found")
    try:
        return onnx.load(str(path), load_external_data=load_weights)
    except Exception as err:  # onnx raises DecodeError and friends without a common base
        raise UserError(f"{path}: not a readable ONNX model ({type(err).__name__})") from None


def save_onnx(model: onnx.ModelProto, path: str | Path) -> None:
    """Checked, then written atomically (after removing what a killed run left writing `path`)."""
    onnx.checker.check_model(model)
    remove_stale_temps_of(path)
    with atomic_path(path) as tmp:
        onnx.save(model, str(tmp))


# ---- graph queries used by the fix scripts (find nodes by structure, never by name) -------

def producers(graph: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {out: node for node in graph.node for out in node.output}


def consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def get_attribute(node: onnx.NodeProto, name: str, default=None):
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def set_attribute(node: onnx.NodeProto, name: str, value) -> None:
    for index, attr in enumerate(node.attribute):
        if attr.name == name:
            del node.attribute[index]
            break
    node.attribute.append(onnx.helper.make_attribute(name, value))


def output_names(model: onnx.ModelProto) -> list[str]:
    return [out.name for out in model.graph.output]


def atc_out_nodes(model: onnx.ModelProto) -> list[str]:
    """ATC's `--out_nodes` for the graph outputs: `<producing node>:<its output index>`, in output order."""
    producer_of = producers(model.graph)
    names = []
    for output in output_names(model):
        node = producer_of.get(output)
        if node is None or not node.name:
            raise UserError(f"graph output {output} has no named producing node")
        names.append(f"{node.name}:{list(node.output).index(output)}")
    return names


def graph_inputs(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The inputs a caller feeds: graph inputs that are not initializers (older exporters list
    every weight among the inputs too)."""
    initializers = {init.name for init in model.graph.initializer}
    return [value for value in model.graph.input if value.name not in initializers]
