"""OpenVINO on the CPU as a `common.infer` backend: the same .onnx, read directly.

`OpenVinoBackend(model.onnx, precision="fp32"|"bf16"|"fp16", threads=N)` has the interface
of `common.infer.OnnxRuntimeBackend`. The precision is OpenVINO's INFERENCE_PRECISION_HINT:
set explicitly every time, also for fp32, because on a CPU with native bf16 (AMX) OpenVINO's
own default is bf16, and a user who did not ask for reduced precision must not get it.
Outputs come back in the dtypes the ONNX graph declares (float32 stays float32 whatever the
compute precision; MaskRCNN's int64 labels stay int64).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from common.cli import UserError
from common.runtime.cpu_info import cpu_model
from common.runtime.precision import DEFAULT_PRECISION, check_precision_name, refuse_unless_native

# user-facing name -> OpenVINO element type name, and the OPTIMIZATION_CAPABILITIES entry
# OpenVINO lists for a CPU that can run that type
_OV_TYPES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}
_OV_CAPABILITY = {"fp32": "FP32", "bf16": "BF16", "fp16": "FP16"}
# where the ONNX frontend keeps the model's metadata_props (ATC-only tag, pack name)
_ONNX_METADATA_RT_KEY = "framework"


def openvino_version() -> str:
    import openvino as ov
    return ov.get_version().split("-")[0]


def refuse_unsupported_precision(core, precision: str) -> None:
    """One line when OpenVINO or the CPU cannot run `precision` natively."""
    if precision == "fp32":
        return
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if _OV_CAPABILITY[precision] not in capabilities:
        raise UserError(f"--precision {precision}: OpenVINO {openvino_version()} does not offer "
                        f"{_OV_CAPABILITY[precision]} on this CPU ({cpu_model()}; it lists "
                        f"{', '.join(capabilities)}): use --precision fp32")
    # OpenVINO lists BF16 on any AVX-512 CPU and then simulates it, which its documentation
    # calls a mode for development that "does not guarantee good performance".
    refuse_unless_native(precision, f"OpenVINO {openvino_version()}")


def unconverted_ops(message: str) -> list[str]:
    """Op names from OpenVINO's frontend report ("No conversion rule found for operations: A, B")."""
    found = []
    for line in message.splitlines():
        match = re.search(r"No conversion rule found for operations:\s*(.+)", line)
        if match:
            found += [name.strip() for name in match.group(1).split(",") if name.strip()]
    return found


def _first_reason(message: str) -> str:
    """The first line of an OpenVINO exception that says something (not its source location)."""
    for line in message.splitlines():
        line = line.strip()
        if line and not line.startswith(("Exception from", "Check '")):
            return line
    return message.strip().splitlines()[0] if message.strip() else "no reason given"


def read_onnx(core, model_path: Path):
    try:
        return core.read_model(str(model_path))
    except RuntimeError as err:  # OpenVINO raises RuntimeError for every frontend failure
        ops = unconverted_ops(str(err))
        if ops:
            raise UserError(f"{model_path}: OpenVINO {openvino_version()} cannot read the model: no conversion "
                            f"for op(s) {', '.join(ops)}; run it with --backend onnxruntime") from None
        raise UserError(f"{model_path}: OpenVINO {openvino_version()} cannot read the model "
                        f"({_first_reason(str(err))})") from None


def onnx_metadata(model) -> dict[str, str]:
    """The ONNX metadata_props as OpenVINO's frontend stored them in the model's rt_info."""
    if not model.has_rt_info([_ONNX_METADATA_RT_KEY]):
        return {}
    entries = model.get_rt_info([_ONNX_METADATA_RT_KEY])
    return {key: str(model.get_rt_info([_ONNX_METADATA_RT_KEY, key]).astype(str))
            for key in entries.astype(dict)}


# OpenVINO element type names -> the ONNX names of common.runtime.backend.BIN_DTYPES
_OV_TO_ONNX_TYPE = {"f32": "FLOAT", "f64": "DOUBLE", "f16": "FLOAT16", "bf16": "BFLOAT16", "boolean": "BOOL",
                    "i8": "INT8", "i16": "INT16", "i32": "INT32", "i64": "INT64",
                    "u8": "UINT8", "u16": "UINT16", "u32": "UINT32", "u64": "UINT64", "string": "STRING"}


def _spec(port, kind: str, model_path: Path):
    from common.runtime.backend import TensorSpec, bin_dtype
    partial_shape = port.get_partial_shape()
    shape = None if partial_shape.rank.is_dynamic else tuple(
        int(d.get_length()) if d.is_static else None for d in partial_shape)
    type_name = port.get_element_type().get_type_name()
    dtype = bin_dtype(_OV_TO_ONNX_TYPE.get(type_name, type_name.upper()), kind, port.get_any_name(), model_path)
    return TensorSpec(port.get_any_name(), shape, dtype)


class OpenVinoBackend:
    name = "openvino"

    def __init__(self, model_path: str | Path, precision: str = DEFAULT_PRECISION, threads: int | None = None):
        import openvino as ov
        from common.runtime.onnxruntime_backend import refuse_atc_only

        self.model_path = Path(model_path)
        self.precision = check_precision_name(precision)
        core = ov.Core()
        refuse_unsupported_precision(core, self.precision)
        model = read_onnx(core, self.model_path)
        refuse_atc_only(onnx_metadata(model), self.model_path, engine="OpenVINO")
        self._inputs = [_spec(port, "input", self.model_path) for port in model.inputs]
        # the graph's declared output types, kept because a plugin may hand out narrower ones
        self._output_specs = [_spec(port, "output", self.model_path) for port in model.outputs]
        self._output_dtypes = [spec.dtype for spec in self._output_specs]
        self._outputs = [spec.name for spec in self._output_specs]
        config = {
            "INFERENCE_PRECISION_HINT": _OV_TYPES[self.precision],
            # one stream using every thread: one batch at a time, as common.infer runs it
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        # The batch axis stays dynamic ('batch_size' in the exports): one compiled model serves
        # every --batchsize; the CPU plugin builds and caches kernels per concrete shape.
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except RuntimeError as err:
            ops = unconverted_ops(str(err))
            what = f"no CPU kernel for op(s) {', '.join(ops)}" if ops else _first_reason(str(err))
            raise UserError(f"{self.model_path}: OpenVINO {openvino_version()} cannot compile the model "
                            f"for the CPU ({what})") from None
        self.request = self.compiled.create_infer_request()
        self.version = openvino_version()

    def input_specs(self):
        return self._inputs

    def output_names(self) -> list[str]:
        return self._outputs

    def output_specs(self):
        return list(self._output_specs)

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        inputs = {spec.name: np.ascontiguousarray(feeds[spec.name], dtype=spec.dtype) for spec in self._inputs}
        # share_outputs=False: the request reuses its output buffers on the next call
        results = self.request.infer(inputs, share_inputs=True, share_outputs=False)
        arrays = [results[port] for port in self.compiled.outputs]
        return [array if array.dtype == dtype else array.astype(dtype)
                for array, dtype in zip(arrays, self._output_dtypes)]
