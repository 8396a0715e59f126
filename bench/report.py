"""bench/RESULTS.md from the JSON files of a benchmark run (machine.json, <pack>.json, tuning.json)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from common.files.atomic import write_text_atomic

# The benchmark's speed goals (ONNX Runtime vs PyTorch, FLOP/s, pre/postprocess per image)
PREPOST_SPEEDUP_GOAL = 5.0
FLOPS_FRACTION_GOAL = 0.5
CONV_HEAVY_PACKS = ("RefineNet", "3D_HRNet", "Wseg", "PointRend")


def _read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _f(value, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, (int, float)):
        return f"{value:,.{digits}f}"
    return str(value)


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _mib(value: float) -> str:
    return f"{value:,.0f}"


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


# ---- sections --------------------------------------------------------------------------------

def machine_section(machine: dict) -> list[str]:
    peak = machine.get("peak", {})
    runs = ", ".join(f"{p['peak_gflops']:.1f}" for p in machine.get("peak_runs", []))
    rows = [
        ("CPU", f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs ({', '.join(machine['simd'])})"),
        ("memory", f"{machine['memory_gib']} GiB"),
        ("software", f"Python {machine['python']}, torch {machine['torch']}, onnxruntime {machine['onnxruntime']}, "
                     f"onnx {machine['onnx']}, numpy {machine['numpy']}, kernel {machine['kernel']}"),
        ("run", f"`{machine['command'].strip()}`, {machine['started_utc']} to {machine.get('finished_utc', '?')} UTC"),
        ("load average (1, 5, 15 min)", f"at start {tuple(machine['load_average_at_start'])}, "
                                        f"at end {tuple(machine.get('load_average_at_end', ()))}"),
        ("measured float32 peak", f"**{peak.get('peak_gflops', 0):.1f} GFLOP/s** = best of a {peak.get('matmul_size')}² "
                                  f"matmul in numpy ({peak.get('numpy_gflops', 0):.1f}), torch "
                                  f"({peak.get('torch_gflops', 0):.1f}) and ONNX Runtime "
                                  f"({peak.get('onnxruntime_gflops', 0):.1f}), {peak.get('threads')} threads; "
                                  f"measured at start and end of the run: {runs} GFLOP/s"),
    ]
    disk = machine.get("disk_write")
    if disk:
        rows.append(("disk write, sustained", f"{disk['mb_per_s']:.0f} MB/s: {disk['total_mib']} MiB in files of "
                                              f"{disk['file_mib']} MiB into the work folder, through the page cache as "
                                              "bins are written"))
    return ["## Machine", ""] + _table(("", ""), rows)


def _inference_rows(result: dict, peak: float) -> list[list]:
    rows = []
    for row in result.get("inference", []):
        if "skipped" in row:
            rows.append([row["batch"], 0, "skipped: " + row["skipped"]] + [""] * 7)
            continue
        ort, torch = row["onnxruntime"], row["pytorch"]
        parity = max((p["max_rel"] for p in row.get("parity", [])), default=None)
        rows.append([
            row["batch"], row.get("runs", ort["runs"]),
            f"{ort['img_per_s']:.3f}", f"{ort['latency_ms_median']:,.0f} ({ort['latency_ms_min']:,.0f})",
            f"{torch['img_per_s']:.3f}", f"{torch['latency_ms_median']:,.0f} ({torch['latency_ms_min']:,.0f})",
            f"**{row['ratio_ort_over_torch']:.2f}x**",
            f"{ort['achieved_gflops']:.1f} ({_pct(ort['achieved_gflops'] / peak if peak else None)})",
            f"{torch['achieved_gflops']:.1f} ({_pct(torch['achieved_gflops'] / peak if peak else None)})",
            "shapes differ" if row.get("shapes_differ") else (f"{parity:.1e}" if parity is not None else "n/a"),
        ])
    return rows


def _prepost_rows(result: dict) -> list[list]:
    rows = []
    for row in result.get("prepost", []):
        hw = row["image_hw"] if isinstance(row["image_hw"], str) else f"{row['image_hw'][0]}x{row['image_hw'][1]}"
        pre, post = row["preprocess"], row["postprocess"]
        rows.append([row["label"], row["images"], hw, row["workers"],
                     f"{pre['ms_per_image']:.1f}", f"{pre['img_per_s']:.1f}", _mib(pre["peak_rss_mib"]),
                     f"{post['ms_per_image']:.1f}", f"{post['img_per_s']:.1f}", _mib(post["peak_rss_mib"])])
    return rows


def guide_comparison(result: dict) -> list[dict]:
    """Our per-image time (one worker, real-size images, largest count) against the guide's."""
    rows = []
    # only images of the real size compare with the guides' per-image figures
    candidates = [r for r in result.get("prepost", []) if r["workers"] == 1]
    real = ([r for r in candidates if r["label"] == "real size"]
            or [r for r in candidates if r["image_hw"] in ("real sizes", "VOC sizes")])
    if not real:
        return rows
    best = max(real, key=lambda r: r["images"])
    parallel = [r for r in result.get("prepost", []) if r["workers"] > 1 and r["label"] == best["label"]
                and r["image_hw"] == best["image_hw"]]
    for step, guide_ms in result.get("guide_ms_per_image", {}).items():
        ours = best[step]["ms_per_image"]
        entry = {"step": step, "guide_ms": guide_ms, "ours_ms": ours, "images": best["images"],
                 "bin_bytes_per_image": best[step].get("bin_bytes_per_image"),
                 "speedup": guide_ms / ours, "met": guide_ms / ours >= PREPOST_SPEEDUP_GOAL}
        if parallel:
            entry["ours_parallel_ms"] = parallel[0][step]["ms_per_image"]
            entry["parallel_workers"] = parallel[0]["workers"]
            entry["parallel_met"] = guide_ms / entry["ours_parallel_ms"] >= PREPOST_SPEEDUP_GOAL
        rows.append(entry)
    return rows


