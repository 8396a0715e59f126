"""ATC (ONNX -> Ascend .om) command lines as the guides write them by hand: framework 5, NCHW,
input shape, soc version read from `npu-smi info`, optional out nodes; and the input-shape
check against the model (the command is `python3 -m common.atc`).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from typing import Sequence

from common.cli import UserError

ONNX_FRAMEWORK = 5
LOG_LEVELS = ("debug", "info", "warning", "error", "null")
# ATC --precision_mode values (CANN ATC reference); not given, ATC uses force_fp16 for inference.
PRECISION_MODES = ("force_fp16", "force_fp32", "cube_fp16in_fp32out", "allow_fp32_to_fp16",
                   "must_keep_origin_dtype", "allow_mix_precision", "allow_mix_precision_fp16",
                   "allow_mix_precision_bf16", "allow_fp32_to_bf16")


def soc_version_from_npu_smi(text: str) -> str | None:
    """`Ascend` + the Name column of the first chip row of an `npu-smi info` table.

    Chip rows look like `| 0     310P3     | OK   | ...`: an id, then the name, in the first
    cell. Names already starting with `Ascend` are not prefixed twice.
    """
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not cells:
            continue
        match = re.fullmatch(r"\d+\s+(\S+)", cells[0])
        if match and len(cells) >= 2 and re.match(r"(OK|Warning|Alarm|Critical|UNKNOWN)\b", cells[1]):
            name = match.group(1)
            return name if name.lower().startswith("ascend") else f"Ascend{name}"
    return None


def detect_soc_version() -> str | None:
    if shutil.which("npu-smi") is None:
        return None
    try:
        text = subprocess.run(["npu-smi", "info"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return soc_version_from_npu_smi(text)


def format_input_shape(shapes: dict[str, Sequence[int]]) -> str:
    return ";".join(f"{name}:{','.join(str(d) for d in dims)}" for name, dims in shapes.items())


def atc_command(model: str, output: str, input_shapes: dict[str, Sequence[int]], soc_version: str,
                out_nodes: Sequence[str] = (), log: str = "error", input_format: str = "NCHW",
                extra: Sequence[str] = (), precision_mode: str | None = None,
                keep_dtype: str | None = None) -> list[str]:
    """The argument list of one ATC conversion (output is a prefix: ATC appends `.om`)."""
    if log not in LOG_LEVELS:
        raise UserError(f"--log must be one of {', '.join(LOG_LEVELS)}")
    command = ["atc", f"--framework={ONNX_FRAMEWORK}", f"--model={model}", f"--output={output}",
               f"--input_format={input_format}", f"--input_shape={format_input_shape(input_shapes)}",
               f"--log={log}", f"--soc_version={soc_version}"]
    if out_nodes:
        command.append(f"--out_nodes={';'.join(out_nodes)}")
    if precision_mode:
        command.append(f"--precision_mode={precision_mode}")
    if keep_dtype:
        command.append(f"--keep_dtype={keep_dtype}")
    return command + list(extra)


def parse_shape_arg(text: str) -> dict[str, list[int]]:
    """`"input:1,3,500,500;other:1,4"` -> {"input": [1,3,500,500], "other": [1,4]}."""
    shapes = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, dims = part.rpartition(":")
        try:
            shapes[name] = [int(d) for d in dims.split(",")]
        except ValueError:
            raise UserError(f"--input_shape: '{part}' is not name:d0,d1,...") from None
        if not name:
            raise UserError(f"--input_shape: '{part}' has no input name")
    return shapes


def check_shapes_against_model(model_path: str, shapes: dict[str, list[int]]) -> None:
    """--input_shape must name the model's inputs with their rank and fixed sizes (ATC's own
    error for a wrong name comes after minutes of parsing and is hard to read)."""
    from common.runtime.graph import graph_inputs, load_onnx

    inputs = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
              for v in graph_inputs(load_onnx(model_path, load_weights=False))}
    for name, dims in shapes.items():
        if name not in inputs:
            raise UserError(f"{model_path}: --input_shape names '{name}', the model's inputs are "
                            f"{', '.join(inputs) or 'none'}")
        want = inputs[name]
        if len(dims) != len(want) or any(w is not None and w != d for w, d in zip(want, dims)):
            shown = ",".join("?" if w is None else str(w) for w in want)
            raise UserError(f"{model_path}: --input_shape gives '{name}' {','.join(map(str, dims))}, "
                            f"the model's input is {shown}")


def check_keep_dtype(model_path: str, keep_dtype: str, precision_mode: str | None) -> None:
    """The file must exist and each line name a node or an operator type of the model; CANN
    ignores it under must_keep_origin_dtype, which is a mistake worth a line."""
    from common.fp16.keep_dtype import resolve_keep_dtype
    from common.runtime.graph import load_onnx

    if precision_mode == "must_keep_origin_dtype":
        raise UserError(f"{keep_dtype}: --keep_dtype has no effect with --precision_mode must_keep_origin_dtype")
    graph = load_onnx(model_path, load_weights=False).graph
    resolve_keep_dtype(keep_dtype, graph, model_path)
