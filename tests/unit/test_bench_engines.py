"""bench/engines.py and its report: accuracy cost, recommendation, peaks and goal verdicts (no timing)."""
from __future__ import annotations

import numpy as np

from bench.engines import accuracy, merge_accuracy, recommend, within_tolerance
from bench.machine import flop_per_cycle
from bench.report_engines import ceiling_lines, engines_section, goal_rows


def _logits(rng, classes=5, hw=(8, 8)):
    return rng.standard_normal((1, classes, *hw)).astype(np.float32)


def test_pixels_of_another_class_take_the_worst_class_output():
    rng = np.random.default_rng(0)
    reference = [rng.standard_normal((1, 20)).astype(np.float32), _logits(rng)]  # Wseg: cls vector + mask
    candidate = [reference[0].copy(), reference[1].copy()]
    assert accuracy("Wseg", reference, candidate)["class_mismatch"] == 0.0
    winner = candidate[1][0].argmax(0)[0, 0]
    candidate[1][0, winner, 0, 0] -= 100.0  # one of 64 pixels changes class
    cost = accuracy("Wseg", reference, candidate)
    assert cost["class_mismatch"] == 1 / 64 and not within_tolerance(cost)


def test_class_changes_at_near_ties_are_told_apart_by_the_engines_precision():
    reference = np.zeros((1, 3, 1, 2), np.float32)
    reference[0, :, 0, 0] = [8.0, 8.0 + 2 ** -6, 0.0]  # a quarter of a bf16 ulp at 8 apart: a tie
    reference[0, :, 0, 1] = [8.0, 7.0, 0.0]             # 16 bf16 ulps apart: a real change
    flipped = reference.copy()
    flipped[0, 0, 0, 0] += 1.0
    cost = accuracy("RefineNet", [reference], [flipped], "bf16")
    assert cost["class_mismatch"] == 0.5 and cost["class_mismatch_beyond_ties"] == 0.0
    flipped[0, 1, 0, 1] += 2.0  # now the wide pixel changes too
    cost = accuracy("RefineNet", [reference], [flipped], "bf16")
    assert cost["class_mismatch"] == 1.0 and cost["class_mismatch_beyond_ties"] == 0.5
    # at fp32's 2^-20 spacing near 8 the first pixel is no tie either
    assert accuracy("RefineNet", [reference], [flipped], "fp32")["class_mismatch_beyond_ties"] == 1.0


def test_detection_cost_and_tolerance():
    boxes = np.zeros((1, 100, 5), np.float32)
    boxes[0, :3] = [[0, 0, 10, 10, 0.9], [20, 20, 40, 40, 0.8], [5, 5, 50, 50, 0.7]]
    labels = np.full((1, 100), -1, np.int64)
    labels[0, :3] = [1, 2, 3]
    masks = np.zeros((1, 100, 2, 2, 2), np.float32)
    same = accuracy("MaskRCNN_mmdet", [boxes, labels, masks], [boxes.copy(), labels.copy(), masks])
    assert within_tolerance(merge_accuracy([same, same]))
    dropped = labels.copy()
    dropped[0, 2] = -1  # the candidate loses one detection
    cost = merge_accuracy([same, accuracy("MaskRCNN_mmdet", [boxes, labels, masks], [boxes, dropped, masks])])
    assert cost["matched"] == 5 and cost["reference"] == 6 and not within_tolerance(cost)


def test_recommendation_is_the_fastest_within_tolerance():
    rows = [{"label": "a", "img_per_s": 1.0, "within_tolerance": True},
            {"label": "b", "img_per_s": 4.0, "within_tolerance": False},
            {"label": "c", "img_per_s": 1.5, "within_tolerance": True}]
    assert recommend(rows) == "c"
    rows[1]["within_tolerance"] = True
    assert recommend(rows) == "b"


def test_flop_per_cycle_follows_the_isa():
    intel_amx = flop_per_cycle({"avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16"}, "GenuineIntel", 6)
    assert intel_amx["fp32"][0] == 64 and intel_amx["bf16"][0] == 1024 and intel_amx["fp16"][0] == 128
    zen4 = flop_per_cycle({"avx2", "fma", "avx512f", "avx512_bf16"}, "AuthenticAMD", 25)
    assert zen4["fp32"][0] == 32 and zen4["bf16"][0] == 64 and "fp16" not in zen4
    assert "bf16" not in flop_per_cycle({"avx2", "fma"}, "GenuineIntel", 6)


