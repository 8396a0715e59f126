"""What CPU this is and which of its instruction sets matter for inference speed.

Figures and refusals name the CPU and its ISA because the machine kind changes between
sessions (an Intel Xeon with AMX one day, an AMD EPYC the next)."""
from __future__ import annotations

import functools
import platform
from pathlib import Path

# The flags (as /proc/cpuinfo spells them) that decide which kernels the engines can use:
# fp32 FMA width, the bf16/fp16 dot-product instructions and the AMX tile units.
INFERENCE_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                   "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "avx_vnni", "avx_ne_convert",
                   "avx_vnni_int8")


def cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    return cpuinfo_field("model name") or platform.processor() or "unknown CPU"


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    return frozenset((cpuinfo_field("flags") or "").split())


def inference_isa(flags: frozenset[str] | None = None) -> list[str]:
    """The inference-relevant flags this CPU has, in INFERENCE_FLAGS order."""
    flags = cpu_flags() if flags is None else flags
    return [name for name in INFERENCE_FLAGS if name in flags]


