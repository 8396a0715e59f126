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
    shape: tuple  # ints, or None for a dynamic axis
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


class Backend(Protocol):
    name: str

    def input_specs(self) -> list[TensorSpec]: ...

    def output_names(self) -> list[str]: ...

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