def _machine():
    return {"cpu": "Test CPU", "logical_cpus": 2, "simd": ["avx512f", "amx_bf16"], "onnxruntime": "1", "openvino": "2",
            "torch": "3", "command": "python3 -m bench", "started_utc": "t0", "finished_utc": "t1",
            "load_average_at_start": [0.1, 0.1, 0.1], "load_average_at_end": [0.2, 0.2, 0.2],
            "theoretical_peak": {"cores": 2, "clock_mhz": 2000.0, "clock_source": "cpuinfo", "precisions": {
                "fp32": {"flop_per_cycle_per_core": 64, "why": "2 FMA", "gflops": 256.0},
                "bf16": {"flop_per_cycle_per_core": 1024, "why": "AMX", "gflops": 4096.0}}},
            "peak": {"peak_gflops": 230.0, "openvino_gflops": 230.0},
            "reduced_peaks": {"bf16": {"peak_gflops": 1800.0, "torch_gflops": 1800.0}}}


def _engine(label, precision, ratio, mismatch, flops_per_image=500e9, baseline_s=2.8):
    seconds = baseline_s / ratio
    return {"label": label, "engine": label.split()[0], "precision": precision, "rounds": 5, "img_per_s": 1 / seconds,
            "latency_s_median": seconds, "latency_s_best": seconds, "ratio_to_onnxruntime_fp32": ratio,
            "achieved_gflops": flops_per_image / seconds / 1e9, "within_tolerance": mismatch <= 0.005,
            "accuracy": {"kind": "pixels", "class_mismatch": mismatch, "bins": 2, "max_rel": 1e-3}}


def _result(fp32_ratio, bf16_ratio, bf16_mismatch):
    engines = [_engine("onnxruntime fp32", "fp32", 1.0, 0.0), _engine("openvino fp32", "fp32", fp32_ratio, 0.0),
               _engine("openvino bf16", "bf16", bf16_ratio, bf16_mismatch)]
    return {"pack": "RefineNet", "engines": engines, "recommended": recommend(engines),
            "tolerance": "at most 0.5 % of pixels of another class", "input_hw": [500, 500], "threads": 2,
            "bins": ["a.bin", "b.bin"], "rounds_planned": 5, "flops_per_image": int(500e9), "flops_source": "test",
            "load_average_per_round": [0.1, 0.3], "cpu": "Test CPU", "cpu_isa": ["amx_bf16"]}


def test_goal_verdicts_turn_with_the_measured_values():
    met = goal_rows({"RefineNet": _result(1.2, 3.5, 0.001)}, _machine())
    assert [row[3] for row in met] == ["met", "met"]
    missed = goal_rows({"RefineNet": _result(1.05, 2.5, 0.001)}, _machine())
    assert missed[0][3].startswith("missed by 0.05x") and "of the fp32 theoretical peak" in missed[0][3]
    assert missed[1][3].startswith("missed by 0.50x") and "would need" in missed[1][3]
    inaccurate = goal_rows({"RefineNet": _result(1.2, 3.5, 0.02)}, _machine())
    assert inaccurate[1][3].startswith("speed met (3.50x) but accuracy missed: 2.000% pixels of another class")
    assert "ties" not in inaccurate[1][3]  # no tie count measured: no claim about ties
    result = _result(1.2, 3.5, 0.02)
    result["engines"][2]["accuracy"]["class_mismatch_beyond_ties"] = 0.0015
    why = goal_rows({"RefineNet": result}, _machine())[1][3]
    assert "(0.150% beyond bf16 ties)" in why and "1.850% of the pixels are ties" in why


def test_engine_section_names_the_cpu_and_marks_the_recommendation():
    text = "\n".join(engines_section(_machine(), {"RefineNet": _result(1.2, 3.5, 0.02), "Wseg": None}))
    assert "CPU **Test CPU**" in text and "theoretical GFLOP/s" in text
    assert "openvino fp32 **(recommended)**" in text  # bf16 is faster but outside the tolerance


def test_bf16_ceiling_is_the_ratio_of_the_measured_matmuls():
    machine = _machine()  # 1800 bf16 vs 230 fp32 GFLOP/s
    assert "is 7.83x the best fp32 matmul (230 GFLOP/s), above the 3x asked" in ceiling_lines(machine)[0]
    machine["reduced_peaks"]["bf16"]["peak_gflops"] = 543.0
    assert "2.36x the best fp32 matmul (230 GFLOP/s), below the 3x asked" in ceiling_lines(machine)[0]
    del machine["reduced_peaks"]["bf16"]
    assert ceiling_lines(machine) == []
