"""ais_bench-compatible offline inference: `python3 -m common.infer --model X.onnx --input DIR ...`.

Same flags and the same on-disk contract as `python3 -m ais_bench` in the guides:
`<output>/<output_dirname>/<stem>_<k>.bin` per sample and output, and
`<output>/<output_dirname>_summary.json` beside that folder. `.onnx` runs on ONNX Runtime
(CPU, or CUDA when present; the default) or, with `--backend openvino`, on OpenVINO's CPU
plugin; `--precision bf16|fp16` asks for reduced-precision compute where the engine and the
CPU can do it natively (refused in one line otherwise). `.om` is handed to ais_bench when it
is installed.

Differences from ais_bench, on purpose: the inputs of a multi-input model are paired by file
stem, not by sorted position; every bin's size is checked against the model input before any
work starts; `--resume` skips samples whose outputs all exist (files are renamed into place
only when complete, so an existing file is a finished one).
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np
from tqdm import tqdm

from common.binio import bin_stem, expected_nbytes, list_bins
from common.cli import UserError, script_entry
from common.onnx_tools import META_ATC_ONLY
from common.fsio import atomic_path, remove_stale_temps, write_json_atomic
from common.runtime.cpu_info import cpu_model, inference_isa
from common.runtime.precision import DEFAULT_PRECISION, PRECISIONS, check_precision_name

BACKENDS = ("onnxruntime", "openvino")

INPUT_SUFFIXES = (".bin", ".BIN", ".npy", ".NPY")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or None for a dynamic axis
    dtype: np.dtype

    @property
    def batch_is_dynamic(self) -> bool:
        return not isinstance(self.shape[0], int)

    def sample_shape(self) -> tuple[int, ...]:
        rest = self.shape[1:]
        if not all(isinstance(d, int) for d in rest):
            raise UserError(f"model input '{self.name}' has dynamic axes {self.shape}: "
                            "raw bins need a fixed sample shape")
        return tuple(rest)


class Backend(Protocol):
    name: str

    def input_specs(self) -> list[TensorSpec]: ...

    def output_names(self) -> list[str]: ...

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]: ...


# ---- ONNX Runtime backend ----------------------------------------------------------------

_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8, "tensor(int8)": np.int8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


def refuse_atc_only(metadata: dict, model_path: Path, engine: str = "ONNX Runtime") -> None:
    if META_ATC_ONLY in metadata:
        raise UserError(f"{model_path}: this graph is edited for ATC only and gives wrong results on "
                        f"{engine} ({metadata[META_ATC_ONLY]}); run the unedited or default-fixed .onnx")


def session_options(threads: int | None = None):
    """The ONNX Runtime settings of every run (bench/tuning.py varies them one at a time)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    # Idle worker threads block instead of busy-spinning (ORT's default is to spin). On a
    # machine shared with other jobs (preprocess workers, other users) spinning threads take
    # the cores the working ones need: bench/RESULTS.md, tuning table. The ops of these
    # networks last milliseconds, so the wake-up cost is lost in the noise on an idle machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def refuse_reduced_precision_on_ort(precision: str) -> None:
    """ONNX Runtime's CPU provider has no reduced-precision path for these graphs: bf16 is not
    a Conv type in ONNX (the session refuses the graph), and an fp16 graph has its Convs cast
    back to fp32 on x86 (CastFloat16Transformer), so fp16 costs accuracy and gains nothing."""
    if check_precision_name(precision) != "fp32":
        raise UserError(f"--precision {precision}: ONNX Runtime's CPU provider runs these graphs in fp32 only "
                        f"(no bf16 Conv, fp16 Convs are cast back to fp32); use --backend openvino "
                        f"--precision {precision}")


