"""`python3 -m bench`: measure every available pack and write bench/RESULTS.md.

    python3 -m bench                      # the full run (guide input sizes; about 25 min on 2 cores)
    python3 -m bench --quick              # small sizes, few images: a smoke test of the benchmark
    python3 -m bench --packs RefineNet    # re-measure some packs; the others keep their last figures
    python3 -m bench --engines-only       # only the engine comparison (ORT / OpenVINO / PyTorch, fp32 / bf16 / fp16)

Each pack runs in its own process (bench.pack_bench) so that one pack's memory or failure
does not touch the next; its figures go to bench/results/<pack>.json (quick runs: under
--work) and the report is rebuilt from those files.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.machine import describe_machine, load_average, measure_disk_write, measure_peak, measure_reduced_peaks
from bench.registry import PACK_BENCHES
from bench.report import write_report
from common.files.atomic import write_json_atomic
from common.pipeline.packs import PACK_NAMES, REPO_ROOT

BENCH_DIR = Path(__file__).resolve().parent
RUN_ORDER = ("RefineNet", "3D_HRNet", "PointRend", "MaskRCNN_mmdet", "Wseg")
assert sorted(RUN_ORDER) == sorted(PACK_NAMES)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_child(command: list[str], log_path: Path, timeout_s: float) -> tuple[int, str]:
    """Run a benchmark child; its lines go to log_path, progress lines also to the terminal.
    A child still running after timeout_s is killed (a watchdog: it may print nothing for long)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as handle:
        child = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True, errors="replace")
        watchdog = threading.Timer(timeout_s, child.kill)
        watchdog.start()
        try:
            for line in child.stdout:
                handle.write(line)
                if line.startswith(("[bench", "[tuning")):
                    print(line, end="", flush=True)
            status = child.wait()
        except BaseException:
            child.kill()
            raise
        finally:
            timed_out = not watchdog.is_alive() and watchdog.finished.is_set() and child.returncode == -9
            watchdog.cancel()
    if timed_out:
        return status, f"stopped after {timeout_s:.0f} s (--pack-timeout)"
    if status != 0:
        lines = [l for l in log_path.read_text(errors="replace").splitlines() if l.strip()]
        return status, " | ".join(lines[-2:])[-400:]
    return 0, ""


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def pack_status(pack: str) -> str | None:
    """None when the pack can be benchmarked, else why not."""
    if pack not in PACK_BENCHES:
        return "not available yet: no benchmark entry in bench/registry.py"
    return None


def benchmark_packs(args, results_dir: Path, work: Path, peak: float) -> None:
    for pack in args.packs:
        json_path = results_dir / f"{pack}.json"
        reason = pack_status(pack)
        if reason:
            log(f"{pack}: {reason}")
            write_json_atomic(json_path, {"pack": pack, "status": reason})
            continue
        log(f"{pack}: start (load {load_average()[0]:.2f})")
        command = [sys.executable, "-m", "bench.pack_bench", "--pack", pack, "--work", str(work / pack),
                   "--json", str(json_path), "--threads", str(args.threads), "--peak-gflops", str(peak)]
        if args.quick:
            command.append("--quick")
        if args.max_batch:
            command += ["--max-batch", str(args.max_batch)]
        if args.skip:
            command += ["--skip", args.skip]
        json_path.unlink(missing_ok=True)  # no figures of an earlier run under this run's name
        status, message = run_child(command, work / "logs" / f"{pack}.log", args.pack_timeout)
        if status != 0:
            log(f"{pack}: FAILED: {message}")
            partial = _read_json(json_path)
            if partial and "status" not in partial:  # keep what was measured before it stopped
                partial["failure"] = message
                write_json_atomic(json_path, partial)
            else:
                write_json_atomic(json_path, {"pack": pack, "status": f"benchmark failed: {message}",
                                              "log": str(work / "logs" / f"{pack}.log")})
        elif pack == args.tune_pack and not args.no_tuning:
            run_tuning(args, results_dir, work)  # right away, on the model this pack just exported


def run_tuning(args, results_dir: Path, work: Path) -> None:
    pack = args.tune_pack
    onnx_path = work / pack / "model" / f"{pack}_0.onnx"
    weights = work / pack / "weights" / PACK_BENCHES[pack].checkpoint_name
    if not onnx_path.is_file() or not weights.is_file():
        log(f"tuning: no {pack} model from this run, skipped")
        return
    log(f"tuning: ONNX Runtime session and export variants on {pack}")
    command = [sys.executable, "-m", "bench.tuning", "--onnx", str(onnx_path), "--checkpoint", str(weights),
               "--json", str(results_dir / "tuning.json"), "--work", str(work / "tuning"),
               "--threads", str(args.threads), "--rounds", str(2 if args.quick else args.tune_rounds),
               "--budget", str(10 if args.quick else args.tune_budget)]
    status, message = run_child(command, work / "logs" / "tuning.log", args.pack_timeout)
    if status != 0:
        log(f"tuning: FAILED: {message}")
        write_json_atomic(results_dir / "tuning.json", {"status": f"failed: {message}"})


