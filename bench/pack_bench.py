"""The benchmark of one pack, run in its own process: `python3 -m bench.pack_bench --pack P ...`.

Steps: demo weights in the original format -> export at the guide's input size (one export
per output option) -> FLOPs from the graph -> ONNX Runtime vs PyTorch at the guide's batch
sizes -> preprocess and postprocess over growing synthetic datasets, each in a child process
(`bench.measure`) for its time and peak memory. Writes one JSON.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bench.inference import RunPlan, compare_backends, random_feeds
from bench.registry import PACK_BENCHES, DataSet, PackBench, Script
from common.files.bins import bin_stem, list_bins
from common.files.atomic import write_json_atomic
from common.pipeline.packs import REPO_ROOT, pack_module

QUICK_COUNTS = (3, 8)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_script_in_process(pack: str, script: Script) -> float:
    """Run a pack script's main() here (exports need no isolation); returns seconds."""
    module = pack_module(pack, script.name)
    start = time.perf_counter()
    status = module.main(module.parse_args(script.argv))
    if status:
        raise RuntimeError(f"{pack}/{script.name}.py exited {status}")
    return time.perf_counter() - start


def measure_in_child(pack: str, script: Script, json_path: Path, log_path: Path) -> dict:
    """Run a pack script in a fresh child process: its time and peak memory only."""
    command = [sys.executable, "-m", "bench.measure", "--pack", pack, "--script", script.name,
               "--json", str(json_path), "--", *script.argv]
    with open(log_path, "ab") as handle:
        status = subprocess.call(command, cwd=REPO_ROOT, stdout=handle, stderr=handle)
    if status != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"{pack}/{script.name}.py failed (exit {status}): {' | '.join(tail)}")
    return json.loads(json_path.read_text())


# ---- export, FLOPs, bytes per image ---------------------------------------------------------

def write_demo_weights(entry: PackBench, work: Path) -> Path:
    path = work / "weights" / entry.checkpoint_name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        pack_module(entry.pack, "model").write_demo_checkpoint(str(path))
    return path


def output_bytes_per_image(onnx_path: Path, feeds: dict) -> dict:
    """Bytes one image's outputs take on disk, from the graph's output shapes at batch 1
    (one ONNX Runtime run when a shape depends on the data)."""
    import onnx
    from bench.flops import _fix_batch, _known_shapes, _symbolic_shapes
    model = onnx.load(str(onnx_path), load_external_data=False)
    _fix_batch(model, 1)
    shapes = _known_shapes(onnx.shape_inference.infer_shapes(model))
    outputs = [(o.name, o.type.tensor_type.elem_type) for o in model.graph.output]
    if any(name not in shapes for name, _ in outputs):
        shapes.update(_symbolic_shapes(model))
    if any(name not in shapes for name, _ in outputs):
        import onnxruntime as ort
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        shapes.update({o.name: a.shape for o, a in zip(session.get_outputs(), session.run(None, feeds))})
    per_output = []
    for name, elem_type in outputs:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type))
        shape = tuple(shapes[name])[1:]
        per_output.append({"name": name, "shape": list(shape), "dtype": dtype.name,
                           "bytes": int(np.prod(shape)) * dtype.itemsize})
    return {"bytes_per_image": sum(o["bytes"] for o in per_output), "outputs": per_output}


def export_all_options(entry: PackBench, checkpoint: Path, hw, work: Path, options_by_label=None) -> dict[str, dict]:
    """Export every output option (or those given); the first is the graph timed."""
    exports = {}
    for index, (label, options) in enumerate((options_by_label or entry.output_options).items()):
        onnx_path = work / "model" / f"{entry.pack}_{index}.onnx"
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        log(f"{entry.pack}: export '{label}' at {hw[0]}x{hw[1]}")
        seconds = sum(run_script_in_process(entry.pack, script)
                      for script in entry.export(checkpoint, onnx_path, hw, options))
        exports[label] = {"onnx": str(onnx_path), "export_seconds": seconds, "options": options,
                          "onnx_mib": onnx_path.stat().st_size / 2 ** 20}
    return exports


# ---- inference -------------------------------------------------------------------------------

