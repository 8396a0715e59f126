"""Engines side by side on one pack: `python3 -m bench.engines --pack P --work DIR --json OUT`.

Per pack, at its guide input size (or --quick), on bins its own preprocess made from a
synthetic dataset: ONNX Runtime fp32, OpenVINO fp32 / bf16 / fp16 (where the CPU computes the
type natively), PyTorch fp32 and bf16 (autocast, channels_last). Every round runs each engine
once on the same bin, in an order that rotates from round to round, so load from other jobs
hits them alike; throughput is the median over rounds. Accuracy is measured against PyTorch
fp32 on the same bin in the same round: the fraction of pixels whose class (argmax over the
class axis) differs, worst output first, for segmentation packs; detections matched one to
one for MaskRCNN_mmdet. The recommendation is the fastest engine within the tolerance.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from bench.registry import PACK_BENCHES, PackBench
from common.files.bins import list_bins
from common.files.atomic import write_json_atomic
from common.eval.parity import DETECTION_IOU_MIN, DETECTION_SCORE_TOL, compare_arrays, match_detections
from common.fp16.compare import tied_positions
from common.runtime.precision import native_support

# what the recommendation and the engine goals accept
CLASS_MISMATCH_TOL = 0.005   # at most 0.5 % of pixels of another class than PyTorch fp32
# A change where PyTorch fp32's two best scores are this many ulps (of the engine's precision)
# apart or closer is a tie rounding alone can flip; reported beside the raw count, not in the
# tolerance. The fp16 prediction (common.precision) uses the same rule.
TIE_ULPS = 4.0
REFERENCE = "pytorch fp32"
BASELINE = "onnxruntime fp32"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> list[float]:
    from bench.machine import load_average as read
    return list(read())


@dataclass
class Engine:
    label: str          # "openvino bf16"
    engine: str         # onnxruntime | openvino | pytorch
    precision: str
    make: Callable[[], object]
    channels_last: bool | None = None


def plan_engines(onnx_path: Path, checkpoint: Path, threads: int, channels_last_check: bool) -> list[Engine]:
    """The engines this CPU can run natively, in the issue's order."""
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from common.runtime.openvino_backend import OpenVinoBackend
    from common.runtime.torch_backend import TorchBackend

    engines = [Engine(BASELINE, "onnxruntime", "fp32", lambda: OnnxRuntimeBackend(onnx_path, threads=threads))]
    for precision in ("fp32", "bf16", "fp16"):
        if native_support(precision):
            engines.append(Engine(f"openvino {precision}", "openvino", precision,
                                  lambda p=precision: OpenVinoBackend(onnx_path, precision=p, threads=threads)))
    engines.append(Engine(REFERENCE, "pytorch", "fp32", lambda: TorchBackend(onnx_path, checkpoint, threads=threads)))
    if native_support("bf16"):
        engines.append(Engine("pytorch bf16", "pytorch", "bf16",
                              lambda: TorchBackend(onnx_path, checkpoint, threads=threads, precision="bf16"),
                              channels_last=True))
        if channels_last_check:  # does channels_last pay? the same autocast in NCHW
            engines.append(Engine("pytorch bf16 NCHW", "pytorch", "bf16",
                                  lambda: TorchBackend(onnx_path, checkpoint, threads=threads, precision="bf16",
                                                       channels_last=False), channels_last=False))
    return engines


# ---- accuracy against the reference ------------------------------------------------------------

