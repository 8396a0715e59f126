"""ONNX Runtime session and export variants, timed round-robin against the current settings.

`python3 -m bench.tuning --onnx M.onnx --checkpoint W --json out.json [--batch 1]`

Every variant gets its own session; one timed run of each variant per round, every other
round in reverse order, so that load changes on a shared machine spread over all variants alike. The baseline is
exactly `common.infer.OnnxRuntimeBackend` (what users run). Export variants (no constant
folding, onnxsim, onnxslim) are compared with the baseline's outputs on the same input.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from bench.inference import random_feeds
from common.files.atomic import write_json_atomic
from common.eval.parity import compare_arrays


def log(message: str) -> None:
    print(f"[tuning {time.strftime('%H:%M:%S')}] {message}", flush=True)


# ---- session variants ------------------------------------------------------------------------

def _session(model: str | bytes, threads: int | None, configure: Callable | None = None):
    """common.infer's own session options, then one change."""
    import onnxruntime as ort
    from common.runtime.onnxruntime_backend import session_options
    options = session_options(threads)
    if configure:
        configure(options)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _plain_runner(session) -> Callable:
    return lambda feeds: session.run(None, feeds)


def _io_binding_runner(session) -> Callable:
    """Inputs bound from the numpy buffers, outputs into buffers allocated once and reused."""
    import onnxruntime as ort
    state: dict = {}

    def run(feeds):
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        if "outputs" not in state:
            shapes = [o.shape for o in session.run(None, feeds)]
            state["outputs"] = [ort.OrtValue.ortvalue_from_shape_and_type(s, np.float32, "cpu") for s in shapes]
        for meta, value in zip(session.get_outputs(), state["outputs"]):
            binding.bind_ortvalue_output(meta.name, value)
        session.run_with_iobinding(binding)
        return [value.numpy() for value in state["outputs"]]
    return run


def session_variants(onnx_path: Path, threads: int) -> dict[str, Callable]:
    """name -> a function building the runner (built lazily, one at a time)."""
    import onnxruntime as ort
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    level = ort.GraphOptimizationLevel

    def with_level(value):
        return lambda o: setattr(o, "graph_optimization_level", value)

    model = str(onnx_path)
    def spinning(value: str):
        return lambda o: o.add_session_config_entry("session.intra_op.allow_spinning", value)

    return {
        "baseline (common.infer as it is)": lambda: OnnxRuntimeBackend(onnx_path, threads=threads).run,
        "graph optimisation DISABLE_ALL": lambda: _plain_runner(_session(model, threads, with_level(level.ORT_DISABLE_ALL))),
        "graph optimisation BASIC": lambda: _plain_runner(_session(model, threads, with_level(level.ORT_ENABLE_BASIC))),
        "graph optimisation EXTENDED": lambda: _plain_runner(_session(model, threads, with_level(level.ORT_ENABLE_EXTENDED))),
        "intra-op threads 0 (ORT picks: physical cores, pinned)": lambda: _plain_runner(_session(model, None)),
        "intra-op threads 1": lambda: _plain_runner(_session(model, 1)),
        "memory arena off": lambda: _plain_runner(_session(model, threads, lambda o: setattr(o, "enable_cpu_mem_arena", False))),
        "memory pattern off": lambda: _plain_runner(_session(model, threads, lambda o: setattr(o, "enable_mem_pattern", False))),
        "thread spinning on (ORT's default)": lambda: _plain_runner(_session(model, threads, spinning("1"))),
        "thread spinning off (A/A check: the baseline's setting, another session)":
            lambda: _plain_runner(_session(model, threads, spinning("0"))),
        "I/O binding (preallocated outputs)": lambda: _io_binding_runner(_session(model, threads)),
    }


# ---- export variants -------------------------------------------------------------------------

def export_without_folding(onnx_path: Path, checkpoint: Path, out_path: Path) -> Path:
    """The same module and export call as export_onnx, with do_constant_folding=False."""
    import torch
    from common.runtime.graph import load_onnx, read_metadata, META_PACK, META_OPTIONS
    from common.pipeline.packs import pack_module
    graph = load_onnx(onnx_path, load_weights=False)
    metadata = read_metadata(graph)
    module = pack_module(metadata[META_PACK], "model").load_pretrained(
        str(checkpoint), **json.loads(metadata.get(META_OPTIONS, "{}")))
    inputs = [i for i in graph.graph.input if i.name not in {init.name for init in graph.graph.initializer}]
    dummies = [torch.randn(1, *[d.dim_value for d in i.type.tensor_type.shape.dim][1:]) for i in inputs]
    names = {i.name: {0: "batch_size"} for i in inputs}
    names.update({o.name: {0: "batch_size"} for o in graph.graph.output})
    with torch.no_grad():
        torch.onnx.export(module, tuple(dummies), str(out_path), input_names=[i.name for i in inputs],
                          output_names=[o.name for o in graph.graph.output], dynamic_axes=names,
                          opset_version=graph.opset_import[0].version, do_constant_folding=False, dynamo=False)
    return out_path


