"""The precision report: one JSON document, and the lines printed from it."""
from __future__ import annotations

from typing import Sequence

from common.fp16.compare import DEPARTURE_CHANGED, DEPARTURE_COSINE, OutputComparison, TensorStats, Tolerance
from common.runtime.cpu_info import cpu_flags, cpu_model

EMULATED = [
    "matrix operators (Conv, ConvTranspose, MatMul, Gemm) in float16: data, weights and bias rounded "
    "to float16, products summed in float32 (the Cube unit's accumulator), the result rounded to float16",
    "vector operators under force_fp16: float inputs and outputs rounded to float16 (round to nearest "
    "even); elementwise arithmetic is then exactly float16 arithmetic",
    "float16 overflow: inf past 65504 (inf_nan, Atlas A2/A3) or clipped to +-65504 (saturation, Atlas "
    "inference products such as Ascend310P and Atlas training products)",
    "allow_fp32_to_fp16: matrix operators as above, every vector operator in float32",
    "must_keep_origin_dtype and --keep_dtype nodes: float32; their float16 consumers round what they read",
    "the shape subgraph (from Shape/Size and constants), integer tensors and Resize/Clip/Pad parameters "
    "stay as they are: ATC folds them at compile time",
]
NOT_EMULATED = [
    "an operator's internal order and precision: reductions and interpolations (Softmax, ReduceMean, "
    "AveragePool, Resize, normalisations) sum in float32 here; an NPU kernel summing in float16 loses "
    "more and can overflow inside an operator whose output fits",
    "the order of the float32 accumulation inside a Cube tile (here: ONNX Runtime's order)",
    "ATC's fusions and graph rewrites, and which vector operators of a given chip lack a float32 "
    "implementation (allow_fp32_to_fp16 assumes every one has it)",
    "subnormal handling: kept as IEEE subnormals here; whether a kernel flushes them to zero is not known",
    "saturation mode turning NaN into 0",
    "operators placed on the AI CPU, which compute in their own precision",
]


def cpu_description() -> dict:
    """The CPU the figures come from, with the float16/bfloat16-related ISA flags it reports."""
    wanted = ("f16c", "avx512f", "avx512_fp16", "amx_fp16", "avx512_bf16", "amx_bf16", "amx_tile")
    return {"model_name": cpu_model(), "isa": [flag for flag in wanted if flag in cpu_flags()]}


def tensor_summary(stats: Sequence[TensorStats]) -> dict:
    departing = [s for s in stats if s.departs]
    beyond = [s for s in stats if s.beyond_fp16_max]
    overflow = [s for s in stats if s.fp16_overflow]

    def short(s: TensorStats) -> dict:
        full = s.as_dict()
        return {key: full[key] for key in ("tensor", "node", "op_type", "position", "min", "max", "cosine",
                                           "changed_fraction", "beyond_fp16_max", "fp16_overflow")}

    return {
        "departure_cosine": DEPARTURE_COSINE,
        "departure_changed": DEPARTURE_CHANGED,
        "tensors": len(stats),
        "first_departing": short(departing[0]) if departing else None,
        "departing": [short(s) for s in departing],
        "first_beyond_fp16_max": short(beyond[0]) if beyond else None,
        "beyond_fp16_max": [short(s) for s in beyond],
        "fp16_overflow": [short(s) for s in overflow],
        "values": sum(s.values for s in stats),
        "values_subnormal_in_fp16": sum(s.subnormal_in_fp16 for s in stats),
        "values_zero_in_fp16": sum(s.zero_in_fp16 for s in stats),
        "tensors_with_values_zero_in_fp16": sum(1 for s in stats if s.zero_in_fp16),
    }


def outputs_block(comparisons: Sequence[OutputComparison], tolerance: Tolerance) -> dict:
    rows = [c.as_dict(tolerance) for c in comparisons]
    return {"outputs": rows, "meets_tolerance": all(not row["failures"] for row in rows)}


# ---- printing -----------------------------------------------------------------------------

