"""The PyTorch reference backend: the exact module that was exported, run eagerly.

Pack and model options are recorded in the ONNX metadata at export, so the module is rebuilt
from the checkpoint with the same options and compared with any backend on the same bins.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import torch

from common.cli import UserError
from common.pipeline.packs import PACK_NAMES, pack_module
from common.runtime.backend import TensorSpec, bin_dtype
from common.runtime.precision import DEFAULT_PRECISION, check_precision_name, refuse_unless_native
from common.runtime.graph import META_OPTIONS, META_PACK, graph_inputs, load_onnx, read_metadata


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend:
    name = "pytorch"

    def __init__(self, onnx_path: str | Path, checkpoint: str | Path, threads: int | None = None,
                 precision: str = DEFAULT_PRECISION, channels_last: bool | None = None):
        self.precision = check_precision_name(precision)
        refuse_unless_native(self.precision, f"PyTorch {torch.__version__}")
        graph_model = load_onnx(onnx_path, load_weights=False)
        metadata = read_metadata(graph_model)
        pack = metadata.get(META_PACK)
        if pack not in PACK_NAMES:
            raise UserError(f"{onnx_path}: no segzoo pack recorded in the model metadata "
                            "(export it with this project's export script)")
        self.model_options = json.loads(metadata.get(META_OPTIONS, "{}"))
        if threads:
            torch.set_num_threads(int(threads))
        model_module = pack_module(pack, "model")
        self.module = model_module.load_pretrained(str(checkpoint), **self.model_options).eval()
        # default: channels_last with reduced precision only (bench/RESULTS.md measures both)
        self.channels_last = self.precision != "fp32" if channels_last is None else channels_last
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._inputs = [_spec_from_value_info(v, "input", onnx_path) for v in graph_inputs(graph_model)]
        self._output_specs = [_spec_from_value_info(v, "output", onnx_path) for v in graph_model.graph.output]
        self._outputs = [spec.name for spec in self._output_specs]
        self.pack = pack
        self.model_path = Path(onnx_path)
        self.version = torch.__version__

    def input_specs(self) -> list[TensorSpec]:
        return self._inputs

    def output_names(self) -> list[str]:
        return self._outputs

    def output_specs(self) -> list[TensorSpec]:
        return list(self._output_specs)

    @torch.no_grad()
    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        tensors = [torch.from_numpy(np.ascontiguousarray(feeds[spec.name])) for spec in self._inputs]
        if self.channels_last:
            tensors = [t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in tensors]
        if self.precision == "fp32":
            outputs = self.module(*tensors)
        else:
            with torch.autocast("cpu", dtype=_AUTOCAST_DTYPES[self.precision]):
                outputs = self.module(*tensors)
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [_as_declared(out) for out in outputs]


def _as_declared(out: torch.Tensor) -> np.ndarray:
    """float32 for reduced-precision float outputs (numpy has no bfloat16); layout made C-order."""
    out = out.detach().cpu()
    if out.is_floating_point() and out.dtype != torch.float32:
        out = out.float()
    return np.ascontiguousarray(out.numpy())


def _spec_from_value_info(value_info, kind: str, model_path) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dims = (tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
            if tensor_type.HasField("shape") else None)
    dtype = bin_dtype(onnx.TensorProto.DataType.Name(tensor_type.elem_type), kind, value_info.name, model_path)
    return TensorSpec(value_info.name, dims, dtype)