def accuracy(pack: str, reference: list[np.ndarray], candidate: list[np.ndarray], precision: str = "fp32") -> dict:
    """The cost of a candidate engine against PyTorch fp32 on the same batch-1 input."""
    if pack == "MaskRCNN_mmdet":  # dets [1,100,5], labels [1,100], masks
        match = match_detections(reference[0][0], reference[1][0], candidate[0][0], candidate[1][0])
        return {"kind": "detections", **match, "max_rel": _max_rel(reference, candidate)}
    # per-pixel class scores: float outputs with a class axis and a spatial map (N, C, H, W)
    scores = [(ref[0], cand[0]) for ref, cand in zip(reference, candidate)
              if ref.ndim == 4 and np.issubdtype(ref.dtype, np.floating)]
    mismatches = [compare_arrays(ref, cand, class_axis=0).argmax_mismatch for ref, cand in scores]
    beyond_ties = [_changed_beyond_ties(ref, cand, precision) for ref, cand in scores]
    class_maps = [float(np.mean(ref != cand)) for ref, cand in zip(reference, candidate)
                  if ref.ndim == 3 and np.issubdtype(ref.dtype, np.integer)]  # a class-map export: no margin
    mismatches, beyond_ties = mismatches + class_maps, beyond_ties + class_maps
    return {"kind": "pixels", "class_mismatch": max(mismatches) if mismatches else None,
            "class_mismatch_beyond_ties": max(beyond_ties) if beyond_ties else None,
            "per_output": mismatches, "max_rel": _max_rel(reference, candidate)}


def _changed_beyond_ties(ref: np.ndarray, cand: np.ndarray, precision: str) -> float:
    """Pixels of another class whose reference top-2 margin is wider than TIE_ULPS ulps of the
    engine's precision at the largest score: the changes rounding alone cannot explain."""
    changed = np.argmax(ref, axis=0) != np.argmax(cand, axis=0)
    tied = tied_positions(ref, 0, TIE_ULPS, precision if precision in ("fp16", "bf16") else "fp32")
    return float(np.mean(changed & ~tied))


def _max_rel(reference, candidate) -> float:
    return max(compare_arrays(ref, cand).max_rel for ref, cand in zip(reference, candidate)
               if ref.shape == cand.shape and np.issubdtype(ref.dtype, np.floating))


def merge_accuracy(records: list[dict]) -> dict:
    """Worst pixel mismatch over bins; detection counts summed over bins."""
    if not records:
        return {}
    if records[0]["kind"] == "detections":
        ref = sum(r["reference"] for r in records)
        cand = sum(r["candidate"] for r in records)
        matched = sum(r["matched"] for r in records)
        larger = sum(max(r["reference"], r["candidate"]) for r in records)
        return {"kind": "detections", "reference": ref, "candidate": cand, "matched": matched,
                "fraction_matched": matched / larger if larger else 1.0, "bins": len(records),
                "max_rel": max(r["max_rel"] for r in records)}
    def worst(key):
        values = [r[key] for r in records if r.get(key) is not None]
        return max(values) if values else None
    return {"kind": "pixels", "class_mismatch": worst("class_mismatch"),
            "class_mismatch_beyond_ties": worst("class_mismatch_beyond_ties"), "bins": len(records),
            "max_rel": max(r["max_rel"] for r in records)}


def within_tolerance(cost: dict) -> bool:
    if not cost:
        return False
    if cost["kind"] == "detections":
        return cost["matched"] == cost["reference"] == cost["candidate"]
    return cost["class_mismatch"] is not None and cost["class_mismatch"] <= CLASS_MISMATCH_TOL


def tolerance_text(pack: str) -> str:
    if pack == "MaskRCNN_mmdet":
        return (f"every detection matched one to one (same label, IoU >= {DETECTION_IOU_MIN}, "
                f"score within {DETECTION_SCORE_TOL:g})")
    return f"at most {100 * CLASS_MISMATCH_TOL:.1f} % of pixels of another class"


def recommend(rows: list[dict]) -> str | None:
    """The fastest engine whose accuracy cost is within the tolerance."""
    fine = [r for r in rows if r.get("img_per_s") and r.get("within_tolerance")]
    return max(fine, key=lambda r: r["img_per_s"])["label"] if fine else None


# ---- the rounds ----------------------------------------------------------------------------------

def _feeds(specs, path: Path) -> dict[str, np.ndarray]:
    from common.runtime.samples import load_sample
    return {specs[0].name: load_sample(path, specs[0])[None]}