def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def output_lines(block: dict, indent: str = "  ") -> list[str]:
    lines = [f"{indent}{'output':<24} {'cosine':>10} {'max abs diff':>13} {'max rel diff':>13} "
             f"{'class changed (beyond ties)':>28}  verdict"]
    for row in block["outputs"]:
        verdict = "ok" if not row["failures"] else "; ".join(row["failures"])
        changed = ("-" if row["class_changed"] is None
                   else f"{row['class_changed']:.4%} ({row['class_changed_beyond_ties']:.4%})")
        lines.append(f"{indent}{row['name']:<24} {_num(row['cosine'], '.6f'):>10} "
                     f"{_num(row['max_abs_diff'], '.3g'):>13} {_num(row['max_rel_diff'], '.3g'):>13} "
                     f"{changed:>28}  {verdict}")
    return lines


def _tensor_line(entry: dict, total_nodes: int) -> str:
    if entry.get("changed_fraction") is not None:
        cosine = f"{entry['changed_fraction']:.2%} of its values differ"
    elif entry["cosine"] is None:
        cosine = "inf/NaN in float16"
    else:
        cosine = f"cosine {entry['cosine']:.5f}"
    return (f"{entry['node']} ({entry['op_type']}, node {entry['position'] + 1} of {total_nodes}): {cosine}, "
            f"float32 range [{_num(entry['min'], '.4g')}, {_num(entry['max'], '.4g')}]")


def print_report(report: dict, max_lines: int = 10) -> None:
    print(f"fp16 prediction: {report['model']} under --precision_mode {report['precision_mode']} "
          f"(overflow {report['overflow_mode']}), {len(report['samples'])} of {report['samples_available']} "
          f"sample(s); {report['nodes_fp16']} of {report['nodes_total']} nodes in float16"
          + (f", {len(report['kept_nodes'])} kept in float32" if report["kept_nodes"] else ""))
    print("outputs against float32:")
    for line in output_lines(report["emulated"]):
        print(line)
    tensors = report.get("tensors_summary")
    total = report["nodes_total"]
    if tensors:
        first = tensors["first_departing"]
        print(f"first tensor departing from float32 (cosine < {tensors['departure_cosine']}, or over "
              f"{tensors['departure_changed']:.0%} of an integer tensor changed): "
              + (_tensor_line(first, total) if first else f"none of {tensors['tensors']}"))
        for entry in tensors["departing"][1:max_lines]:
            print(f"  then {_tensor_line(entry, total)}")
        if len(tensors["departing"]) > max_lines:
            print(f"  ... {len(tensors['departing']) - max_lines} more in the JSON report")
        beyond = tensors["beyond_fp16_max"]
        print("float32 values beyond float16's 65504: "
              + (f"{len(beyond)} tensor(s), first {_tensor_line(beyond[0], total)}" if beyond else "none"))
        overflow = tensors["fp16_overflow"]
        print("float16 overflow in the emulated run: "
              + (f"{len(overflow)} tensor(s), first {overflow[0]['node']}" if overflow else "none"))
        print(f"values float16 rounds to zero: {tensors['values_zero_in_fp16']} of {tensors['values']} "
              f"(in {tensors['tensors_with_values_zero_in_fp16']} tensors); subnormal in float16: "
              f"{tensors['values_subnormal_in_fp16']}")
    search = report.get("search")
    if search:
        if not search["met"]:
            print(f"keep list: none found ({search['note']}; {search['evaluations']} evaluations)")
        elif not search["keep"]:
            print(f"keep list: empty, nothing needs float32 ({search['evaluations']} evaluation(s)); "
                  f"written to {report['keep_dtype_written']}")
        else:
            shown = ", ".join(search["keep"][:max_lines]) + (" ..." if len(search["keep"]) > max_lines else "")
            print(f"keep list: {len(search['keep'])} node(s) ({search['evaluations']} evaluations): {shown}")
            print(f"  written to {report['keep_dtype_written']}; outputs with it:")
            for line in output_lines(report["with_keep_dtype"], indent="    "):
                print(line)
    elif report.get("search_skipped"):
        print(f"keep list: not searched ({report['search_skipped']})")
    openvino = report.get("openvino_f16")
    if openvino:
        if "skipped" in openvino:
            print(f"OpenVINO f16 second opinion: skipped ({openvino['skipped']})")
        else:
            print(f"OpenVINO f16 second opinion ({openvino['device']}, OpenVINO {openvino['openvino']}, "
                  f"precision {openvino['inference_precision']}):")
            for line in output_lines(openvino):
                print(line)
    print(f"report: {report['report_path']}")