def simplify_with_onnxsim(onnx_path: Path, out_path: Path) -> Path:
    import onnx
    import onnxsim
    model, ok = onnxsim.simplify(onnx.load(str(onnx_path)))
    if not ok:
        raise RuntimeError("onnxsim's own check failed")
    onnx.save(model, str(out_path))
    return out_path


def simplify_with_onnxslim(onnx_path: Path, out_path: Path) -> Path:
    import onnxslim
    onnxslim.slim(str(onnx_path), str(out_path))
    return out_path


def export_variants(onnx_path: Path, checkpoint: Path, work: Path) -> dict[str, Callable[[], Path]]:
    return {
        "export without constant folding": lambda: export_without_folding(onnx_path, checkpoint, work / "nofold.onnx"),
        "onnxsim (0.8.x)": lambda: simplify_with_onnxsim(onnx_path, work / "onnxsim.onnx"),
        "onnxslim": lambda: simplify_with_onnxslim(onnx_path, work / "onnxslim.onnx"),
    }


# ---- the round-robin -------------------------------------------------------------------------

def run_tuning(onnx_path: Path, checkpoint: Path, work: Path, threads: int, batch: int, rounds: int,
               budget_s: float = 0.0, max_rounds: int = 20) -> dict:
    """At least `rounds` rounds, more while the timed rounds have taken less than `budget_s`."""
    from common.runtime.onnxruntime_backend import OnnxRuntimeBackend
    feeds = random_feeds(OnnxRuntimeBackend(onnx_path, threads=threads).input_specs(), batch, seed=1)
    runners: dict[str, Callable] = {}
    info: dict[str, dict] = {}
    for name, build in session_variants(onnx_path, threads).items():
        start = time.perf_counter()
        runners[name] = build()
        info[name] = {"kind": "session", "setup_seconds": time.perf_counter() - start}
    for name, make in export_variants(onnx_path, checkpoint, work).items():
        start = time.perf_counter()
        try:
            path = make()
        except Exception as err:  # a tool that is missing or fails is reported, not fatal
            info[name] = {"kind": "export", "error": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"}
            log(f"{name}: {info[name]['error']}")
            continue
        runners[name] = _plain_runner(_session(str(path), threads))
        info[name] = {"kind": "export", "setup_seconds": time.perf_counter() - start,
                      "onnx_mib": path.stat().st_size / 2 ** 20}
    baseline_name = next(iter(runners))
    reference = runners[baseline_name](feeds)  # also the baseline's warm-up
    for name, runner in runners.items():
        outputs = reference if name == baseline_name else runner(feeds)  # warm-up + parity
        info[name]["parity_vs_baseline"] = [compare_arrays(r, o).to_dict() for r, o in zip(reference, outputs)
                                            if r.shape == o.shape]
        info[name]["seconds"] = []
    started = time.perf_counter()
    index = 0
    while index < max_rounds and (index < rounds or time.perf_counter() - started < budget_s):
        # every other round in reverse order: a steady change of load during a round then
        # favours no variant over another
        order = list(runners.items()) if index % 2 == 0 else list(reversed(runners.items()))
        for name, runner in order:
            start = time.perf_counter()
            runner(feeds)
            info[name]["seconds"].append(time.perf_counter() - start)
        index += 1
        log(f"round {index} done")
    base = float(np.median(info[baseline_name]["seconds"]))
    for name in runners:
        median = float(np.median(info[name]["seconds"]))
        info[name].update({"latency_ms_median": 1000 * median, "img_per_s": batch / median,
                           "speedup_vs_baseline": base / median})
        log(f"{name}: {1000 * median:.0f} ms ({base / median:.2f}x)")
    return {"onnx": str(onnx_path), "batch": batch, "threads": threads, "rounds": index,
            "baseline": baseline_name, "variants": info}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--onnx", required=True)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--json", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2, help="rounds at least")
    parser.add_argument("--budget", type=float, default=120.0, help="more rounds while the timed part is shorter (s)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    result = run_tuning(Path(args.onnx), Path(args.checkpoint), work, args.threads, args.batch, args.rounds,
                        args.budget)
    write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
