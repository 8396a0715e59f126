"""What a backend is: tensor specs and the three calls the runner makes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from common.cli import UserError
from common.runtime.precision import DEFAULT_PRECISION


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple | None  # ints, or None for a dynamic axis; None for an output of unknown rank
    dtype: np.dtype

    @property
    def batch_is_dynamic(self) -> bool:
        return not isinstance(self.shape[0], int)

    def sample_shape(self) -> tuple[int, ...]:
        rest = self.shape[1:]
        if not all(isinstance(d, int) for d in rest):
            raise UserError(f"model input '{self.name}' has dynamic axes {self.shape}: "
                            "raw bins need a fixed sample shape")
        return tuple(rest)

    def sample_shape_or_none(self) -> tuple[int, ...] | None:
        """The per-sample shape when every axis but the batch is fixed (outputs may not be)."""
        if not self.shape:
            return None
        rest = self.shape[1:]
        return tuple(rest) if all(isinstance(d, int) for d in rest) else None


# ONNX element types (TensorProto.DataType names) that a raw bin can hold, and their numpy
# dtype: every type ONNX Runtime's CPU provider takes as a model input except STRING (no
# fixed size) and BFLOAT16 and the FLOAT8/INT4 types (numpy has no such dtype, so neither the
# bins nor the outputs could be read back as numbers). COMPLEX64/128 ONNX Runtime cannot load.
BIN_DTYPES = {
    "FLOAT": "float32", "DOUBLE": "float64", "FLOAT16": "float16",
    "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
    "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
    "BOOL": "bool",
}


def bin_dtype(onnx_type: str, kind: str, tensor: str, model: str | Path) -> np.dtype:
    """The numpy dtype of a model input or output from its ONNX element type name (FLOAT,
    INT16, ...); a type raw bins cannot hold is a one-line error naming the tensor."""
    if onnx_type not in BIN_DTYPES:
        raise UserError(f"{model}: {kind} '{tensor}' is of type {onnx_type.lower()}, which a raw bin cannot hold "
                        f"(numeric types only: {', '.join(t.lower() for t in BIN_DTYPES)})")
    return np.dtype(BIN_DTYPES[onnx_type])


class Backend(Protocol):
    name: str

    def input_specs(self) -> list[TensorSpec]: ...

    def output_names(self) -> list[str]: ...

    # Optional: the outputs' declared shapes and dtypes (the runner checks --resume files and
    # refuses scalar outputs with them when the backend has it).
    # def output_specs(self) -> list[TensorSpec]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


BACKENDS = ("onnxruntime", "openvino")


def make_backend(model_path: str | Path, backend: str = "onnxruntime", precision: str = DEFAULT_PRECISION,
                 threads: int | None = None, device: str = "cpu") -> Backend:
    """The backend `--backend` names, at `--precision` (refused in one line where it cannot run)."""
    if backend == "openvino":
        if device == "cuda":
            raise UserError("--device cuda: the OpenVINO backend runs on the CPU; use --backend onnxruntime")
        from common.runtime.openvino_backend import OpenVinoBackend  # only when asked: a large import
        return OpenVinoBackend(model_path, precision=precision, threads=threads)
    if backend != "onnxruntime":
        raise UserError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    return OnnxRuntimeBackend(model_path, threads=threads, device=device, precision=precision)