def compare_engines(pack: str, engines: list[Engine], bins: list[Path], rounds: int, budget_s: float,
                    flops_per_image: int) -> dict:
    started = time.perf_counter()
    built, rows = {}, {}
    for engine in engines:
        start = time.perf_counter()
        built[engine.label] = engine.make()
        rows[engine.label] = {"label": engine.label, "engine": engine.engine, "precision": engine.precision,
                              "channels_last": engine.channels_last, "load_seconds": time.perf_counter() - start,
                              "seconds": [], "accuracy_per_bin": {}}
        if engine.engine != "pytorch":
            rows[engine.label]["version"] = getattr(built[engine.label], "version", None)
    specs = built[BASELINE].input_specs()
    # warm-up on the first bin: compiles kernels per shape, also a first time estimate
    feeds = _feeds(specs, bins[0])
    for label, backend in built.items():
        start = time.perf_counter()
        backend.run(feeds)
        rows[label]["warmup_seconds"] = time.perf_counter() - start
        log(f"  {label}: warm-up {rows[label]['warmup_seconds']:.2f} s")
    round_s = sum(r["warmup_seconds"] for r in rows.values())
    # a median needs three rounds at least, whatever the budget says
    planned = max(min(3, rounds), min(rounds, int(budget_s / max(round_s, 1e-6))))
    labels = list(built)
    loads = []
    for index in range(planned):
        path = bins[index % len(bins)]
        feeds = _feeds(specs, path)
        shift = index % len(labels)
        order = labels[shift:] + labels[:shift]  # rotate: no engine always runs first or last
        outputs = {}
        for label in order:
            start = time.perf_counter()
            outputs[label] = built[label].run(feeds)
            rows[label]["seconds"].append(time.perf_counter() - start)
        if path.name not in rows[REFERENCE]["accuracy_per_bin"]:
            for label in labels:
                rows[label]["accuracy_per_bin"][path.name] = accuracy(pack, outputs[REFERENCE], outputs[label],
                                                                      rows[label]["precision"])
        del outputs
        loads.append(load_average()[0])
        log(f"  round {index + 1}/{planned} on {path.name}: " + ", ".join(
            f"{label} {rows[label]['seconds'][-1]:.2f} s" for label in labels) + f" (load {loads[-1]:.2f})")
    del built
    gc.collect()
    baseline = float(np.median(rows[BASELINE]["seconds"]))
    for row in rows.values():
        median = float(np.median(row["seconds"]))
        row.update({"rounds": len(row["seconds"]), "latency_s_median": median, "latency_s_best": min(row["seconds"]),
                    "img_per_s": 1.0 / median, "ratio_to_onnxruntime_fp32": baseline / median,
                    "achieved_gflops": flops_per_image / median / 1e9 if flops_per_image else None})
        row["accuracy"] = merge_accuracy(list(row.pop("accuracy_per_bin").values()))
        row["within_tolerance"] = within_tolerance(row["accuracy"])
    table = list(rows.values())
    return {"engines": table, "recommended": recommend(table), "tolerance": tolerance_text(pack),
            "rounds_planned": planned, "bins": [p.name for p in bins], "load_average_per_round": loads,
            "seconds": time.perf_counter() - started}


# ---- the pack: model, weights, bins ----------------------------------------------------------------