def run_engines(args, results_dir: Path, work: Path) -> None:
    """Per pack, in its own process: the engines side by side (bench/engines.py)."""
    for pack in args.packs:
        if pack_status(pack):
            continue
        log(f"{pack}: engines (load {load_average()[0]:.2f})")
        json_path = results_dir / f"engines_{pack}.json"
        command = [sys.executable, "-m", "bench.engines", "--pack", pack, "--work", str(work / pack),
                   "--json", str(json_path), "--pack-json", str(results_dir / f"{pack}.json"),
                   "--threads", str(args.threads), "--rounds", str(2 if args.quick else args.engine_rounds),
                   "--budget", str(20 if args.quick else args.engine_budget)]
        if args.quick:
            command.append("--quick")
        if pack == args.tune_pack:
            command.append("--channels-last-check")
        status, message = run_child(command, work / "logs" / f"engines_{pack}.log", 3 * args.engine_budget + 900)
        if status != 0:
            log(f"{pack}: engines FAILED: {message}")
            write_json_atomic(json_path, {"pack": pack, "status": f"engine benchmark failed: {message}"})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and counts (smoke test)")
    parser.add_argument("--packs", nargs="+", default=list(RUN_ORDER), choices=list(PACK_NAMES),
                        help="default: all, cheapest first (Wseg's 5.4 TFLOP per input last)")
    parser.add_argument("--work", default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "segzoo_bench"),
                        help="scratch folder for models, datasets and bins (several GB in a full run)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for both ONNX Runtime (intra-op) and PyTorch")
    parser.add_argument("--max-batch", type=int, default=None, help="skip the guides' larger batch sizes")
    parser.add_argument("--skip", default="", help="comma list of: flops, inference, prepost")
    parser.add_argument("--tune-pack", default="RefineNet", choices=sorted(PACK_BENCHES))
    parser.add_argument("--tune-rounds", type=int, default=2, help="tuning rounds at least")
    parser.add_argument("--tune-budget", type=float, default=120.0, help="more tuning rounds while under this (s)")
    parser.add_argument("--no-tuning", action="store_true")
    parser.add_argument("--engines-only", action="store_true",
                        help="only the engine comparison; the other figures of bench/results stay as they are")
    parser.add_argument("--no-engines", action="store_true", help="skip the engine comparison")
    parser.add_argument("--engine-rounds", type=int, default=5, help="timed rounds per engine at most")
    parser.add_argument("--engine-budget", type=float, default=600.0, help="timed seconds per pack, about")
    parser.add_argument("--pack-timeout", type=float, default=720.0, help="seconds before a pack is stopped")
    parser.add_argument("--out", default=None,
                        help="report path (default: bench/RESULTS.md, or <work>/RESULTS.md with --quick)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results_dir = work / "results" if args.quick else BENCH_DIR / "results"
    results_dir.mkdir(parents=True, exist_ok=True)
    out = Path(args.out) if args.out else (work / "RESULTS.md" if args.quick else BENCH_DIR / "RESULTS.md")
    size = 1024 if args.quick else 4096
    if not args.engines_only:
        benchmark_everything(args, results_dir, work, size)
    if not args.no_engines:  # after the packs: it reuses their exported models and FLOP counts
        benchmark_engines(args, results_dir, work, size)
    write_report(results_dir, out, PACK_NAMES)
    log(f"report: {out}")
    return 0


def benchmark_everything(args, results_dir: Path, work: Path, size: int) -> None:
    machine = describe_machine()
    machine["command"] = "python3 -m bench " + " ".join(sys.argv[1:])
    log(f"machine: {machine['cpu']}, {machine['logical_cpus']} CPUs, load {machine['load_average_at_start']}")
    peaks = [measure_peak(args.threads, size)]
    log(f"matmul peak: {peaks[0]['peak_gflops']:.1f} GFLOP/s")
    machine["disk_write"] = measure_disk_write(work, total_mib=240 if args.quick else 1536)
    log(f"disk write, sustained: {machine['disk_write']['mb_per_s']:.0f} MB/s")
    benchmark_packs(args, results_dir, work, peaks[0]["peak_gflops"])
    # measured again at the end: on a shared machine the better of the two is nearer the truth
    peaks.append(measure_peak(args.threads, size))
    machine["peak"] = max(peaks, key=lambda p: p["peak_gflops"])
    machine["peak_runs"] = peaks
    machine["load_average_at_end"] = load_average()
    machine["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    write_json_atomic(results_dir / "machine.json", machine)


def benchmark_engines(args, results_dir: Path, work: Path, size: int) -> None:
    """The engine comparison with its own machine record (engines_machine.json): an
    --engines-only run may be on another CPU than the figures of the other sections."""
    machine = describe_machine()
    machine["command"] = "python3 -m bench " + " ".join(sys.argv[1:])
    log(f"engines: {machine['cpu']} ({', '.join(machine['simd'])}), load {machine['load_average_at_start']}")
    fp32_runs, reduced_runs = [measure_peak(args.threads, size)], [measure_reduced_peaks(args.threads, size)]
    machine.update(peak=fp32_runs[0], reduced_peaks=reduced_runs[0])
    write_json_atomic(results_dir / "engines_machine.json", machine)  # a run stopped midway keeps it
    run_engines(args, results_dir, work)
    fp32_runs.append(measure_peak(args.threads, size))
    reduced_runs.append(measure_reduced_peaks(args.threads, size))
    # the best of start and end: load only ever slows a matmul down
    machine["peak"] = max(fp32_runs, key=lambda p: p["peak_gflops"])
    machine["peak_runs"] = fp32_runs
    machine["reduced_peaks"] = {precision: max((run[precision] for run in reduced_runs if precision in run),
                                               key=lambda p: p["peak_gflops"])
                                for precision in ("bf16", "fp16") if precision in reduced_runs[0]}
    machine["reduced_peak_runs"] = reduced_runs
    machine["load_average_at_end"] = load_average()
    machine["finished_utc"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
    write_json_atomic(results_dir / "engines_machine.json", machine)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