def benchmark_inference(entry: PackBench, onnx_path: Path, checkpoint: Path, batches, plan: RunPlan,
                        threads: int, peak_gflops: float, flops_per_image: int) -> list[dict]:
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from common.runtime.torch_backend import TorchBackend
    onnx_backend = OnnxRuntimeBackend(onnx_path, threads=threads)
    torch_backend = TorchBackend(onnx_path, checkpoint, threads=threads)
    rows = compare_backends(onnx_backend, torch_backend, batches, plan, progress=log)
    for row in rows:
        if "skipped" in row:
            continue
        for name in ("onnxruntime", "pytorch"):
            achieved = flops_per_image * row[name]["img_per_s"] / 1e9
            row[name]["achieved_gflops"] = achieved
            row[name]["fraction_of_peak"] = achieved / peak_gflops if peak_gflops else None
    del onnx_backend, torch_backend
    gc.collect()
    return rows


# ---- preprocess / postprocess ----------------------------------------------------------------

def write_synthetic_outputs(entry: PackBench, bin_dir: Path, result_dir: Path, input_hw) -> int:
    """Random outputs named like the backend's (`<stem>_<k>.bin`) plus its summary JSON."""
    rng = np.random.default_rng(0)
    specs = entry.output_bins(input_hw)
    result_dir.mkdir(parents=True, exist_ok=True)
    files_info = {}
    bins = [p for p in list_bins(bin_dir)]
    for index, path in enumerate(bins):
        stem = bin_stem(path)
        outs = []
        for k, spec in enumerate(specs):
            out = result_dir / f"{stem}_{k}.bin"
            spec.random(rng).tofile(out)
            outs.append(str(out))
        files_info[str(index)] = {"infiles": [str(path)], "outfiles": outs}
    write_json_atomic(Path(str(result_dir) + "_summary.json"), {"filesinfo": files_info, "batchsize": 1})
    return len(bins)


def measure_pre_post(entry: PackBench, work: Path, count: int, data: DataSet, workers: int, label: str) -> dict:
    """Synthetic dataset of `count` images -> preprocess, synthetic outputs -> postprocess."""
    folder = work / f"prepost_{label.replace(' ', '_')}_{count}_w{workers}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    start = time.perf_counter()
    root = entry.write_dataset(folder / "data", count, data.image_hw)
    dataset_seconds = time.perf_counter() - start
    bins = folder / "bins"
    log_path = folder / "log.txt"
    pre = measure_in_child(entry.pack, entry.preprocess(root, bins, workers, data.input_hw), folder / "pre.json", log_path)
    pre["bin_bytes_per_image"] = sum(path.stat().st_size for path in list_bins(bins)) / count
    result = folder / "result" / "onnxruntime"
    written = write_synthetic_outputs(entry, bins, result, data.input_hw)
    for script in entry.before_postprocess(root, folder, data.input_hw):
        run_script_in_process(entry.pack, script)
    post = measure_in_child(entry.pack, entry.postprocess(root, result, folder, workers, data.input_hw),
                            folder / "post.json", log_path)
    row = {"label": label, "images": count, "image_hw": list(data.image_hw) if data.image_hw else "real sizes",
           "input_hw": list(data.input_hw), "workers": workers, "dataset_seconds": dataset_seconds,
           "bins": written}
    for name, measured in (("preprocess", pre), ("postprocess", post)):
        row[name] = {"seconds": measured["seconds"], "ms_per_image": 1000 * measured["seconds"] / count,
                     "img_per_s": count / measured["seconds"], "peak_rss_mib": measured["peak_rss_mib"],
                     "peak_rss_workers_mib": measured["peak_rss_workers_mib"],
                     "rss_after_imports_mib": measured["rss_after_imports_mib"]}
    row["preprocess"]["bin_bytes_per_image"] = pre["bin_bytes_per_image"]
    log(f"{entry.pack} {label} n={count} workers={workers}: pre {row['preprocess']['ms_per_image']:.1f} ms/img "
        f"peak {pre['peak_rss_mib']:.0f} MiB, post {row['postprocess']['ms_per_image']:.1f} ms/img "
        f"peak {post['peak_rss_mib']:.0f} MiB")
    shutil.rmtree(folder, ignore_errors=True)
    return row


