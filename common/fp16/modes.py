"""What ATC's precision modes do to each operator, as CANN documents them, in ONNX terms.

CANN (ATC `--precision_mode`, "参数取值"):
- force_fp16 (the default for inference): an operator that supports both float16 and float32
  runs in float16.
- allow_fp32_to_fp16: matrix operators (Cube unit) use float16; vector operators keep the
  original float32 where their implementation has float32, and fall to float16 otherwise.
- must_keep_origin_dtype: the original dtypes are kept; older CANN adds that a model with an
  operator lacking a float32 implementation (Conv2D on some chips) cannot use this mode, newer
  CANN runs such an operator as a float32 AI CPU operator instead.
- `--keep_dtype FILE` keeps the listed operators at the original precision under the other
  modes; it has no effect with must_keep_origin_dtype.

The Cube unit multiplies float16 operands into a float32 accumulator (Ascend C `mmad` writes
float into L0C); with the output dtype float16 the result is rounded once when it leaves L0C.

Which vector operators of a given chip lack a float32 implementation is in the chip's
`aic-<soc>-ops-info.json`, which is not here: allow_fp32_to_fp16 is emulated as if every vector
operator had one (the most favourable reading; the device can only be worse).
"""
from __future__ import annotations

import numpy as np

FP16_MAX = 65504.0
FP16_MIN_NORMAL = 2.0 ** -14  # below this float16 is subnormal: fewer significant bits
FP16_ROUNDS_TO_ZERO = 2.0 ** -25  # at or below this a value rounds to 0 (half the smallest subnormal)

FORCE_FP16 = "force_fp16"
ALLOW_FP32_TO_FP16 = "allow_fp32_to_fp16"
MUST_KEEP_ORIGIN_DTYPE = "must_keep_origin_dtype"
PRECISION_MODES = (FORCE_FP16, ALLOW_FP32_TO_FP16, MUST_KEEP_ORIGIN_DTYPE)

# aclrtFloatOverflowMode: Atlas A2/A3 default to Inf/NaN (IEEE); Atlas inference products
# (Ascend310P, the chip of these guides), Atlas 200I/500 A2 and Atlas training products
# (Ascend910) support only saturation: an overflow gives the largest float16 value.
INF_NAN = "inf_nan"
SATURATION = "saturation"
OVERFLOW_MODES = (INF_NAN, SATURATION)

# Operators that ATC maps onto the Cube (matrix) unit.
MATRIX_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})

# Float inputs that parameterise an operator rather than carry data (scales, bounds, pad
# value): ATC folds them at compile time, so they are never rounded to float16 here.
PARAMETER_INPUTS = {"Resize": (1, 2), "Upsample": (1,), "Clip": (1, 2), "Pad": (2,)}

# Outputs of these are shape information, known at compile time for the static input shape
# ATC is given: whatever is computed from them alone is folded, never run in float16.
SHAPE_OPS = frozenset({"Shape", "Size"})

# Operators whose float outputs are elements of their float inputs (moved, selected or
# compared): on float16 inputs they produce float16 values exactly, so rounding their outputs
# again would change nothing and only cost time.
VALUE_PRESERVING_OPS = frozenset({
    "Reshape", "Transpose", "Concat", "Slice", "Gather", "GatherElements", "GatherND", "Squeeze",
    "Unsqueeze", "Flatten", "Identity", "Split", "Expand", "Tile", "MaxPool", "GlobalMaxPool",
    "Relu", "Max", "Min", "ReduceMax", "ReduceMin", "TopK", "DepthToSpace", "SpaceToDepth",
    "Neg", "Abs", "Dropout",
})

# ATC's `OpType::` lines name Ascend IR types. Where ATC's ONNX parser maps an ONNX type to an
# Ascend IR type of another name (CANN's table of quantisable layers lists these), both are
# known here; any other ONNX type is assumed to keep its name, which CANN does not guarantee.
ASCEND_IR_TYPES = {
    "Conv": ("Conv2D", "Conv3D"),
    "ConvTranspose": ("Conv2DTranspose",),
    "Gemm": ("MatMulV2",),
    "MatMul": ("BatchMatMulV2", "MatMulV2"),
    "AveragePool": ("AvgPoolV2",),
}


def ascend_ir_types(onnx_op_type: str) -> tuple[str, ...]:
    return ASCEND_IR_TYPES.get(onnx_op_type, (onnx_op_type,))


def runs_in_fp16(op_type: str, mode: str) -> bool:
    """Whether a data-carrying, not-kept operator of this type computes in float16 under `mode`."""
    if mode == FORCE_FP16:
        return True
    if mode == ALLOW_FP32_TO_FP16:
        return op_type in MATRIX_OPS
    if mode == MUST_KEEP_ORIGIN_DTYPE:
        return False
    raise ValueError(f"unknown precision mode {mode!r}")


def round_to_fp16(values: np.ndarray, overflow: str) -> np.ndarray:
    """float32 values as float16 would store them (round to nearest even), back in float32."""
    if overflow == SATURATION:
        values = np.clip(values, -FP16_MAX, FP16_MAX)
    with np.errstate(over="ignore"):  # inf past the range is the point under inf_nan
        return values.astype(np.float16).astype(np.float32)
