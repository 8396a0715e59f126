"""The PyTorch reference run, with the backend's file contract.

`python3 -m common.torch_infer --model X.onnx --checkpoint W --input DIR --output OUT
--output_dirname torch` rebuilds the exact module that was exported (pack and model options
are recorded in the ONNX metadata), runs it eagerly on the same bins and writes
`<stem>_<k>.bin` like `common.infer`. The pack's postprocess then scores both folders, which
is how the summary compares "metric (PyTorch)" with "metric (backend)".

`--precision bf16` (or fp16) runs the module under `torch.autocast("cpu", dtype=...)` with
weights and inputs in channels_last memory format (oneDNN's blocked kernels want NHWC; see
bench/RESULTS.md for what it buys), where the CPU computes that type natively; outputs are
returned as float32. The reference of every comparison stays fp32.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch

from common.cli import UserError, script_entry
from common.infer import TensorSpec, print_summary, run_inference
from common.onnx_tools import META_OPTIONS, META_PACK, load_onnx, read_metadata
from common.packs import PACKS, load_pack_module
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS, check_precision_name, refuse_unless_native

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
        if pack not in PACKS:
            raise UserError(f"{onnx_path}: no segzoo pack recorded in the model metadata "
                            "(export it with this project's export script)")
        self.model_options = json.loads(metadata.get(META_OPTIONS, "{}"))
        if threads:
            torch.set_num_threads(int(threads))
        model_module = load_pack_module(pack, "model")
        self.module = model_module.load_pretrained(str(checkpoint), **self.model_options).eval()
        # default: channels_last with reduced precision only (bench/RESULTS.md measures both)
        self.channels_last = self.precision != "fp32" if channels_last is None else channels_last
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)
        self._inputs = [_spec_from_value_info(v) for v in _graph_inputs(graph_model)]
        self._outputs = [o.name for o in graph_model.graph.output]
        self.pack = pack
        self.model_path = Path(onnx_path)
        self.version = torch.__version__

    def input_specs(self) -> list[TensorSpec]:
        return self._inputs

    def output_names(self) -> list[str]:
        return self._outputs

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


def _graph_inputs(model: onnx.ModelProto) -> list:
    initializers = {init.name for init in model.graph.initializer}
    return [v for v in model.graph.input if v.name not in initializers]


def _spec_from_value_info(value_info) -> TensorSpec:
    tensor_type = value_info.type.tensor_type
    dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
    return TensorSpec(value_info.name, dims, dtype)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.torch_infer", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the exported .onnx (its metadata names the pack)")
    parser.add_argument("--checkpoint", required=True, help="the original checkpoint file")
    parser.add_argument("--input", required=True, help="folder(s) of input bins, comma-separated")
    parser.add_argument("--output", required=True)
    parser.add_argument("--output_dirname", "--output-dirname", default="pytorch")
    parser.add_argument("--batchsize", type=int, default=None)
    parser.add_argument("--loop", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="fp32 (default, the reference) or bf16/fp16 autocast where the CPU runs it natively")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--warmup_count", type=int, default=0,
                        help="untimed runs first (default 0: eager PyTorch needs no graph build, and at "
                             "full size one extra run costs a minute)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    backend = TorchBackend(args.model, args.checkpoint, threads=args.threads, precision=args.precision)
    summary = run_inference(backend, args.input, args.output, args.output_dirname, args.batchsize,
                            "BIN", args.loop, args.warmup_count, args.resume, argv=sys.argv)
    print_summary(summary)
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
