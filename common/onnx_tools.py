"""ONNX export and small graph edits shared by the packs' export and fix scripts.

The exported file records which pack and which model options produced it (ONNX
`metadata_props`), so the PyTorch reference run (`common.torch_infer`) can rebuild exactly the
module that was exported and compare it with any backend on the same bins.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import onnx
import torch

from common.cli import UserError
from common.fsio import atomic_path

ATC_OPSET = 11  # the opset ATC accepts (CANN 5.x/6.0); ONNX Runtime does not need it
META_PACK = "segzoo_pack"
META_OPTIONS = "segzoo_model_options"
# Set on a graph edited for an old ATC only: ONNX Runtime would run it and compute something else.
META_ATC_ONLY = "segzoo_atc_only"


def exporter_opsets() -> range:
    """The opsets torch's TorchScript exporter (dynamo=False, what export_onnx uses) writes."""
    from torch.onnx import _constants  # private, so each bound has the torch 2.x value to fall back on
    return range(getattr(_constants, "ONNX_MIN_OPSET", 7),
                 getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20) + 1)


def check_opset(opset: int, minimum: int | None = None, flag: str = "--opset") -> int:
    """One line when the exporter cannot write `opset` or the graph needs a newer one."""
    supported = exporter_opsets()
    lowest, highest = max(minimum or supported.start, supported.start), supported.stop - 1
    if not lowest <= opset <= highest:
        needs = f"this graph needs opset >= {minimum}; " if minimum else ""
        raise UserError(f"{flag} {opset}: expected an opset from {lowest} to {highest} ({needs}torch "
                        f"{torch.__version__.split('+')[0]}'s TorchScript exporter writes "
                        f"{supported.start} to {highest})")
    return opset


def export_onnx(module: torch.nn.Module, dummy_inputs: Sequence[torch.Tensor], path: str | Path, *,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_batch: bool = True, pack: str, model_options: Mapping | None = None,
                opset: int = ATC_OPSET) -> onnx.ModelProto:
    """TorchScript-based export at the ATC opset, checked, tagged and written atomically."""
    check_opset(opset, flag="opset")
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch_size"} for name in list(input_names) + list(output_names)}
    path = Path(path)
    with atomic_path(path) as tmp:
        with torch.no_grad():
            torch.onnx.export(module, tuple(dummy_inputs), str(tmp), input_names=list(input_names),
                              output_names=list(output_names), dynamic_axes=dynamic_axes,
                              opset_version=opset, do_constant_folding=True, dynamo=False)
        model = onnx.load(str(tmp))
        set_metadata(model, {META_PACK: pack, META_OPTIONS: json.dumps(dict(model_options or {}))})
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
    return model


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
    onnx.checker.check_model(model)
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


def nodes_of_type(graph: onnx.GraphProto, op_types: Iterable[str]) -> list[onnx.NodeProto]:
    wanted = set(op_types)
    return [node for node in graph.node if node.op_type in wanted]


def output_names(model: onnx.ModelProto) -> list[str]:
    return [out.name for out in model.graph.output]