def memory_flatness(result: dict) -> dict | None:
    series = [r for r in result.get("prepost", []) if r["label"] == "series" and r["workers"] == 1]
    if len(series) < 2:
        return None
    first, last = series[0], series[-1]
    return {step: {"first_images": first["images"], "last_images": last["images"],
                   "first_mib": first[step]["peak_rss_mib"], "last_mib": last[step]["peak_rss_mib"],
                   "growth_mib": last[step]["peak_rss_mib"] - first[step]["peak_rss_mib"]}
            for step in ("preprocess", "postprocess")}


def pack_section(result: dict, peak: float) -> list[str]:
    pack = result["pack"]
    lines = [f"### {pack}", ""]
    if "status" in result:
        return lines + [result["status"], ""]
    hw = result["input_hw"]
    flops = result.get("flops", {})
    lines.append(f"Input {hw[0]}x{hw[1]}" + ("" if result.get("quick") else " (the guide's)") + f", threads {result['threads']} for both backends, "
                 f"demo weights, random normalised input. Measured in {result['seconds']:.0f} s; load "
                 f"average {result['load_average_at_start'][0]:.2f} at start, {result['load_average_at_end'][0]:.2f} at end."
                 + (" **Quick mode: small sizes, not the guide's.**" if result.get("quick") else ""))
    lines.append("")
    if result.get("failure"):
        lines += [f"**The benchmark of this pack stopped early** ({result['failure']}); what it measured "
                  "before that is below.", ""]
    if flops:
        per_op = ", ".join(f"{op} {value / 1e9:,.1f}" for op, value in flops["per_op"].items())
        lines.append(f"FLOPs per image (counted from the ONNX graph, {flops['nodes']} nodes, shapes from "
                     f"{flops['shape_source']}): **{flops['total'] / 1e9:,.1f} GFLOP** ({per_op})"
                     + (f"; {flops['unresolved_nodes']} nodes left uncounted (unknown shapes)" if flops["unresolved_nodes"] else ""))
        lines.append("")
    if result.get("inference"):
        skipped = [b for b in result["guide_batches"] if b not in result["batches_run"]]
        lines.append("Inference, ONNX Runtime vs PyTorch eager, timed runs alternating between the two "
                     "(latency per batch: median (best) in ms; achieved GFLOP/s and share of the measured peak "
                     "from the median run):" + (f" guide batch sizes not run: {skipped}" + (
                         f" (the export has a static batch of {result['static_batch']})." if result.get("static_batch")
                         else ".") if skipped else ""))
        lines.append("")
        lines += _table(("batch", "runs", "ORT img/s", "ORT ms", "PyTorch img/s", "PyTorch ms", "ORT / PyTorch",
                         "ORT GFLOP/s (of peak)", "PyTorch GFLOP/s (of peak)", "max rel. output diff"),
                        _inference_rows(result, peak))
    exports = result.get("exports", {})
    if exports:
        rows = [[label, ", ".join(f"{o['name']} {o['dtype']} {o['shape']}" for o in info["outputs"]),
                 f"{info['bytes_per_image']:,}", f"{info['bytes_per_image'] / 2 ** 20:,.2f}",
                 f"{info['onnx_mib']:,.0f}", f"{info['export_seconds']:.0f}"] for label, info in exports.items()]
        lines.append("Output bytes per image, per output option:")
        lines.append("")
        lines += _table(("option", "outputs (per image)", "bytes / image", "MiB / image", "ONNX MiB", "export s"), rows)
    if result.get("prepost"):
        lines.append("Preprocess and postprocess, each a separate process, time of `main()` after start-up, "
                     "peak resident memory (VmHWM) of that process; outputs for the postprocess are random "
                     "bins of the model's output shape:")
        lines.append("")
        lines += _table(("set", "images", "image size", "workers", "pre ms/img", "pre img/s", "pre peak MiB",
                         "post ms/img", "post img/s", "post peak MiB"), _prepost_rows(result))
        flat = memory_flatness(result)
        if flat:
            parts = [f"{step} {v['first_mib']:.0f} -> {v['last_mib']:.0f} MiB ({v['growth_mib']:+.0f} MiB) from "
                     f"{v['first_images']} to {v['last_images']} images" for step, v in flat.items()]
            lines.append("Peak memory as the dataset grows: " + "; ".join(parts) + ".")
            lines.append("")
    if result.get("notes"):
        lines += [result["notes"], ""]
    return lines


