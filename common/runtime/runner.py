"""The offline inference run with ais_bench's file contract: outputs, timings, summary JSON.

`<output>/<output_dirname>/<stem>_<k>.bin` per sample and output, and
`<output>/<output_dirname>_summary.json` beside that folder. The inputs of a multi-input
model are paired by file stem, not by sorted position; every bin's size is checked against
the model input before any work starts; `--resume` skips samples whose outputs all exist
(files are renamed into place only when complete, so an existing file is a finished one).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from common.cli import UserError
from common.files.atomic import atomic_path, remove_stale_temps, write_json_atomic
from common.files.bins import bin_stem
from common.runtime.backend import Backend, TensorSpec
from common.runtime.cpu_info import cpu_model, inference_isa
from common.runtime.precision import DEFAULT_PRECISION
from common.runtime.samples import check_sample_sizes, collect_samples, load_sample


def output_paths(result_dir: Path, stem: str, count: int, outfmt: str) -> list[Path]:
    return [result_dir / f"{stem}_{k}.{outfmt.lower()}" for k in range(count)]


def write_output(path: Path, array: np.ndarray, outfmt: str) -> None:
    with atomic_path(path) as tmp:
        if outfmt == "NPY":
            with open(tmp, "wb") as handle:
                np.save(handle, array)
        elif outfmt == "TXT":
            flat = array.reshape(-1, array.shape[-1]) if array.ndim else array.reshape(1, 1)
            fmt = "%d" if np.issubdtype(array.dtype, np.integer) else "%f"
            np.savetxt(tmp, flat, fmt=fmt)
        else:
            np.ascontiguousarray(array).tofile(tmp)


def timing_stats(times_ms: Sequence[float]) -> dict:
    if not times_ms:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    values = np.asarray(times_ms, dtype=np.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "median": float(np.median(values)), "percentile(99%)": float(np.percentile(values, 99)),
            "count": int(values.size)}


def batch_size_for(specs: Sequence[TensorSpec], requested: int | None) -> int:
    """Static-batch models dictate the batch; dynamic ones take --batchsize (default 1)."""
    first = specs[0]
    if not first.batch_is_dynamic:
        if requested and requested != first.shape[0]:
            raise UserError(f"--batchsize {requested} does not match the model's static batch {first.shape[0]}")
        return int(first.shape[0])
    return int(requested or 1)


def run_inference(backend: Backend, input_arg: str, output: str | Path, output_dirname: str | None = None,
                  batchsize: int | None = None, outfmt: str = "BIN", loop: int = 1, warmup_count: int = 1,
                  resume: bool = False, argv: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Run every sample, write outputs and the summary JSON; return the summary dict."""
    outfmt = outfmt.upper()
    specs = backend.input_specs()
    samples = collect_samples(input_arg, specs)
    model_path = getattr(backend, "model_path", None)
    check_sample_sizes(samples, specs, Path(model_path).name if model_path else "")
    batch = batch_size_for(specs, batchsize)
    result_dir = Path(output) / (output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
    try:
        result_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder should be, no permission
        raise UserError(f"{result_dir}: cannot create the result folder ({err.strerror})") from None
    if resume:
        # A killed run may have left hidden half-written files; nothing reads them, but they
        # would pile up over restarts.
        remove_stale_temps(result_dir)

    times_ms: list[float] = []
    files_info: dict[str, dict] = {}
    nonfinite = 0
    skipped = 0
    num_outputs = len(backend.output_names())
    batches = [samples[i:i + batch] for i in range(0, len(samples), batch)]
    for batch_index, batch_samples in enumerate(tqdm(batches, desc=f"Inference ({backend.name})",
                                                     unit="batch", disable=not progress)):
        stems = [bin_stem(s[0]) for s in batch_samples]
        if resume and all(p.is_file() for stem in stems
                                          for p in output_paths(result_dir, stem, num_outputs, outfmt)):
            skipped += len(batch_samples)
            _record(files_info, batch_samples, result_dir, num_outputs, outfmt, batch_index * batch)
            continue
        feeds = _assemble_batch(batch_samples, specs, batch)
        if batch_index == 0:
            for _ in range(warmup_count):
                backend.run(feeds)
        outputs = None
        for _ in range(max(1, loop)):
            start = time.perf_counter()
            outputs = backend.run(feeds)
            times_ms.append((time.perf_counter() - start) * 1000.0)
        for slot, stem in enumerate(stems):  # padded slots (beyond len(stems)) are never written
            for path, array in zip(output_paths(result_dir, stem, num_outputs, outfmt), outputs):
                piece = array[slot]
                if np.issubdtype(piece.dtype, np.floating):
                    nonfinite += int(np.count_nonzero(~np.isfinite(piece)))
                write_output(path, piece, outfmt)
        _record(files_info, batch_samples, result_dir, num_outputs, outfmt, batch_index * batch)

    summary = _summary(files_info, times_ms, batch, backend, argv, skipped, nonfinite)
    write_json_atomic(Path(str(result_dir) + "_summary.json"), summary)
    return summary


def _assemble_batch(batch_samples: list[list[Path]], specs: Sequence[TensorSpec], batch: int) -> dict:
    # ais_bench fills a short last batch with copies of that batch's first sample.
    padded = batch_samples + [batch_samples[0]] * (batch - len(batch_samples))
    return {spec.name: np.stack([load_sample(sample[i], spec) for sample in padded])
            for i, spec in enumerate(specs)}


def _record(files_info: dict, batch_samples, result_dir: Path, num_outputs: int, outfmt: str, first_id: int) -> None:
    for offset, sample in enumerate(batch_samples):
        files_info[str(first_id + offset)] = {
            "infiles": [os.path.abspath(p) for p in sample],  # found from any folder (postprocess metadata)
            "outfiles": [os.path.abspath(p) for p in output_paths(result_dir, bin_stem(sample[0]), num_outputs, outfmt)],
        }


def _summary(files_info, times_ms, batch, backend, argv, skipped, nonfinite) -> dict:
    stats = timing_stats(times_ms)
    throughput = 1000.0 * batch / stats["mean"] if stats["mean"] else 0.0
    return {
        "filesinfo": files_info,
        "args": list(argv if argv is not None else sys.argv),
        "backend": backend.name,
        "backend_version": getattr(backend, "version", None),
        "precision": getattr(backend, "precision", DEFAULT_PRECISION),
        # the machine kind changes between sessions: a speed figure needs the CPU beside it
        "cpu": cpu_model(),
        "cpu_isa": inference_isa(),
        # ais_bench's key names, kept so scripts written for its summary read this one too;
        # here the time is the backend's compute call (host memory, so no H2D/D2H copies).
        "NPU_compute_time": stats,
        "H2D_latency": timing_stats([]),
        "D2H_latency": timing_stats([]),
        "throughput": throughput,
        "npu_compute_time_list": [float(t) for t in times_ms],
        "pid": os.getpid(),
        "batchsize": batch,
        "samples": len(files_info),
        "samples_skipped_by_resume": skipped,
        "nonfinite_output_values": nonfinite,
    }


def print_summary(summary: dict) -> None:
    stats = summary["NPU_compute_time"]
    print(f"[INFO] {summary['backend']} {summary.get('precision', DEFAULT_PRECISION)} on {summary.get('cpu', '?')}: "
          f"{summary['samples']} samples, batch {summary['batchsize']}, "
          f"compute time (ms): min = {stats['min']:.3f}, max = {stats['max']:.3f}, "
          f"mean = {stats['mean']:.3f}, median = {stats['median']:.3f}, "
          f"percentile(99%) = {stats['percentile(99%)']:.3f}")
    print(f"[INFO] throughput 1000*batchsize/compute_time.mean: {summary['throughput']:.3f}")
    if summary["nonfinite_output_values"]:
        print(f"[WARNING] {summary['nonfinite_output_values']} NaN/Inf values in the outputs", file=sys.stderr)