def prepare(entry: PackBench, work: Path, hw, quick: bool, count: int) -> tuple[Path, Path, list[Path]]:
    """The ONNX model (reused from a pack benchmark in the same work folder), demo weights, and
    bins made by the pack's own preprocess from `count` synthetic images."""
    from bench.pack_bench import export_all_options, run_script_in_process, write_demo_weights
    checkpoint = write_demo_weights(entry, work)
    onnx_path = work / "model" / f"{entry.pack}_0.onnx"
    recorded = work / "model" / "engines_input_hw.json"
    if not (onnx_path.is_file() and recorded.is_file() and json.loads(recorded.read_text()) == list(hw)):
        first = dict(list(entry.output_options.items())[:1])
        export_all_options(entry, checkpoint, hw, work, first)
        write_json_atomic(recorded, list(hw))
    series = entry.quick_series if quick else (entry.real or entry.series)
    # a preprocess that keeps the image size (Cityscapes packs) needs images of the input size
    keeps_size = entry.series.image_hw == entry.series.input_hw
    image_hw = tuple(hw) if keeps_size else series.image_hw
    folder = work / f"engines_data_{hw[0]}x{hw[1]}_{count}"
    bins_dir = folder / "bins"
    if not (bins_dir.is_dir() and list_bins(bins_dir)):
        root = entry.write_dataset(folder / "data", count, image_hw)
        run_script_in_process(entry.pack, entry.preprocess(root, bins_dir, 1, tuple(hw)))
    bins = sorted(list_bins(bins_dir))
    return onnx_path, checkpoint, bins[:count]


def flops_for(onnx_path: Path, pack_json: Path | None, hw) -> tuple[int, str]:
    """FLOPs per image: the pack benchmark's count when it was made at this size, else counted."""
    if pack_json and pack_json.is_file():
        try:
            recorded = json.loads(pack_json.read_text())
            if recorded.get("input_hw") == list(hw) and recorded.get("flops", {}).get("total"):
                return int(recorded["flops"]["total"]), f"{pack_json.name} (bench.flops)"
        except ValueError:
            pass
    from bench.flops import count_flops
    from bench.inference import random_feeds
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    feeds = random_feeds(OnnxRuntimeBackend(onnx_path).input_specs(), 1)
    return int(count_flops(onnx_path, feeds)["total"]), "bench.flops, counted here"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench.engines", description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True, choices=sorted(PACK_BENCHES))
    parser.add_argument("--work", required=True, help="scratch folder (the pack benchmark's, to reuse its model)")
    parser.add_argument("--json", required=True)
    parser.add_argument("--quick", action="store_true", help="the pack's small benchmark size")
    parser.add_argument("--input-hw", type=int, nargs=2, default=None, metavar=("H", "W"),
                        help="another input size than the guide's (six engines at once need memory: "
                             "3D_HRNet at 1024x2048 took more than 18 GiB)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds at most (median over them)")
    parser.add_argument("--budget", type=float, default=600.0, help="timed seconds per pack, about")
    parser.add_argument("--images", type=int, default=2, help="synthetic images, bins used in rotation")
    parser.add_argument("--pack-json", default=None, help="the pack benchmark's JSON (its FLOP count)")
    parser.add_argument("--channels-last-check", action="store_true",
                        help="also PyTorch bf16 in NCHW, to see what channels_last buys")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    from common.runtime.cpu_info import cpu_model, inference_isa
    entry = PACK_BENCHES[args.pack]
    hw = tuple(args.input_hw) if args.input_hw else (entry.quick_hw if args.quick else entry.guide_hw)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = {"pack": args.pack, "quick": args.quick, "input_hw": list(hw), "guide_hw": list(entry.guide_hw),
              "threads": args.threads,
              "cpu": cpu_model(), "cpu_isa": inference_isa(), "load_average_at_start": load_average()}
    onnx_path, checkpoint, bins = prepare(entry, work, hw, args.quick, args.images)
    result["flops_per_image"], result["flops_source"] = flops_for(
        onnx_path, Path(args.pack_json) if args.pack_json else None, hw)
    engines = plan_engines(onnx_path, checkpoint, args.threads, args.channels_last_check)
    log(f"{args.pack}: engines at {hw[0]}x{hw[1]} on {len(bins)} bin(s): {', '.join(e.label for e in engines)}")
    result.update(compare_engines(args.pack, engines, bins, args.rounds, args.budget, result["flops_per_image"]))
    result["load_average_at_end"] = load_average()
    write_json_atomic(Path(args.json), result)
    log(f"{args.pack}: recommended {result['recommended']} -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
