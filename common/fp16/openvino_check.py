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
from common.cli import UserError


def openvino_f16_outputs(model_path: str | Path, feeds_per_sample: Sequence[dict], output_names: Sequence[str],
                         threads: int | None = None) -> tuple[list[list[np.ndarray]] | None, dict]:
    """Outputs (per sample, in `output_names` order) of the model run by the OpenVINO backend at
    fp16, and what ran; (None, {"skipped": why}) where OpenVINO or float16 is not available."""
    try:
        from common.runtime.openvino_backend import OpenVinoBackend
        backend = OpenVinoBackend(model_path, precision="fp16", threads=threads)
    except ImportError:
        return None, {"skipped": "openvino is not installed (pip install openvino)"}
    except UserError as refusal:  # the CPU or the engine cannot run f16: no second opinion, say why
        return None, {"skipped": str(refusal)}
    order = [backend.output_names().index(name) for name in output_names]
    outputs = []
    for feeds in feeds_per_sample:
        produced = backend.run(feeds)
        outputs.append([produced[index] for index in order])
    compiled = backend.compiled
    info = {"openvino": backend.version, "device": compiled.get_property("EXECUTION_DEVICES"),
            "inference_precision": compiled.get_property("INFERENCE_PRECISION_HINT").to_string(),
            "layer_precisions": _layer_precisions(compiled)}
    return outputs, info


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
