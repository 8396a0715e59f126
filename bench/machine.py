"""What machine the figures come from: its theoretical peak FLOP/s per precision (cores x
clock x FLOP per cycle of its ISA) and its measured matmul peaks (fp32, bf16, fp16)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from common.runtime.cpu_info import cpuinfo_field


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return 0.0


def load_average() -> tuple[float, float, float]:
    try:
        return tuple(float(v) for v in Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return (0.0, 0.0, 0.0)


def describe_machine() -> dict:
    """CPU, cores, memory, library versions and the load when the run started."""
    import numpy
    import onnx
    import onnxruntime
    import torch
    from common.runtime.cpu_info import inference_isa
    from common.runtime.openvino_backend import openvino_version

    flags = _cpu_flags()
    simd = inference_isa(frozenset(flags))
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "simd": simd,
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "openvino": openvino_version(),
        "theoretical_peak": theoretical_peaks(),
        "onnx": onnx.__version__,
        "numpy": numpy.__version__,
        "load_average_at_start": load_average(),
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
    }


def _best_gflops(run, flops: float, repeats: int) -> float:
    run()  # warm-up: thread pools, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def _onnxruntime_matmul(a, b, threads: int):
    """A one-node ONNX MatMul on ONNX Runtime, B a constant as a layer's weights are (ONNX
    Runtime packs constant weights once); its MLAS kernels use AVX-512 where a BLAS may not."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    from common.runtime.onnxruntime_backend import session_options

    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "matmul",
                              [helper.make_tensor_value_info("a", TensorProto.FLOAT, list(a.shape))],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [a.shape[0], b.shape[1]])],
                              initializer=[numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), session_options(threads),
                                   providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"a": a})


def measure_peak(threads: int, size: int = 4096, repeats: int = 5) -> dict:
    """float32 GFLOP/s of a size x size matmul in numpy (BLAS), torch, ONNX Runtime and
    OpenVINO; the best of them is the machine's measured peak here.

    The best of several runs, not the mean: the peak is what the hardware can do, and on a
    shared machine a slower run only measures the neighbours. Three libraries because their
    kernels differ: a BLAS built for an older instruction set would understate the peak.
    """
    import numpy as np
    import torch

    flops = 2.0 * size ** 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    numpy_gflops = _best_gflops(lambda: a @ b, flops, repeats)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    with torch.no_grad():
        torch_gflops = _best_gflops(lambda: torch.mm(ta, tb), flops, repeats)
    torch.set_num_threads(previous)
    onnxruntime_gflops = _best_gflops(_onnxruntime_matmul(a, b, threads), flops, repeats)
    openvino_gflops = _best_gflops(_openvino_matmul(a, b, threads, "f32"), flops, repeats)
    return {"matmul_size": size, "threads": threads, "numpy_gflops": numpy_gflops,
            "torch_gflops": torch_gflops, "onnxruntime_gflops": onnxruntime_gflops,
            "openvino_gflops": openvino_gflops,
            "peak_gflops": max(numpy_gflops, torch_gflops, onnxruntime_gflops, openvino_gflops)}


