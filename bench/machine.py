"""What machine the figures come from, and its measured float32 peak (a large matmul)."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path


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

    flags = _cpu_flags()
    simd = [name for name in ("avx512f", "avx512_bf16", "avx512_vnni", "avx2", "fma") if name in flags]
    return {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "simd": simd,
        "memory_gib": round(_memory_gib(), 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
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
    """float32 GFLOP/s of a size x size matmul in numpy (BLAS), torch and ONNX Runtime; the
    best of the three is the machine's peak here.

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
    return {"matmul_size": size, "threads": threads, "numpy_gflops": numpy_gflops,
            "torch_gflops": torch_gflops, "onnxruntime_gflops": onnxruntime_gflops,
            "peak_gflops": max(numpy_gflops, torch_gflops, onnxruntime_gflops)}


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
