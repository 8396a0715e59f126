"""The ONNX Runtime backend (CPU, or CUDA when present): the embedded default."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.cli import UserError
from common.runtime.backend import TensorSpec
from common.runtime.graph import META_ATC_ONLY
from common.runtime.precision import DEFAULT_PRECISION, check_precision_name

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def refuse_atc_only(metadata: dict, model_path: Path, engine: str = "ONNX Runtime") -> None:
    if META_ATC_ONLY in metadata:
        raise UserError(f"{model_path}: this graph is edited for ATC only and gives wrong results on "
                        f"{engine} ({metadata[META_ATC_ONLY]}); run the unedited or default-fixed .onnx")


def session_options(threads: int | None = None):
    """The ONNX Runtime settings of every run (bench/tuning.py varies them one at a time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    # Idle worker threads block instead of busy-spinning (ORT's default is to spin). On a
    # machine shared with other jobs (preprocess workers, other users) spinning threads take
    # the cores the working ones need: bench/RESULTS.md, tuning table. The ops of these
    # networks last milliseconds, so the wake-up cost is lost in the noise on an idle machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def refuse_reduced_precision_on_ort(precision: str) -> None:
    """ONNX Runtime's CPU provider has no reduced-precision path for these graphs: bf16 is not
    a Conv type in ONNX (the session refuses the graph), and an fp16 graph has its Convs cast
    back to fp32 on x86 (CastFloat16Transformer), so fp16 costs accuracy and gains nothing."""
    if check_precision_name(precision) != "fp32":
        raise UserError(f"--precision {precision}: ONNX Runtime's CPU provider runs these graphs in fp32 only "
                        f"(no bf16 Conv, fp16 Convs are cast back to fp32); use --backend openvino "
                        f"--precision {precision}")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, model_path: str | Path, threads: int | None = None, device: str = "cpu",
                 precision: str = DEFAULT_PRECISION):
        import onnxruntime as ort

        refuse_reduced_precision_on_ort(precision)
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{model_path}: ONNX Runtime cannot load the model ({first})") from None
        self.model_path = Path(model_path)
        self.providers = self.session.get_providers()
        self.version = ort.__version__
        refuse_atc_only(self.session.get_modelmeta().custom_metadata_map, self.model_path)

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                           np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()]

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)
