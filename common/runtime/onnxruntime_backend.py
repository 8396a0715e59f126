"""The ONNX Runtime backend (CPU, or CUDA when present): the embedded default."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common.cli import UserError
from common.runtime.backend import TensorSpec, bin_dtype
from common.runtime.graph import META_ATC_ONLY
from common.runtime.precision import DEFAULT_PRECISION, check_precision_name



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
        self._inputs = [_spec(arg, "input", self.model_path) for arg in self.session.get_inputs()]
        self._outputs = [_spec(arg, "output", self.model_path) for arg in self.session.get_outputs()]

    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs)

    def output_names(self) -> list[str]:
        return [spec.name for spec in self._outputs]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


def _spec(arg, kind: str, model_path: Path) -> TensorSpec:
    """A TensorSpec from ONNX Runtime's NodeArg (type 'tensor(int16)', shape with names or None
    for the dynamic axes)."""
    if not (arg.type.startswith("tensor(") and arg.type.endswith(")")):
        raise UserError(f"{model_path}: {kind} '{arg.name}' is a {arg.type}, not a tensor: raw bins hold tensors only")
    shape = tuple(d if isinstance(d, int) else None for d in arg.shape or ())
    if kind == "output" and not shape:
        shape = None  # ONNX Runtime reports [] for a scalar and for an output it has no shape of
    return TensorSpec(arg.name, shape, bin_dtype(arg.type[len("tensor("):-1].upper(), kind, arg.name, model_path))