def measure_disk_write(folder, total_mib: int = 1536, file_mib: int = 24) -> dict:
    """Sustained MB/s of writing files of `file_mib` into `folder` (the work disk), as a
    preprocess writes its bins: through the page cache, which Linux lets fill only up to its
    dirty limit before each writer waits for the disk. `total_mib` is well past that limit
    here, so the figure is what hundreds of bins get, not the first few."""
    import numpy as np

    folder = Path(folder) / "disk_write_probe"
    folder.mkdir(parents=True, exist_ok=True)
    block = np.ones(file_mib * 2 ** 20 // 4, dtype=np.float32)
    files = total_mib // file_mib
    start = time.perf_counter()
    try:
        for index in range(files):
            block.tofile(folder / f"{index}.bin")
        seconds = time.perf_counter() - start
    finally:
        for path in folder.glob("*.bin"):
            path.unlink()
        folder.rmdir()
    return {"total_mib": files * file_mib, "file_mib": file_mib, "seconds": seconds,
            "mb_per_s": files * file_mib * 2 ** 20 / 1e6 / seconds}


# ---- theoretical peak: cores x clock x FLOP per cycle of the ISA ----------------------------

def cpu_clock_mhz() -> tuple[float | None, str]:
    """The clock the peak is computed at, and where it comes from. lscpu's "CPU max MHz" (the
    turbo limit) where the kernel knows it; a KVM guest usually has no cpufreq, and then only
    /proc/cpuinfo's "cpu MHz", which there is the nominal (TSC) clock the hypervisor reports,
    not what the cores run at under turbo."""
    import subprocess
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in text.splitlines():
            if line.startswith("CPU max MHz:"):
                return float(line.split(":", 1)[1]), "lscpu CPU max MHz (turbo limit)"
    except (OSError, subprocess.SubprocessError, ValueError):
        pass
    value = cpuinfo_field("cpu MHz")
    if value:
        return float(value), ("/proc/cpuinfo cpu MHz (the nominal clock a VM reports; the turbo clock is "
                              "unknown, so the real peak can be higher)")
    return None, "unknown"


def flop_per_cycle(flags: set[str], vendor: str, family: int) -> dict[str, tuple[float, str]]:
    """FLOP per cycle per core for fp32, bf16 and fp16 matmul/conv kernels, with the reasoning.

    An FMA is 2 FLOP. fp32: a 512-bit FMA does 16 lanes; Intel Xeon server cores (Skylake-SP
    and later Gold/Platinum, Sapphire Rapids) have two 512-bit FMA units (ports 0+1 and 5), so
    2 x 16 x 2 = 64. AMD Zen 4 (family 25) runs AVX-512 on two 256-bit FMA pipes, 32; Zen 5
    (family 26) has 512-bit pipes, 64. AVX2 only: two 256-bit FMAs, 32.
    bf16: AMX (TDPBF16PS multiplies a 16x32 by a 32x16 bf16 tile, 8192 FMA, one issue every 16
    cycles: 512 FMA = 1024 FLOP per cycle, Intel's "1024 BF16 operations per cycle" per core);
    else AVX512_BF16 (VDPBF16PS: 32 bf16 products summed into 16 fp32 lanes, 64 FLOP per
    512-bit instruction, on as many pipes as fp32 FMA). fp16: AMX-FP16 as AMX bf16; else
    AVX512-FP16 (32 fp16 lanes per FMA, 64 FLOP per instruction per FMA unit)."""
    amd = vendor == "AuthenticAMD"
    if "avx512f" in flags:
        if amd and family < 26:
            fp32, why = 32.0, "AVX-512 on two 256-bit FMA pipes (AMD Zen 4): 2 x 8 lanes x 2"
        else:
            fp32, why = 64.0, "two 512-bit FMA units per core assumed (Xeon Gold/Platinum class, Zen 5): 2 x 16 lanes x 2"
    elif "avx2" in flags and "fma" in flags:
        fp32, why = 32.0, "AVX2: two 256-bit FMA units, 2 x 8 lanes x 2"
    else:
        fp32, why = 8.0, "SSE: no FMA assumed"
    units = fp32 / 32.0  # 512-bit-FMA equivalents per core
    peaks = {"fp32": (fp32, why)}
    if "amx_bf16" in flags:
        peaks["bf16"] = (1024.0, "AMX TMUL: 16x16x32 bf16 FMA per TDPBF16PS, one per 16 cycles = 512 FMA/cycle")
    elif "avx512_bf16" in flags:
        peaks["bf16"] = (64.0 * units, f"AVX512_BF16 VDPBF16PS: 64 FLOP per instruction x {units:g} unit(s)")
    if "amx_fp16" in flags:
        peaks["fp16"] = (1024.0, "AMX-FP16 TMUL: as AMX bf16")
    elif "avx512_fp16" in flags:
        peaks["fp16"] = (64.0 * units, f"AVX512-FP16: 32 fp16 lanes x 2 per FMA x {units:g} unit(s)")
    return peaks


def theoretical_peaks() -> dict:
    """Peak GFLOP/s per precision = cores x clock x FLOP/cycle. Every logical CPU is counted as
    a core with its own FMA units: lscpu shows one thread per core on this VM, but a hypervisor
    may hand out two hyperthreads of one physical core; the measured matmul tells which."""
    flags = _cpu_flags()
    cores = os.cpu_count() or 1
    mhz, clock_source = cpu_clock_mhz()
    vendor = cpuinfo_field("vendor_id") or "unknown"
    family = int(cpuinfo_field("cpu family") or 0)
    per_cycle = flop_per_cycle(flags, vendor, family)
    result = {"cores": cores, "clock_mhz": mhz, "clock_source": clock_source, "vendor": vendor, "family": family,
              "precisions": {}}
    for precision, (flop, why) in per_cycle.items():
        result["precisions"][precision] = {"flop_per_cycle_per_core": flop, "why": why,
                                           "gflops": cores * (mhz or 0) / 1000 * flop}
    return result


# ---- measured matmul peaks in reduced precision --------------------------------------------

def _openvino_matmul(a, b, threads: int, precision: str):
    """One MatMul with constant B on OpenVINO's CPU plugin at `precision` (f32, bf16, f16)."""
    import openvino as ov
    import openvino.opset13 as opset

    parameter = opset.parameter(list(a.shape), ov.Type.f32, name="a")
    model = ov.Model([opset.matmul(parameter, opset.constant(b), False, False)], [parameter])
    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                      "PERFORMANCE_HINT": "LATENCY",
                                                      "INFERENCE_NUM_THREADS": threads})
    request = compiled.create_infer_request()
    return lambda: request.infer({0: a}, share_inputs=True, share_outputs=True)


def measure_reduced_peaks(threads: int, size: int = 4096, repeats: int = 5) -> dict:
    """bf16 and fp16 GFLOP/s of a size x size matmul in torch (oneDNN) and OpenVINO, where the
    CPU computes that type natively (emulated types would only measure the emulation)."""
    import numpy as np
    import torch
    from common.runtime.precision import native_support

    flops = 2.0 * size ** 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    result = {"matmul_size": size, "threads": threads}
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for precision, torch_type, ov_type in (("bf16", torch.bfloat16, "bf16"), ("fp16", torch.float16, "f16")):
            if not native_support(precision):
                continue
            ta, tb = torch.from_numpy(a).to(torch_type), torch.from_numpy(b).to(torch_type)
            with torch.no_grad():
                torch_gflops = _best_gflops(lambda: torch.mm(ta, tb), flops, repeats)
            ov_gflops = _best_gflops(_openvino_matmul(a, b, threads, ov_type), flops, repeats)
            result[precision] = {"torch_gflops": torch_gflops, "openvino_gflops": ov_gflops,
                                 "peak_gflops": max(torch_gflops, ov_gflops)}
    finally:
        torch.set_num_threads(previous)
    return result