# ---- goals -----------------------------------------------------------------------------------

def _disk_floor(entry: dict, disk_mb_s: float | None) -> str:
    """How long writing the preprocess's bins takes at the disk's sustained rate alone."""
    bytes_per_image = entry.get("bin_bytes_per_image")
    if entry["step"] != "preprocess" or not disk_mb_s or not bytes_per_image:
        return ""
    floor_ms = bytes_per_image / (disk_mb_s * 1e6) * 1000
    return (f"; writing its {bytes_per_image / 1e6:.1f} MB of bins per image alone takes {floor_ms:.1f} ms "
            f"at this disk's sustained {disk_mb_s:.0f} MB/s")


def goals_section(results: dict[str, dict], peak: float, disk_mb_s: float | None = None) -> list[str]:
    rows = []
    for pack, result in results.items():
        if "status" in result or not result.get("inference"):
            continue
        goal = result.get("goal_ratio", 1.5)
        timed = [row for row in result["inference"] if "skipped" not in row]
        for row in timed:
            ratio = row["ratio_ort_over_torch"]
            verdict = "met" if ratio >= goal else f"missed by {goal - ratio:.2f}x ({ratio / goal:.0%} of the goal)"
            torch_gflops = row["pytorch"]["achieved_gflops"]
            if ratio < goal and peak and torch_gflops:
                # the headroom a runtime can give at most: the kernels are the cost
                ort_gflops = row["onnxruntime"]["achieved_gflops"]
                verdict += (f"; PyTorch already runs at {torch_gflops / peak:.0%} of the measured matmul peak and "
                            f"ONNX Runtime at {ort_gflops / peak:.0%}: {goal}x would need ONNX Runtime at "
                            f"{goal * torch_gflops / peak:.0%} of it")
            rows.append([pack, f"ORT >= {goal}x PyTorch (bs{row['batch']})", f"{ratio:.2f}x", verdict])
        if pack in CONV_HEAVY_PACKS and peak and timed:
            best = max(timed, key=lambda r: r["onnxruntime"]["achieved_gflops"])
            fraction = best["onnxruntime"]["achieved_gflops"] / peak
            rows.append([pack, "ORT achieved FLOP/s >= 50% of peak", f"{fraction:.0%} (bs{best['batch']})",
                         "met" if fraction >= FLOPS_FRACTION_GOAL else
                         f"missed by {FLOPS_FRACTION_GOAL - fraction:.0%} of peak (see Reading the goals below)"])
        for entry in guide_comparison(result):
            extra = (f"; {entry['ours_parallel_ms']:.1f} ms with {entry['parallel_workers']} workers"
                     if "ours_parallel_ms" in entry else "")
            rows.append([pack, f"{entry['step']} >= 5x faster than the guide's {entry['guide_ms']:.0f} ms/img",
                         f"{entry['ours_ms']:.1f} ms/img, {entry['speedup']:.1f}x{extra}",
                         "met" if entry["met"] else
                         f"met with {entry['parallel_workers']} workers ({entry['guide_ms'] / entry['ours_parallel_ms']:.1f}x); "
                         f"one worker: {entry['speedup']:.1f}x" if entry.get("parallel_met") else
                         f"missed: {entry['speedup']:.1f}x, {entry['ours_ms'] - entry['guide_ms'] / PREPOST_SPEEDUP_GOAL:.1f} "
                         f"ms/img over the {entry['guide_ms'] / PREPOST_SPEEDUP_GOAL:.1f} ms/img goal (see Reading the goals below)"
                         + _disk_floor(entry, disk_mb_s)])
        flat = memory_flatness(result)
        if flat:
            growth = flat["postprocess"]["growth_mib"]
            rows.append([pack, "postprocess peak memory independent of the number of images",
                         f"{growth:+.0f} MiB from {flat['postprocess']['first_images']} to {flat['postprocess']['last_images']} images",
                         "met" if abs(growth) <= 32 else "missed"])
    if not rows:
        return []
    return ["## Speed goals", ""] + _table(("pack", "goal", "measured", "verdict"), rows)


