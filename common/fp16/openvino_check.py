"""A second opinion from real float16 execution: OpenVINO's CPU plugin with f16 inference precision.

Where the CPU has float16 arithmetic (AVX512-FP16, reported as FP16 in OpenVINO's
OPTIMIZATION_CAPABILITIES), OpenVINO stores activations in float16 and runs most layers in
it. It is not the NPU: OpenVINO chooses per layer (it keeps some, e.g. Interpolate, in float32;
the runtime model says which) and its accumulation is its own. It answers "does this network
survive float16 storage" independently of the emulation's rewrite.

Isolated in `openvino_f16_outputs` so it can move onto the shared OpenVINO backend
(`common/runtime/openvino_backend.py`, precision="fp16") once that exists.
"""
from __future__ import annotations

import collections
from pathlib import Path
from typing import Sequence

import numpy as np


def openvino_f16_outputs(model_path: str | Path, feeds_per_sample: Sequence[dict], output_names: Sequence[str],
                         threads: int | None = None) -> tuple[list[list[np.ndarray]] | None, dict]:
    """Outputs (per sample, in `output_names` order) of the model compiled for f16, and what was
    compiled; (None, {"skipped": why}) where OpenVINO or float16 is not available."""
    try:
        import openvino as ov
    except ImportError:
        return None, {"skipped": "openvino is not installed (pip install openvino)"}
    core = ov.Core()
    capabilities = list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    if "FP16" not in capabilities:
        return None, {"skipped": f"OpenVINO's CPU plugin offers no FP16 here (capabilities: {capabilities})"}
    model = core.read_model(str(model_path))
    first = feeds_per_sample[0]
    model.reshape({name: list(array.shape) for name, array in first.items()})
    config = {"INFERENCE_PRECISION_HINT": "f16"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    ports = [_port_for(compiled.outputs, name, index) for index, name in enumerate(output_names)]
    outputs = []
    for feeds in feeds_per_sample:
        result = request.infer(feeds)
        outputs.append([np.array(result[port], copy=True) for port in ports])  # the request reuses its buffers
    info = {"openvino": ov.__version__, "device": core.get_property("CPU", "FULL_DEVICE_NAME"),
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "capabilities": capabilities, "layer_precisions": _layer_precisions(compiled)}
    return outputs, info


def _port_for(ports, name: str, index: int):
    for port in ports:
        if name in port.get_names():
            return port
    return ports[index]


def _layer_precisions(compiled) -> dict[str, dict[str, int]]:
    """Per layer type of the compiled (runtime) model, how many layers run in which precision."""
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        if layer in ("Const", "Input", "Output"):
            continue
        precision = info["runtimePrecision"].astype(str) if "runtimePrecision" in info else "unknown"
        counts[layer][precision] += 1
    return {layer: dict(counter) for layer, counter in sorted(counts.items())}
