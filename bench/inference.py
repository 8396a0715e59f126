"""ONNX Runtime vs PyTorch eager on the same random batch, same threads, side by side.

Both backends are the ones users run (`common.infer.OnnxRuntimeBackend`,
`common.torch_infer.TorchBackend`); timed runs alternate between them so that a change in the
machine's load during the run hits both alike.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.eval.parity import compare_arrays


@dataclass
class RunPlan:
    max_runs: int = 3          # timed runs per backend and batch size, at most
    budget_s: float = 30.0     # timed seconds per backend and batch size, about
    long_run_s: float = 20.0   # a batch predicted slower than this skips its own warm-up
    total_s: float = 200.0     # a larger batch runs only if its predicted time still fits


def _proc_kib(path: str, field: str) -> int:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def memory_mib() -> dict[str, float]:
    """This process's resident set now and at its peak, and what the machine has available."""
    return {"rss": _proc_kib("/proc/self/status", "VmRSS") / 1024,
            "peak": _proc_kib("/proc/self/status", "VmHWM") / 1024,
            "available": _proc_kib("/proc/meminfo", "MemAvailable") / 1024}


def random_feeds(specs, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Image-like float inputs (about unit variance, as normalised images) of batch `batch`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in specs:
        shape = (batch,) + tuple(spec.sample_shape())
        if np.issubdtype(spec.dtype, np.floating):
            feeds[spec.name] = rng.standard_normal(shape, dtype=np.float32).astype(spec.dtype)
        else:
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
    return feeds


def _timed(backend, feeds) -> tuple[float, list[np.ndarray]]:
    start = time.perf_counter()
    outputs = backend.run(feeds)
    return time.perf_counter() - start, outputs


def _stats(seconds: list[float], batch: int) -> dict:
    values = np.asarray(seconds)
    median = float(np.median(values))
    return {"runs": len(seconds), "latency_ms_median": 1000 * median, "latency_ms_min": 1000 * float(values.min()),
            "latency_ms_max": 1000 * float(values.max()), "img_per_s": batch / median,
            "img_per_s_best": batch / float(values.min()), "seconds": [float(s) for s in seconds]}


def compare_backends(onnx_backend, torch_backend, batch_sizes, plan: RunPlan, progress=print) -> list[dict]:
    """One row per batch size: both backends' stats, the ratio, and the outputs' parity."""
    rows = []
    seconds_per_image: dict[str, float] = {}
    started = time.perf_counter()
    base_mib = memory_mib()["rss"]
    working_mib_per_image = 0.0
    first = onnx_backend.input_specs()[0]
    if not first.batch_is_dynamic:  # a static-batch export runs at its own batch only
        batch_sizes = [b for b in batch_sizes if b == first.shape[0]] or [first.shape[0]]
    for batch in batch_sizes:
        if seconds_per_image:
            # one timed run per backend at least, no warm-up: the least this batch can cost
            predicted = batch * sum(seconds_per_image.values())
            elapsed = time.perf_counter() - started
            if elapsed + predicted > plan.total_s:
                rows.append({"batch": batch, "skipped": f"predicted {predicted:.0f} s on top of {elapsed:.0f} s "
                                                        f"exceeds the {plan.total_s:.0f} s inference budget"})
                progress(f"  bs{batch}: skipped ({rows[-1]['skipped']})")
                continue
            # working memory grows with the batch; skip rather than be killed by the OOM killer
            memory = memory_mib()
            needed = batch * working_mib_per_image - (memory["peak"] - base_mib)
            if needed > 0.8 * memory["available"]:
                rows.append({"batch": batch, "skipped": f"needs about {needed / 1024:.1f} GiB more memory, "
                                                        f"{memory['available'] / 1024:.1f} GiB available"})
                progress(f"  bs{batch}: skipped ({rows[-1]['skipped']})")
                continue
        feeds = random_feeds(onnx_backend.input_specs(), batch)
        backends = {"onnxruntime": onnx_backend, "pytorch": torch_backend}
        times: dict[str, list[float]] = {name: [] for name in backends}
        outputs: dict[str, list[np.ndarray]] = {}
        predicted = {}
        for name, backend in backends.items():
            guess = seconds_per_image.get(name, 0.0) * batch
            if guess and guess > plan.long_run_s:
                # the session is warm from the smaller batch; the first run is timed
                predicted[name] = guess
                continue
            warm, outputs[name] = _timed(backend, feeds)
            predicted[name] = warm
            progress(f"  {name} bs{batch}: warm-up {warm:.2f} s")
        runs = max(1, min(plan.max_runs, int(plan.budget_s / max(max(predicted.values()), 1e-6))))
        for _ in range(runs):
            for name, backend in backends.items():
                seconds, result = _timed(backend, feeds)
                times[name].append(seconds)
                outputs.setdefault(name, result)
        for name in backends:
            seconds_per_image[name] = min(times[name]) / batch
        working_mib_per_image = max(working_mib_per_image, (memory_mib()["peak"] - base_mib) / batch)
        stats = {name: _stats(times[name], batch) for name in backends}
        parity = [compare_arrays(ref.astype(np.float64), out.astype(np.float64)).to_dict()
                  for ref, out in zip(outputs["pytorch"], outputs["onnxruntime"])
                  if ref.shape == out.shape]
        ratio = stats["onnxruntime"]["img_per_s"] / stats["pytorch"]["img_per_s"]
        rows.append({"batch": batch, **stats, "ratio_ort_over_torch": ratio,
                     "process_peak_rss_mib": memory_mib()["peak"],
                     "parity": parity, "shapes_differ": any(r.shape != o.shape for r, o in
                                                            zip(outputs["pytorch"], outputs["onnxruntime"]))})
        progress(f"  bs{batch}: onnxruntime {stats['onnxruntime']['img_per_s']:.3f} img/s, "
                 f"pytorch {stats['pytorch']['img_per_s']:.3f} img/s, ratio {ratio:.2f} ({runs} runs)")
    return rows
