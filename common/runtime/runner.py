"""The offline inference run with ais_bench's file contract: outputs, timings, summary JSON.

`<output>/<output_dirname>/<stem>_<k>.bin` per sample and output, and
`<output>/<output_dirname>_summary.json` beside that folder. The inputs of a multi-input
model are paired by file stem, not by sorted position; every bin's size is checked against
the model input before any work starts; `--resume` skips samples whose outputs all exist with
the size the model produces (files are renamed into place only when complete, so an existing
file of that size is a finished one) and redoes the others. Every output must have the batch
axis first: the runner cuts it into one file per sample.
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
from common.files.atomic import atomic_path, remove_stale_temps, remove_stale_temps_of, write_json_atomic
from common.files.bins import bin_stem, expected_nbytes, write_raw
from common.runtime.backend import Backend, TensorSpec
from common.runtime.cpu_info import cpu_model, inference_isa
from common.runtime.precision import DEFAULT_PRECISION
from common.runtime.samples import check_input_specs, check_sample_sizes, collect_samples, load_sample

# The largest batch of inputs the runner assembles in memory (batch x the bytes of one sample,
# all inputs): a --batchsize beyond it is refused before anything is read.
MAX_BATCH_BYTES = 4 * 1024 ** 3


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
            write_raw(tmp, array)


def timing_stats(times_ms: Sequence[float]) -> dict:
    if not times_ms:
        return {"min": 0.0, "max": 0.0, "mean": 0.0, "median": 0.0, "percentile(99%)": 0.0, "count": 0}
    values = np.asarray(times_ms, dtype=np.float64)
    return {"min": float(values.min()), "max": float(values.max()), "mean": float(values.mean()),
            "median": float(np.median(values)), "percentile(99%)": float(np.percentile(values, 99)),
            "count": int(values.size)}


def batch_size_for(specs: Sequence[TensorSpec], requested: int | None, sample_count: int | None = None,
                   model: str = "the model") -> int:
    """Static-batch models dictate the batch; dynamic ones take --batchsize (default 1), at most
    the number of samples (a larger batch would only be padding: said on stderr). A batch of
    inputs larger than MAX_BATCH_BYTES is refused."""
    first = specs[0]
    if not first.batch_is_dynamic:
        if requested and requested != first.shape[0]:
            raise UserError(f"--batchsize {requested} does not match the model's static batch {first.shape[0]}")
        batch, what = int(first.shape[0]), f"{model}: its static batch of {first.shape[0]}"
    else:
        batch = int(requested or 1)
        if sample_count is not None and batch > sample_count:
            print(f"[WARNING] --batchsize {batch} is more than the {sample_count} sample(s): batch {sample_count} "
                  "(a larger one would only pad it with copies)", file=sys.stderr)
            batch = sample_count
        what = f"--batchsize {batch}"
    sample_bytes = sum(expected_nbytes(spec.sample_shape(), spec.dtype) for spec in specs)
    if batch * sample_bytes > MAX_BATCH_BYTES:
        raise UserError(f"{what}: a batch of inputs would take {batch * sample_bytes / 1024 ** 3:.1f} GiB "
                        f"({batch} x {sample_bytes} bytes), more than the runner's limit of "
                        f"{MAX_BATCH_BYTES / 1024 ** 3:.0f} GiB; use a smaller --batchsize")
    return batch


def run_inference(backend: Backend, input_arg: str, output: str | Path, output_dirname: str | None = None,
                  batchsize: int | None = None, outfmt: str = "BIN", loop: int = 1, warmup_count: int = 1,
                  resume: bool = False, argv: Sequence[str] | None = None, progress: bool = True) -> dict:
    """Run every sample, write outputs and the summary JSON; return the summary dict."""
    outfmt = outfmt.upper()
    specs = backend.input_specs()
    model_path = getattr(backend, "model_path", None)
    model_name = Path(model_path).name if model_path else ""
    model_label = str(model_path) if model_path else "the model"  # the file, as the user named it
    check_input_specs(specs, model_label)
    samples = collect_samples(input_arg, specs)
    for note in check_sample_sizes(samples, specs, model_name):
        print(f"[WARNING] {note}", file=sys.stderr)
    batch = batch_size_for(specs, batchsize, len(samples), model_label)
    result_dir = Path(output) / (output_dirname or time.strftime("%Y_%m_%d-%H_%M_%S"))
    try:
        result_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where a folder should be, no permission
        raise UserError(f"{result_dir}: cannot create the result folder ({err.strerror})") from None
    summary_path = Path(str(result_dir) + "_summary.json")
    # Hidden half-written files a killed run left (its writer gone): nothing reads them, but
    # they would pile up over restarts.
    remove_stale_temps(result_dir)
    remove_stale_temps_of(summary_path)

    times_ms: list[float] = []
    files_info: dict[str, dict] = {}
    nonfinite = 0
    skipped, redone = 0, []
    output_names = backend.output_names()
    output_specs = backend.output_specs() if hasattr(backend, "output_specs") else [None] * len(output_names)
    num_outputs = len(output_names)
    batches = [samples[i:i + batch] for i in range(0, len(samples), batch)]
    for batch_index, batch_samples in enumerate(tqdm(batches, desc=f"Inference ({backend.name})",
                                                     unit="batch", disable=not progress)):
        stems = [bin_stem(s[0]) for s in batch_samples]
        if resume:
            unfinished = [stem for stem in stems if not _outputs_finished(result_dir, stem, output_specs, outfmt, redone)]
            if not unfinished:
                skipped += len(batch_samples)
                _record(files_info, batch_samples, result_dir, num_outputs, outfmt, batch_index * batch)
                continue
        feeds = _assemble_batch(batch_samples, specs, batch)
        if batch_index == 0:
            for _ in range(warmup_count):
                check_outputs(backend.run(feeds), output_names, batch, model_label)
        outputs = None
        for _ in range(max(1, loop)):
            start = time.perf_counter()
            outputs = backend.run(feeds)
            times_ms.append((time.perf_counter() - start) * 1000.0)
        check_outputs(outputs, output_names, batch, model_label)
        for slot, stem in enumerate(stems):  # padded slots (beyond len(stems)) are never written
            for path, array in zip(output_paths(result_dir, stem, num_outputs, outfmt), outputs):
                piece = array[slot]
                if np.issubdtype(piece.dtype, np.floating):
                    nonfinite += int(np.count_nonzero(~np.isfinite(piece)))
                write_output(path, piece, outfmt)
        _record(files_info, batch_samples, result_dir, num_outputs, outfmt, batch_index * batch)
    if redone:
        print(f"[WARNING] --resume: {len(redone)} existing output file(s) were not of the size the model "
              f"produces and were redone (first: {redone[0]})", file=sys.stderr)

    summary = _summary(files_info, times_ms, batch, backend, argv, skipped, nonfinite)
    summary["outputs_redone_by_resume"] = len(redone)
    write_json_atomic(summary_path, summary)
    return summary


def check_outputs(outputs: Sequence[np.ndarray], names: Sequence[str], batch: int, model: str = "the model") -> None:
    """Each output must carry the batch axis first (the runner writes one slice per sample) and
    hold numbers; checked on every run, before anything of that batch is written. An output
    whose first axis merely equals the batch size cannot be told from a batch axis."""
    if len(outputs) != len(names):
        raise UserError(f"{model}: returned {len(outputs)} outputs, the graph declares {len(names)} "
                        f"({', '.join(names)})")
    for name, array in zip(names, outputs):
        array = np.asarray(array)
        if array.ndim == 0:
            raise UserError(f"{model}: output '{name}' is a scalar: no batch axis to cut into one file per "
                            "sample (the runner's contract: batch axis first)")
        if array.shape[0] != batch:
            raise UserError(f"{model}: output '{name}' has shape {tuple(array.shape)} for a batch of {batch}: "
                            f"its first axis is not the batch axis, so it cannot be cut into one file per sample")
        if array.dtype.kind not in "biuf":
            raise UserError(f"{model}: output '{name}' holds {array.dtype} values, which a raw bin cannot hold")


def _outputs_finished(result_dir: Path, stem: str, output_specs: Sequence[TensorSpec | None], outfmt: str,
                      redone: list[str]) -> bool:
    """For --resume: every output of the sample exists with the size the model produces (BIN:
    byte count, NPY: header shape and dtype; TXT and outputs without a fixed shape: existence).
    Files of another size (another model or input size) are listed in `redone`."""
    finished = True
    for path, spec in zip(output_paths(result_dir, stem, len(output_specs), outfmt), output_specs):
        if not path.is_file():
            finished = False
            continue
        wrong = _wrong_size(path, spec, outfmt)
        if wrong:
            redone.append(f"{path.name}: {wrong}")
            finished = False
    return finished


def _wrong_size(path: Path, spec: TensorSpec | None, outfmt: str) -> str:
    shape = spec.sample_shape_or_none() if spec is not None else None
    if shape is None or outfmt == "TXT":
        return ""
    if outfmt == "NPY":
        from common.runtime.samples import npy_header
        try:
            found_shape, found_dtype = npy_header(path)
        except UserError:
            return "not a readable .npy"
        if (found_shape, found_dtype) != (shape, spec.dtype):
            return f"{found_dtype} {found_shape}, expected {spec.dtype} {shape}"
        return ""
    size, want = path.stat().st_size, expected_nbytes(shape, spec.dtype)
    return f"{size} bytes, expected {want}" if size != want else ""


def _assemble_batch(batch_samples: list[list[Path]], specs: Sequence[TensorSpec], batch: int) -> dict:
    # ais_bench fills a short last batch with copies of that batch's first sample; each file is
    # read once (the copies are of the array read).
    feeds = {}
    for i, spec in enumerate(specs):
        arrays = [load_sample(sample[i], spec) for sample in batch_samples]
        feeds[spec.name] = np.stack(arrays + [arrays[0]] * (batch - len(arrays)))
    return feeds


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
