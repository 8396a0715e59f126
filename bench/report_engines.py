"""The engine section of bench/RESULTS.md from engines_machine.json and engines_<pack>.json."""
from __future__ import annotations

from typing import Sequence

from bench.engines import TIE_ULPS

FP32_GOAL = 1.1     # best fp32 engine / ONNX Runtime fp32
BF16_GOAL = 3.0     # best bf16 engine within the tolerance / ONNX Runtime fp32
FP32_GOAL_PACKS = ("RefineNet", "3D_HRNet", "PointRend", "Wseg", "MaskRCNN_mmdet")


def _table(header: Sequence[str], rows: Sequence[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def theoretical_gflops(machine: dict, precision: str) -> float | None:
    entry = machine.get("theoretical_peak", {}).get("precisions", {}).get(precision)
    return entry["gflops"] if entry and entry["gflops"] else None


def measured_gflops(machine: dict, precision: str) -> float | None:
    if precision == "fp32":
        return machine.get("peak", {}).get("peak_gflops")
    return machine.get("reduced_peaks", {}).get(precision, {}).get("peak_gflops")


def _pct(part, whole) -> str:
    return f"{100 * part / whole:.0f}%" if part and whole else "n/a"


def cost_text(row: dict) -> str:
    cost = row.get("accuracy") or {}
    if cost.get("kind") == "detections":
        return f"{cost['matched']} of {max(cost['reference'], cost['candidate'])} detections matched"
    if cost.get("class_mismatch") is None:
        return "n/a"
    text = f"{100 * cost['class_mismatch']:.3f}% pixels of another class"
    beyond = cost.get("class_mismatch_beyond_ties")
    if row["precision"] in ("bf16", "fp16") and beyond is not None and cost["class_mismatch"]:
        text += f" ({100 * beyond:.3f}% beyond {row['precision']} ties)"
    return text


def accuracy_why(row: dict) -> str:
    """Why a reduced-precision engine misses the pixel tolerance: how much of it is ties."""
    cost = row.get("accuracy") or {}
    changed, beyond = cost.get("class_mismatch"), cost.get("class_mismatch_beyond_ties")
    if cost.get("kind") != "pixels" or not changed or beyond is None or row["precision"] not in ("bf16", "fp16"):
        return ""
    return (f"; {100 * (changed - beyond):.3f}% of the pixels are ties: PyTorch fp32's two best scores lie within "
            f"{TIE_ULPS:g} {row['precision']} ulps of the largest score, so rounding alone can swap them (the demo "
            f"weights' random scores are close); {100 * beyond:.3f}% changed beyond ties")


def machine_lines(machine: dict) -> list[str]:
    peak = machine.get("theoretical_peak", {})
    lines = [f"CPU **{machine['cpu']}**, {machine['logical_cpus']} logical CPUs, ISA: {', '.join(machine['simd'])}; "
             f"onnxruntime {machine['onnxruntime']}, openvino {machine.get('openvino')}, torch {machine['torch']}; "
             f"`{machine['command'].strip()}`, {machine['started_utc']} to {machine.get('finished_utc', '?')} UTC; "
             f"load average (1, 5, 15 min) {tuple(machine['load_average_at_start'])} at start, "
             f"{tuple(machine.get('load_average_at_end', ()))} at end.", ""]
    clock = peak.get("clock_mhz")
    lines.append(f"Theoretical peak = {peak.get('cores')} cores x {clock:.0f} MHz ({peak.get('clock_source')}) x FLOP "
                 "per cycle per core of the ISA. Each logical CPU counts as a core with its own FMA units (lscpu "
                 "shows one thread per core; were the two vCPUs hyperthreads of one physical core, the real peak "
                 "would be half). Measured peak: the best 4096² matmul of the libraries, at the start and the "
                 "end of the run." if clock else "Clock unknown: no theoretical peak.")
    lines.append("")
    rows = []
    fp32_measured = measured_gflops(machine, "fp32")
    for precision, entry in peak.get("precisions", {}).items():
        measured = measured_gflops(machine, precision)
        if precision == "fp32":
            libs = machine.get("peak", {})
            detail = ", ".join(f"{name} {libs[key]:.0f}" for name, key in (
                ("numpy", "numpy_gflops"), ("torch", "torch_gflops"), ("ONNX Runtime", "onnxruntime_gflops"),
                ("OpenVINO", "openvino_gflops")) if libs.get(key))
        else:
            libs = machine.get("reduced_peaks", {}).get(precision, {})
            detail = ", ".join(f"{name} {libs[key]:.0f}" for name, key in (
                ("torch", "torch_gflops"), ("OpenVINO", "openvino_gflops")) if libs.get(key))
        rows.append([precision, f"{entry['flop_per_cycle_per_core']:g}", entry["why"], f"{entry['gflops']:,.0f}",
                     f"{measured:,.0f} ({detail})" if measured else "n/a", _pct(measured, entry["gflops"])])
    lines += _table(("precision", "FLOP/cycle/core", "why", "theoretical GFLOP/s", "measured matmul GFLOP/s",
                     "measured / theoretical"), rows)
    fp32_theory = theoretical_gflops(machine, "fp32")
    if clock and fp32_measured and fp32_theory and fp32_measured > fp32_theory:
        per_cycle = peak["precisions"]["fp32"]["flop_per_cycle_per_core"] * peak["cores"]
        lines += [f"The fp32 matmul beats the theoretical peak at the reported clock: the cores run at "
                  f"{fp32_measured / per_cycle:.2f} GHz or more (turbo), so every 'of theoretical peak' share "
                  "below is an upper bound.", ""]
    return lines


def pack_rows(result: dict, machine: dict) -> list[list]:
    rows = []
    for row in result["engines"]:
        achieved = row.get("achieved_gflops")
        precision = row["precision"]
        mark = " **(recommended)**" if row["label"] == result.get("recommended") else ""
        rows.append([row["label"] + mark, row["rounds"], f"{row['img_per_s']:.3f}",
                     f"{row['latency_s_median']:.2f} ({row['latency_s_best']:.2f})",
                     f"**{row['ratio_to_onnxruntime_fp32']:.2f}x**",
                     f"{achieved:,.0f}" if achieved else "n/a",
                     _pct(achieved, theoretical_gflops(machine, precision)),
                     _pct(achieved, measured_gflops(machine, precision)),
                     cost_text(row), "yes" if row["within_tolerance"] else "**no**"])
    return rows


def _best(result: dict, precision: str, exclude: str = "", fine_only: bool = False) -> dict | None:
    rows = [r for r in result["engines"] if r["precision"] == precision and r["label"] != exclude
            and (r["within_tolerance"] or not fine_only)]
    return max(rows, key=lambda r: r["img_per_s"]) if rows else None


def _limit_text(row: dict, baseline: dict, goal: float, machine: dict) -> str:
    """Why a speed goal is missed, in terms of the peak of the engine's precision."""
    achieved, needed = row.get("achieved_gflops"), (baseline.get("achieved_gflops") or 0) * goal
    theory, measured = theoretical_gflops(machine, row["precision"]), measured_gflops(machine, row["precision"])
    if not achieved:
        return ""
    return (f"; {row['label']} runs at {achieved:,.0f} GFLOP/s = {_pct(achieved, theory)} of the {row['precision']} "
            f"theoretical peak ({_pct(achieved, measured)} of the measured matmul); {goal:g}x ONNX Runtime would "
            f"need {needed:,.0f} GFLOP/s = {_pct(needed, theory)} of the theoretical peak "
            f"({_pct(needed, measured)} of the measured matmul)")


def goal_rows(results: dict[str, dict], machine: dict) -> list[list]:
    rows = []
    for pack, result in results.items():
        if "engines" not in result:
            continue
        baseline = next(r for r in result["engines"] if r["label"] == "onnxruntime fp32")
        fp32 = _best(result, "fp32", exclude="onnxruntime fp32")
        if pack in FP32_GOAL_PACKS and fp32:
            ratio = fp32["ratio_to_onnxruntime_fp32"]
            ok = fp32["within_tolerance"]
            verdict = ("met" if ratio >= FP32_GOAL and ok else
                       f"missed: accuracy ({cost_text(fp32)})" + accuracy_why(fp32) if ratio >= FP32_GOAL else
                       f"missed by {FP32_GOAL - ratio:.2f}x ({ratio / FP32_GOAL:.0%} of the goal)"
                       + _limit_text(fp32, baseline, FP32_GOAL, machine))
            rows.append([pack, f"fp32 path >= {FP32_GOAL}x ORT fp32", f"{fp32['label']}: {ratio:.2f}x, {cost_text(fp32)}",
                         verdict])
        fastest = _best(result, "bf16")
        fine = _best(result, "bf16", fine_only=True)
        if fastest:
            ratio = fastest["ratio_to_onnxruntime_fp32"]
            if fine and fine["ratio_to_onnxruntime_fp32"] >= BF16_GOAL:
                verdict = "met"
            elif ratio >= BF16_GOAL:
                verdict = (f"speed met ({ratio:.2f}x) but accuracy missed: {cost_text(fastest)}, tolerance "
                           f"{result['tolerance']}" + accuracy_why(fastest))
            else:
                verdict = (f"missed by {BF16_GOAL - ratio:.2f}x ({ratio / BF16_GOAL:.0%} of the goal)"
                           + ("" if fastest["within_tolerance"] else
                              f", and accuracy: {cost_text(fastest)}" + accuracy_why(fastest))
                           + _limit_text(fastest, baseline, BF16_GOAL, machine))
            rows.append([pack, f"bf16 path >= {BF16_GOAL:g}x ORT fp32, {result['tolerance']}",
                         f"{fastest['label']}: {ratio:.2f}x, {cost_text(fastest)}", verdict])
    return rows


def ceiling_lines(machine: dict) -> list[str]:
    """The bf16 goal against what the libraries' own matmuls reach on this CPU: a network in
    bf16 can hardly beat fp32 by more than the ratio of the two measured matmul peaks."""
    fp32, bf16 = measured_gflops(machine, "fp32"), measured_gflops(machine, "bf16")
    if not fp32 or not bf16:
        return []
    ratio = bf16 / fp32
    verdict = ("below" if ratio < BF16_GOAL else "above")
    return [f"Ceiling of the bf16 goal on this CPU: the best measured bf16 matmul ({bf16:,.0f} GFLOP/s, "
            f"{_pct(bf16, theoretical_gflops(machine, 'bf16'))} of the AMX theoretical peak) is {ratio:.2f}x the best "
            f"fp32 matmul ({fp32:,.0f} GFLOP/s), {verdict} the {BF16_GOAL:g}x asked"
            + (f": a bf16 engine beats ONNX Runtime fp32 by {BF16_GOAL:g}x only where ONNX Runtime runs below "
               f"{ratio / BF16_GOAL:.0%} of that fp32 matmul and the bf16 engine at all of its own." if ratio < BF16_GOAL
               else "."), ""]


def engines_section(machine: dict | None, results: dict[str, dict]) -> list[str]:
    measured = {pack: r for pack, r in results.items() if r}
    if not machine or not measured:
        return []
    lines = ["## Engines side by side: ONNX Runtime, OpenVINO, PyTorch; fp32, bf16, fp16", ""]
    lines += machine_lines(machine)
    over = [f"{pack} {row['label']}" for pack, result in measured.items() for row in result.get("engines", [])
            if row.get("achieved_gflops") and measured_gflops(machine, row["precision"])
            and row["achieved_gflops"] > measured_gflops(machine, row["precision"])]
    if over:
        lines += [f"**The measured matmul peaks are below what some engines reached on real networks** "
                  f"({', '.join(over[:4])}{', ...' if len(over) > 4 else ''}): they were taken with other jobs "
                  "on the cores (load average above), so they are no limit; the theoretical peak is.", ""]
    goals = goal_rows(measured, machine)
    if goals:
        lines += ["### Engine goals", ""]
        lines += _table(("pack", "goal", "measured", "verdict"), goals)
        lines += ceiling_lines(machine)
    for pack, result in measured.items():
        lines += [f"### {pack}: engines", ""]
        if "status" in result:
            lines += [result["status"], ""]
            continue
        hw = result["input_hw"]
        loads = result.get("load_average_per_round") or [0]
        guide = result.get("guide_hw", hw)
        lines.append(f"Input {hw[0]}x{hw[1]}" + (" (quick mode, not the guide's)" if result.get("quick") else
                                                 f" (**not the guide's {guide[0]}x{guide[1]}**)" if guide != hw else
                                                 " (the guide's)")
                     + f", batch 1, {result['threads']} threads, demo weights, {len(result['bins'])} bins from the "
                     f"pack's preprocess of synthetic images, used in turn; {result['rounds_planned']} rounds, each "
                     "engine once per round in a rotating order; throughput from the median round. "
                     f"{result['flops_per_image'] / 1e9:,.1f} GFLOP per image ({result['flops_source']}). "
                     f"Load average over the rounds {min(loads):.2f} to {max(loads):.2f}. CPU {result['cpu']} "
                     f"({', '.join(result['cpu_isa'])}). Accuracy against PyTorch fp32 on the same bins "
                     f"(worst output); tolerance: {result['tolerance']}. Recommended: **{result['recommended']}**.")
        lines.append("")
        lines += _table(("engine", "rounds", "img/s", "s per image: median (best)", "vs ORT fp32",
                         "achieved GFLOP/s", "of theoretical peak (its precision)", "of measured matmul (its precision)",
                         "accuracy vs PyTorch fp32", "within tolerance"), pack_rows(result, machine))
    return lines
