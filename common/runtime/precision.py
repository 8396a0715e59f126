"""The inference precisions a user can ask for, and whether this CPU computes them natively.

fp32 is the default and runs everywhere. bf16 and fp16 are only offered where the CPU has
instructions for them: without those an engine either refuses or emulates the type in
fp32 code, which is slower than fp32 itself and costs accuracy for nothing."""
from __future__ import annotations

from common.runtime.cpu_info import cpu_flags, cpu_model

PRECISIONS = ("fp32", "bf16", "fp16")
DEFAULT_PRECISION = "fp32"

# Any one group of flags (all of its members) is enough. bf16: the AVX512_BF16 dot product
# (Cooper Lake, Zen 4 and later) or the AMX bf16 tiles (Sapphire Rapids and later). fp16: the
# oneDNN ISAs OpenVINO's CPU plugin checks for f16 (utils/precision_support.cpp:
# avx512_core_fp16, i.e. AVX512-FP16; or avx2_vnni_2, i.e. AVX-NE-CONVERT with AVX-VNNI-INT8),
# plus AMX-FP16 (Granite Rapids), which comes with AVX512-FP16.
NATIVE_FLAGS: dict[str, tuple[tuple[str, ...], ...]] = {
    "bf16": (("avx512_bf16",), ("amx_bf16",)),
    "fp16": (("avx512_fp16",), ("amx_fp16",), ("avx_ne_convert", "avx_vnni_int8")),
}


def native_support(precision: str, flags: frozenset[str] | None = None) -> bool:
    if precision == "fp32":
        return True
    flags = cpu_flags() if flags is None else flags
    return any(all(flag in flags for flag in group) for group in NATIVE_FLAGS[precision])


def needed_flags_text(precision: str) -> str:
    return " or ".join("+".join(group) for group in NATIVE_FLAGS[precision])


def check_precision_name(precision: str) -> str:
    from common.cli import UserError
    if precision not in PRECISIONS:
        raise UserError(f"--precision {precision}: expected one of {', '.join(PRECISIONS)}")
    return precision


def refuse_unless_native(precision: str, engine: str, flags: frozenset[str] | None = None) -> None:
    """One line when the CPU has no instructions for `precision` (the engine would emulate it)."""
    from common.cli import UserError
    if not native_support(precision, flags):
        raise UserError(f"--precision {precision}: this CPU ({cpu_model()}) has no {needed_flags_text(precision)}; "
                        f"{engine} would emulate {precision} in fp32 code, slower than fp32: use --precision fp32")
