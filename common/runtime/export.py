"""Exporting a pack's network to ONNX at the ATC opset (the one module here that needs torch)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping, Sequence

import onnx
import torch

from common.cli import UserError
from common.files.atomic import atomic_path, remove_stale_temps_of
from common.runtime.graph import (ATC_OPSET, BATCH_AXIS, BATCH_DIM, META_OPTIONS, META_PACK,
                                  declare_output_shapes, set_metadata)


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
        dynamic_axes = {name: {BATCH_AXIS: BATCH_DIM} for name in list(input_names) + list(output_names)}
    path = Path(path)
    traced_shapes: list[tuple[int, ...]] = []

    def record_output_shapes(_module, _inputs, outputs) -> None:
        # The tracer runs the module on the dummy inputs: these are the outputs' real shapes.
        tensors = (outputs,) if isinstance(outputs, torch.Tensor) else outputs
        traced_shapes[:] = [tuple(tensor.shape) for tensor in tensors]

    hook = module.register_forward_hook(record_output_shapes)
    remove_stale_temps_of(path)  # what a killed export left beside the file
    try:
        with atomic_path(path) as tmp:
            with torch.no_grad():
                torch.onnx.export(module, tuple(dummy_inputs), str(tmp), input_names=list(input_names),
                                  output_names=list(output_names), dynamic_axes=dynamic_axes,
                                  opset_version=opset, do_constant_folding=True, dynamo=False)
            model = onnx.load(str(tmp))
            declare_output_shapes(model, traced_shapes, dynamic_batch)
            set_metadata(model, {META_PACK: pack, META_OPTIONS: json.dumps(dict(model_options or {}))})
            onnx.checker.check_model(model)
            onnx.save(model, str(tmp))
    finally:
        hook.remove()
    return model