def benchmark_pre_post(entry: PackBench, work: Path, quick: bool) -> list[dict]:
    counts = QUICK_COUNTS if quick else entry.counts
    series = entry.quick_series if quick else entry.series
    rows = [measure_pre_post(entry, work, n, series, 1, "series") for n in counts]
    # the same work spread over every core: what --workers buys on this machine
    cores = os.cpu_count() or 1
    if cores > 1:
        rows.append(measure_pre_post(entry, work, counts[1] if len(counts) > 2 else counts[-1], series, cores, "series"))
    if entry.real and not quick:
        rows.append(measure_pre_post(entry, work, entry.real_count, entry.real, 1, "real size"))
        if cores > 1:  # per-image time against the guides' figures, with --workers as well
            rows.append(measure_pre_post(entry, work, entry.real_count, entry.real, cores, "real size"))
    return rows


# ---- the whole pack --------------------------------------------------------------------------

def run_pack(entry: PackBench, work: Path, quick: bool, threads: int, peak_gflops: float,
             max_batch: int | None, skip: set[str], save) -> dict:
    """All stages; `save(result)` after each, so a pack stopped midway keeps what it measured."""
    started = time.time()
    hw = entry.quick_hw if quick else entry.guide_hw
    batches = (1, 2) if quick else tuple(b for b in entry.guide_batches if not max_batch or b <= max_batch)
    plan = RunPlan(max_runs=2, budget_s=2.0, long_run_s=5.0) if quick else RunPlan(total_s=entry.inference_budget_s)
    result = {"pack": entry.pack, "quick": quick, "input_hw": list(hw), "threads": threads,
              "guide_batches": list(entry.guide_batches), "batches_run": [],
              "notes": entry.notes, "guide_ms_per_image": entry.guide_ms_per_image,
              "goal_ratio": entry.goal_ratio, "load_average_at_start": _load(), "partial": True}

    def checkpoint_result():
        result["load_average_at_end"] = _load()
        result["seconds"] = time.time() - started
        save(result)

    # pre/post first: it needs no model, and a slow inference stage cannot starve it
    if "prepost" not in skip:
        result["prepost"] = benchmark_pre_post(entry, work, quick)
        checkpoint_result()
    checkpoint = write_demo_weights(entry, work)
    exports = export_all_options(entry, checkpoint, hw, work)
    default = next(iter(exports.values()))
    onnx_path = Path(default["onnx"])
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    specs = OnnxRuntimeBackend(onnx_path, threads=threads).input_specs()
    feeds = random_feeds(specs, 1)
    result["static_batch"] = None if specs[0].batch_is_dynamic else specs[0].shape[0]
    for label, info in exports.items():
        info.update(output_bytes_per_image(Path(info["onnx"]), feeds))
    result["exports"] = exports
    checkpoint_result()
    if "flops" not in skip:
        from bench.flops import count_flops
        log(f"{entry.pack}: counting FLOPs")
        result["flops"] = count_flops(onnx_path, feeds)
        checkpoint_result()
    flops = result.get("flops", {}).get("total", 0)
    if "inference" not in skip:
        log(f"{entry.pack}: ONNX Runtime vs PyTorch at {hw[0]}x{hw[1]}, batches {batches}, {threads} threads")
        result["inference"] = benchmark_inference(entry, onnx_path, checkpoint, batches, plan, threads,
                                                  peak_gflops, flops)
        result["batches_run"] = [row["batch"] for row in result["inference"] if "skipped" not in row]
    result["partial"] = False
    checkpoint_result()
    return result


def _load() -> list[float]:
    from bench.machine import load_average
    return list(load_average())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True, choices=sorted(PACK_BENCHES))
    parser.add_argument("--work", required=True, help="scratch folder (models, data, bins)")
    parser.add_argument("--json", required=True, help="where the pack's figures go")
    parser.add_argument("--quick", action="store_true", help="small input size, few images, few runs")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--peak-gflops", type=float, default=0.0)
    parser.add_argument("--max-batch", type=int, default=None, help="skip the guide's larger batches")
    parser.add_argument("--skip", default="", help="comma list of: flops, inference, prepost")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    entry = PACK_BENCHES[args.pack]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = run_pack(entry, work, args.quick, args.threads, args.peak_gflops, args.max_batch,
                      {s for s in args.skip.split(",") if s}, save=lambda partial: write_json_atomic(args.json, partial))
    log(f"{entry.pack}: done in {result['seconds']:.0f} s -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
