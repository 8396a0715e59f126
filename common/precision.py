"""Predict ATC's float16 cost on the CPU: `python3 -m common.precision --model X.onnx --input BINS`.

Runs the model on the bins twice on ONNX Runtime, in float32 and rewritten to round where the
NPU stores float16 under `--precision_mode` (common/fp16/emulate.py says what is emulated and
what is not), and reports per output the cosine, largest difference and class changes against
float32; per tensor its range, float16 overflow and underflow and the first tensor that departs.
It then searches a small set of nodes to keep in float32 that brings the outputs within the
tolerance and writes it as an ATC `--keep_dtype` file, and asks OpenVINO's real f16 execution
for a second opinion. Results: `<output>/precision_report.json` and `<output>/keep_dtype.cfg`.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

from tqdm import tqdm

from common.fp16.analysis import Analysis, load_samples
from common.fp16.compare import Tolerance
from common.fp16.keep_dtype import resolve_keep_dtype, write_keep_dtype
from common.fp16.modes import FORCE_FP16, INF_NAN, MUST_KEEP_ORIGIN_DTYPE, OVERFLOW_MODES, PRECISION_MODES
from common.fp16.openvino_check import openvino_f16_outputs
from common.fp16.report import (EMULATED, NOT_EMULATED, cpu_description, outputs_block, print_report,
                                tensor_summary)
from common.fp16.search import SEARCH_ORDERS, WORST_FIRST, candidate_order, range_nodes, search_keep_set
from common.files.atomic import write_json_atomic
from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
from common.runtime.graph import consumers, load_onnx

REPORT_NAME = "precision_report.json"
KEEP_DTYPE_NAME = "keep_dtype.cfg"
UNNAMED_PREFIX = "__unnamed_"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.precision", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the .onnx given to ATC")
    parser.add_argument("--input", required=True, help="folder(s) of input bins, comma-separated, one per model input")
    parser.add_argument("--precision_mode", default=FORCE_FP16, choices=PRECISION_MODES,
                        help="ATC's mode to predict (default force_fp16, ATC's default for inference)")
    parser.add_argument("--keep_dtype", default=None, help="ATC keep_dtype file: these nodes stay float32")
    parser.add_argument("--output", default=None, help="folder for the report and keep_dtype.cfg "
                                                       "(default: fp16_<model stem>)")
    parser.add_argument("--overflow", default=INF_NAN, choices=OVERFLOW_MODES,
                        help="float16 overflow: inf (Atlas A2/A3) or saturation to 65504 (Ascend310P/910)")
    parser.add_argument("--max-samples", type=int, default=4, help="bins analysed (the first N; 0: all)")
    parser.add_argument("--min-cosine", type=float, default=0.999, help="tolerance: every float output's cosine")
    parser.add_argument("--max-class-changed", type=float, default=0.001,
                        help="tolerance: fraction of positions whose class (argmax on --class_axis) may change")
    parser.add_argument("--class-axis", type=int, default=1)
    parser.add_argument("--class-outputs", default="auto",
                        help="comma-separated float outputs that are class logits (argmax on --class_axis); "
                             "'auto': every rank-4 float output; 'none': no float output "
                             "(integer outputs always count changed values)")
    parser.add_argument("--tie-ulps", type=float, default=4.0,
                        help="class changes where the float32 top-2 margin is within this many float16 ulps "
                             "of the output's largest value are ties, not counted (0: count all)")
    parser.add_argument("--no-tensors", action="store_true", help="skip the per-tensor statistics")
    parser.add_argument("--memory-mb", type=int, default=None,
                        help="intermediate tensors held at once by the per-tensor pass, which reruns the graph "
                             "once per chunk that fits (default: a third of the available memory, 1 to 16 GiB)")
    parser.add_argument("--no-search", action="store_true", help="do not search a keep list")
    parser.add_argument("--search-order", default=WORST_FIRST, choices=SEARCH_ORDERS)
    parser.add_argument("--max-evaluations", type=int, default=40, help="emulated runs the search may spend")
    parser.add_argument("--no-openvino", action="store_true", help="skip OpenVINO's f16 second opinion")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (ONNX Runtime, OpenVINO)")
    args = parser.parse_args(argv)
    if args.memory_mb is None:
        args.memory_mb = default_memory_mb()
    if args.max_samples < 0 or args.memory_mb < 1 or args.max_evaluations < 2 or args.tie_ulps < 0:
        parser.error("--max-samples and --tie-ulps must be >= 0, --memory-mb >= 1, --max-evaluations >= 2")
    if not 0.0 <= args.max_class_changed <= 1.0 or not -1.0 <= args.min_cosine <= 1.0:
        parser.error("--max-class-changed must be in [0, 1], --min-cosine in [-1, 1]")
    return args


def _class_outputs(text: str, output_names: list[str], model_path: Path) -> tuple[str, ...] | None:
    if text == "auto":
        return None
    if text == "none":
        return ()
    names = tuple(name for name in text.split(",") if name)
    unknown = [name for name in names if name not in output_names]
    if unknown:
        raise UserError(f"{model_path}: --class-outputs names {', '.join(unknown)}; the outputs are "
                        f"{', '.join(output_names)}")
    return names


def default_memory_mb(meminfo: str = "/proc/meminfo") -> int:
    """A third of MemAvailable, within 1-16 GiB (1 GiB where it cannot be read). Each chunk costs
    two session builds and two whole-graph runs: at 1024x2048 (3D_HRNet) a fixed 1 GiB meant
    about twenty chunks and a quarter of an hour."""
    try:
        with open(meminfo, encoding="ascii") as handle:
            fields = dict(line.split(":", 1) for line in handle if ":" in line)
        available_mb = int(fields["MemAvailable"].split()[0]) // 1024
    except (OSError, KeyError, ValueError, UnicodeDecodeError):
        return 1024
    return max(1024, min(16384, available_mb // 3))


def name_unnamed_nodes(model) -> int:
    """Give nameless nodes a name here (ATC would name them itself, so they cannot be kept by name)."""
    count = 0
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{UNNAMED_PREFIX}{index}_{node.op_type}"
            count += 1
    return count


def main(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    model_path = Path(args.model)
    if not model_path.is_file():
        raise UserError(f"{model_path}: ONNX model not found")
    if args.keep_dtype and args.precision_mode == MUST_KEEP_ORIGIN_DTYPE:
        raise UserError(f"{args.keep_dtype}: --keep_dtype has no effect with must_keep_origin_dtype (CANN)")
    output = Path(args.output or f"fp16_{model_path.stem}")
    model = load_onnx(model_path)
    unnamed = name_unnamed_nodes(model)
    keep_in = resolve_keep_dtype(args.keep_dtype, model.graph, model_path.name) if args.keep_dtype else set()
    backend = OnnxRuntimeBackend(model_path, threads=args.threads)
    samples = load_samples(backend, args.input, args.max_samples or None)
    tolerance = Tolerance(args.min_cosine, args.max_class_changed, args.class_axis, args.tie_ulps,
                          _class_outputs(args.class_outputs, backend.output_names(), model_path))
    timings = {}
    analysis = Analysis(model, backend, samples, args.precision_mode, args.overflow, tolerance, args.threads)
    emulated = analysis.compare(analysis.emulated_outputs(keep_in))
    timings["reference_and_emulated_s"] = time.perf_counter() - started
    report = {
        "model": str(model_path), "precision_mode": args.precision_mode, "overflow_mode": args.overflow,
        "keep_dtype_in": args.keep_dtype, "kept_nodes": _in_graph_order(keep_in, analysis),
        "samples": samples.names, "samples_available": samples.total_available,
        "nodes_total": len(model.graph.node), "nodes_fp16": len(analysis.fp16_nodes(keep_in)),
        "nodes_unnamed": unnamed, "tolerance": tolerance.as_dict(), "memory_mb": args.memory_mb,
        "emulated": outputs_block(emulated, tolerance),
        "what_is_emulated": EMULATED, "what_is_not_emulated": NOT_EMULATED, "cpu": cpu_description(),
    }
    stats = None
    if not args.no_tensors:
        lap = time.perf_counter()
        stats = analysis.tensor_stats(keep_in, args.memory_mb << 20)
        report["tensors_summary"] = tensor_summary(stats)
        report["tensors"] = [entry.as_dict() for entry in stats]
        timings["tensor_stats_s"] = time.perf_counter() - lap
    if args.no_search:
        report["search_skipped"] = "--no-search"
    elif args.precision_mode == MUST_KEEP_ORIGIN_DTYPE:
        report["search_skipped"] = "must_keep_origin_dtype keeps every node in float32 already"
    else:
        lap = time.perf_counter()
        _search(analysis, stats, keep_in, args, output, report)
        timings["search_s"] = time.perf_counter() - lap
    if not args.no_openvino:
        lap = time.perf_counter()
        report["openvino_f16"] = _openvino_opinion(model_path, analysis, args.threads)
        timings["openvino_s"] = time.perf_counter() - lap
    timings["total_s"] = time.perf_counter() - started
    report["timings"] = timings
    report["report_path"] = str(output / REPORT_NAME)
    write_json_atomic(output / REPORT_NAME, report)
    print_report(report)
    return 0


def _in_graph_order(names, analysis: Analysis) -> list[str]:
    return sorted(names, key=analysis.facts.order.__getitem__)


def _search(analysis: Analysis, stats, keep_in: set, args, output: Path, report: dict) -> None:
    graph = analysis.model.graph
    fp16 = {name for name in analysis.fp16_nodes(keep_in) if not name.startswith(UNNAMED_PREFIX)}
    node_inputs = {node.name: list(node.input) for node in graph.node}
    tensor_consumers = {name: [node.name for node in nodes] for name, nodes in consumers(graph).items()}
    if stats is None:  # no statistics: no range rule, graph order as Polygraphy
        forced, candidates = set(), sorted(fp16, key=analysis.facts.order.__getitem__)
    else:
        forced = range_nodes(stats, tensor_consumers, fp16)
        candidates = candidate_order(stats, node_inputs, fp16, args.search_order)
    outcomes = {}
    bar = tqdm(total=args.max_evaluations, desc="fp16 keep-list search", unit="run")

    def evaluate(keep: frozenset) -> bool:
        met, comparisons = analysis.evaluate(keep_in | keep)
        outcomes[keep] = comparisons
        bar.update(1)
        return met

    result = search_keep_set(evaluate, candidates, forced, analysis.facts.order, args.max_evaluations)
    bar.total = bar.n  # the search may stop early: the bar still ends at 100 %
    bar.refresh()
    bar.close()
    report["search"] = result.as_dict()
    if result.met:
        kept = _in_graph_order(keep_in | set(result.keep), analysis)
        write_keep_dtype(output / KEEP_DTYPE_NAME, kept)
        report["keep_dtype_written"] = str(output / KEEP_DTYPE_NAME)
        report["keep_dtype_nodes"] = kept
        report["with_keep_dtype"] = outputs_block(outcomes[frozenset(result.keep)], analysis.tolerance)


def _openvino_opinion(model_path: Path, analysis: Analysis, threads) -> dict:
    outputs, info = openvino_f16_outputs(model_path, analysis.samples.feeds, analysis.output_names, threads)
    if outputs is None:
        return info
    return {**info, **outputs_block(analysis.compare(outputs), analysis.tolerance)}


if __name__ == "__main__":
    script_entry(main, parse_args)