def tuning_section(tuning: dict | None) -> list[str]:
    if not tuning:
        return []
    lines = ["## Making it faster: ONNX Runtime session and export variants", ""]
    if "status" in tuning:
        return lines + [tuning["status"], ""]
    lines.append(f"`{Path(tuning['onnx']).name}` at batch {tuning['batch']}, {tuning['threads']} threads; "
                 f"{tuning['rounds']} rounds, one timed run of every variant per round (round-robin), "
                 "median and best shown. The speed-up compares best runs (the baseline is what "
                 "`common.infer` runs): on a shared machine load only ever slows a run down, so the best "
                 "of several is the steadier estimate of what a setting can do, and the A/A row (the "
                 "baseline's own settings in a second session) shows how far apart two equal settings "
                 "still land. Output difference is against the baseline's outputs on the same input.")
    lines.append("")
    rows = []
    baseline_best_ms = 1000 * min(tuning["variants"][tuning["baseline"]]["seconds"])
    for name, info in tuning["variants"].items():
        if "error" in info:
            rows.append([name, "failed", "", "", "", info["error"]])
            continue
        diff = max((p["max_rel"] for p in info.get("parity_vs_baseline", [])), default=None)
        best_ms = 1000 * min(info["seconds"])
        rows.append([name, f"{info['latency_ms_median']:,.0f}", f"{best_ms:,.0f}", f"{baseline_best_ms / best_ms:.2f}x",
                     f"{diff:.1e}" if diff is not None else "n/a",
                     " ".join(f"{1000 * s:,.0f}" for s in info["seconds"])])
    lines += _table(("variant", "ms (median)", "ms (best)", "speed-up (best)", "max rel. diff", "each run, ms"), rows)
    return lines


# ---- the file --------------------------------------------------------------------------------

HEADER = """# Benchmarks

Regenerate with `python3 -m bench` (or `bash bench/run.sh`) from the repository root; every
figure below comes from that command (raw figures: `bench/results/*.json`). The machine is
described first: throughput figures mean little without it. These are benchmarks, not tests:
the test suite asserts no timing.
"""


def write_report(results_dir: Path, out: Path, packs: Sequence[str], discussion: str = "") -> None:
    machine = _read(results_dir / "machine.json") or {}
    peak = machine.get("peak", {}).get("peak_gflops", 0.0)
    results = {pack: _read(results_dir / f"{pack}.json") or {"pack": pack, "status": "not measured yet"}
               for pack in packs}
    lines = [HEADER]
    if machine:
        lines += machine_section(machine)
    lines += goals_section(results, peak, machine.get("disk_write", {}).get("mb_per_s"))
    from bench.report_engines import engines_section
    lines += engines_section(_read(results_dir / "engines_machine.json"),
                             {pack: _read(results_dir / f"engines_{pack}.json") for pack in packs})
    lines += ["## Per pack", ""]
    for pack in packs:
        lines += pack_section(results[pack], peak)
    lines += tuning_section(_read(results_dir / "tuning.json"))
    notes = Path(__file__).with_name("NOTES.md")
    if notes.is_file():
        lines += [notes.read_text(encoding="utf-8")]
    write_text_atomic(out, "\n".join(lines).rstrip() + "\n")