class OnnxRuntimeBackend:
    name = "onnxruntime"
    precision = "fp32"

    def __init__(self, model_path: str | Path, threads: int | None = None, device: str = "cpu",
                 precision: str = DEFAULT_PRECISION):
        import onnxruntime as ort

        refuse_reduced_precision_on_ort(precision)
        options = session_options(threads)
        providers = ["CPUExecutionProvider"]
        if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as err:  # ORT raises its own Fail/InvalidGraph types
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"{model_path}: ONNX Runtime cannot load the model ({first})") from None
        self.model_path = Path(model_path)
        self.providers = self.session.get_providers()
        self.version = ort.__version__
        refuse_atc_only(self.session.get_modelmeta().custom_metadata_map, self.model_path)

    def input_specs(self) -> list[TensorSpec]:
        return [TensorSpec(i.name, tuple(d if isinstance(d, int) else None for d in i.shape),
                           np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()]

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(None, feeds)


def make_backend(model_path: str | Path, backend: str = "onnxruntime", precision: str = DEFAULT_PRECISION,
                 threads: int | None = None, device: str = "cpu") -> Backend:
    """The backend `--backend` names, at `--precision` (refused in one line where it cannot run)."""
    if backend == "openvino":
        if device == "cuda":
            raise UserError("--device cuda: the OpenVINO backend runs on the CPU; use --backend onnxruntime")
        from common.runtime.openvino_backend import OpenVinoBackend
        return OpenVinoBackend(model_path, precision=precision, threads=threads)
    if backend != "onnxruntime":
        raise UserError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    return OnnxRuntimeBackend(model_path, threads=threads, device=device, precision=precision)


# ---- pairing input files into samples ----------------------------------------------------

def collect_samples(input_arg: str, specs: Sequence[TensorSpec]) -> list[list[Path]]:
    """One list of files (one per model input) per sample, in natural order of input 0.

    `input_arg` is a comma-separated list of folders (one per model input, paired by stem) or
    of files (cut into one contiguous group per input, as ais_bench does).
    """
    entries = [Path(p) for p in input_arg.split(",") if p.strip()]
    if not entries:
        raise UserError("--input is empty")
    if entries[0].is_dir():
        return _samples_from_folders(entries, specs)
    return _samples_from_files(entries, specs)


def _samples_from_folders(folders: list[Path], specs: Sequence[TensorSpec]) -> list[list[Path]]:
    if len(folders) != len(specs):
        raise UserError(f"--input names {len(folders)} folder(s) but the model has {len(specs)} "
                        f"input(s): {', '.join(s.name for s in specs)}")
    per_input = [list_bins(folder, INPUT_SUFFIXES) for folder in folders]
    first = per_input[0]
    samples = [[path] for path in first]
    for folder, files in zip(folders[1:], per_input[1:]):
        by_stem = {bin_stem(p): p for p in files}
        missing = [bin_stem(s[0]) for s in samples if bin_stem(s[0]) not in by_stem]
        if missing:
            raise UserError(f"{folder}: no file for {len(missing)} sample(s) of {folders[0]} "
                            f"(first: {', '.join(missing[:3])})")
        for sample in samples:
            sample.append(by_stem[bin_stem(sample[0])])
    return samples


def _samples_from_files(files: list[Path], specs: Sequence[TensorSpec]) -> list[list[Path]]:
    for path in files:
        if not path.is_file():
            raise UserError(f"{path}: input folder or file not found")
    if len(files) % len(specs):
        raise UserError(f"--input lists {len(files)} files, not a multiple of the model's "
                        f"{len(specs)} inputs")
    group = len(files) // len(specs)
    return [[files[k * group + i] for k in range(len(specs))] for i in range(group)]


def check_sample_sizes(samples: list[list[Path]], specs: Sequence[TensorSpec], model_name: str = "") -> None:
    """Every file must hold exactly one sample of its input: checked before any inference."""
    for index, spec in enumerate(specs):
        want = expected_nbytes(spec.sample_shape(), spec.dtype)
        for sample in samples:
            path = sample[index]
            if path.suffix.lower() == ".npy":
                continue  # checked when loaded: the header carries shape and dtype
            size = path.stat().st_size
            if size != want:
                model = f" of {model_name}" if model_name else ""
                raise UserError(f"{path}: {size} bytes, expected {want} for input '{spec.name}'{model} "
                                f"({spec.dtype.name} {spec.sample_shape()}){_size_hint(size, spec)}")


def _size_hint(size: int, spec: TensorSpec) -> str:
    """Say what the file would fit: the usual cause is bins made for another input size."""
    shape, itemsize = spec.sample_shape(), spec.dtype.itemsize
    if size == 0:
        return ": the file is empty"
    elements = math.prod(shape)
    for other in (1, 2, 4, 8):
        if other != itemsize and size == elements * other:
            return (f": the file holds {elements} values of {other} byte(s) each, the model wants "
                    f"{spec.dtype.name}: bins written with another dtype")
    if len(shape) == 3 and size % (itemsize * shape[0]) == 0:
        side = math.isqrt(size // (itemsize * shape[0]))
        if side * side * itemsize * shape[0] == size:
            return (f": the file fits {spec.dtype.name} {(shape[0], side, side)}, so the model input "
                    "shape does not match the bins (preprocess --size and export --size must agree)")
    return ": the model input shape does not match the bins (wrong size, dtype or a cut file)"


def load_sample(path: Path, spec: TensorSpec) -> np.ndarray:
    shape = spec.sample_shape()
    if path.suffix.lower() == ".npy":
        array = np.load(path, allow_pickle=False)
        if array.size != math.prod(shape):
            raise UserError(f"{path}: {array.size} values, expected {math.prod(shape)} for '{spec.name}'")
        return array.astype(spec.dtype, copy=False).reshape(shape)
    return np.fromfile(path, dtype=spec.dtype).reshape(shape)


# ---- the run -----------------------------------------------------------------------------

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
            "infiles": [str(p) for p in sample],
            "outfiles": [str(p) for p in output_paths(result_dir, bin_stem(sample[0]), num_outputs, outfmt)],
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


# ---- Ascend .om models -------------------------------------------------------------------

def run_om_with_ais_bench(args: argparse.Namespace) -> int:
    """Hand an `.om` to ais_bench unchanged; it writes the same file layout."""
    import importlib.util
    if importlib.util.find_spec("ais_bench") is None:
        raise UserError(f"{args.model}: .om models run through ais_bench, which is not installed "
                        "(Ascend toolkit needed); run the .onnx model here instead")
    command = [sys.executable, "-m", "ais_bench", "--model", str(args.model), "--device", str(args.device),
               "--outfmt", args.outfmt, "--loop", str(args.loop)]
    for flag, value in (("--input", args.input), ("--output", args.output),
                        ("--output_dirname", args.output_dirname), ("--batchsize", args.batchsize)):
        if value is not None:
            command += [flag, str(value)]
    return subprocess.call(command)


# ---- command line ------------------------------------------------------------------------

def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.infer", description=__doc__.split("\n")[0])
    parser.add_argument("--model", "-m", required=True, help=".onnx (ONNX Runtime) or .om (ais_bench)")
    parser.add_argument("--input", "-i", default=None,
                        help="folder(s) of input bins, comma-separated, one per model input")
    parser.add_argument("--output", "-o", default=None, help="root folder for results")
    parser.add_argument("--output_dirname", "--output-dirname", default=None,
                        help="result sub-folder (default: a timestamp)")
    parser.add_argument("--outfmt", default="BIN", type=str.upper, choices=("BIN", "NPY", "TXT"))
    parser.add_argument("--batchsize", "--batch-size", type=int, default=None,
                        help="batch for dynamic-batch models (static models use their own)")
    parser.add_argument("--loop", "-l", type=int, default=1, help="executions of each batch, each timed")
    parser.add_argument("--warmup_count", type=int, default=1)
    parser.add_argument("--device", "-d", default="0", help="NPU id for .om; 'cuda' selects CUDA for .onnx")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads of the backend")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="engine for .onnx models (default onnxruntime; see README: when to pick which)")
    parser.add_argument("--precision", default=DEFAULT_PRECISION, choices=PRECISIONS,
                        help="compute precision (default fp32; bf16/fp16 only where the engine and the CPU "
                             "run them natively, refused otherwise)")
    parser.add_argument("--resume", action="store_true",
                        help="skip samples whose outputs already exist (finished files only)")
    args = parser.parse_args(argv)
    if args.output_dirname and not args.output:
        parser.error("--output_dirname needs --output")
    if args.loop < 1 or args.warmup_count < 0 or (args.batchsize is not None and args.batchsize < 1):
        parser.error("--loop and --batchsize must be >= 1, --warmup_count >= 0")
    return args


def main(args: argparse.Namespace) -> int:
    model = Path(args.model)
    if model.suffix == ".om":
        if args.backend != "onnxruntime" or args.precision != DEFAULT_PRECISION:
            raise UserError(f"{model}: an .om runs on the NPU through ais_bench, its precision fixed by ATC; "
                            "--backend and --precision apply to .onnx models")
        return run_om_with_ais_bench(args)
    if not model.is_file():
        raise UserError(f"{model}: model file not found")
    if not args.input or not args.output:
        raise UserError("--input and --output are needed for a dataset run")
    backend = make_backend(model, args.backend, args.precision, threads=args.threads,
                           device="cuda" if args.device == "cuda" else "cpu")
    summary = run_inference(backend, args.input, args.output, args.output_dirname, args.batchsize,
                            args.outfmt, args.loop, args.warmup_count, args.resume, argv=sys.argv)
    print_summary(summary)
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
