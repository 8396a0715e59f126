"""One summary row for a pack's demo/validation run: `python3 -m common.pack_summary ...`.

Reads what the pack's run left in its work folder (the metric JSON of the PyTorch run and of
the backend run, both inference summaries, both output folders), compares the outputs file by
file and writes `<work>/summary_row.json`.
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from common.cli import script_entry
from common.files.atomic import write_json_atomic
from common.files.folders import output_file_parent
from common.files.json_files import lookup_number, read_json
from common.summary.markdown import summary_markdown
from common.pipeline.packs import PACK_NAMES, pack_config
from common.runtime.precision import DEFAULT_PRECISION
from common.summary.verdict import detection_verdict, segmentation_verdict, tolerance_for
from common.eval.parity import compare_detection_folders, compare_output_folders

REFERENCE = "pytorch"  # the run every backend is judged against (float32)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.pack_summary", description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True, choices=PACK_NAMES)
    parser.add_argument("--work", required=True, help="the pack's work folder")
    parser.add_argument("--backend", default="onnxruntime", help="backend result name under result/")
    parser.add_argument("--data", default="synthetic", help="what data was used (synthetic, or the real root)")
    parser.add_argument("--weights", default=None, help="the checkpoint file the runs used")
    parser.add_argument("--demo-weights", action="store_true", help="the checkpoint holds demo (random) weights")
    return parser.parse_args(argv)


def weights_label(path: str | None, demo: bool) -> str:
    """`demo (random values)` or the real file's name with the start of its sha256, so a row says
    which checkpoint it scored."""
    if path is None:
        return "not recorded"
    if demo:
        return f"demo (random values, {Path(path).name})"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{Path(path).name} (sha256 {digest.hexdigest()[:12]})"


def fp16_summary(report: dict) -> str:
    """One phrase of common.precision's report: does force_fp16 keep the outputs within its
    tolerance, by how much, and where the float16 run first departs or overflows."""
    emulated = report.get("emulated") or {}
    outputs = emulated.get("outputs") or []
    cosines = [o["cosine"] for o in outputs if o.get("cosine") is not None]
    tensors = report.get("tensors_summary") or {}
    parts = ["within tolerance" if emulated.get("meets_tolerance") else "beyond tolerance"]
    if cosines:
        parts.append(f"output cosine >= {min(cosines):.6f}")
    parts += _class_change_phrases(outputs)
    nonfinite = sum(o.get("nonfinite") or 0 for o in outputs)
    if "tensors_summary" not in report:  # --no-tensors: only the outputs were compared
        parts.append(f"{nonfinite} inf/NaN output values" if nonfinite else "finite outputs")
        parts.append("per-tensor ranges not computed")
    else:
        overflow = tensors.get("fp16_overflow") or []
        parts.append(f"overflow in {len(overflow)} tensor(s)" if overflow else "no overflow")
    first = tensors.get("first_departing")
    if first:
        parts.append(f"first departs at {first.get('node') or first.get('tensor')}")
    keep = report.get("keep_dtype_nodes")
    if keep:
        parts.append(f"keep list of {len(keep)} node(s)")
    return "; ".join(parts)


def _class_change_phrases(outputs: list[dict]) -> list[str]:
    """Class logits count pixels (beyond ties); an integer output (MaskRCNN's labels) counts its
    own values."""
    changed = [o["class_changed_beyond_ties"] for o in outputs
               if o.get("class_changed_beyond_ties") is not None and not o.get("integer")]
    phrases = [f"{100 * max(changed):.3g} % of pixels of another class beyond ties"] if changed else []
    return phrases + [f"{100 * o['class_changed']:.3g} % of the '{o['name']}' values differ"
                      for o in outputs if o.get("integer") and o.get("class_changed")]


def keep_list_summary(report: dict, keep_file: str) -> str:
    """The prediction with the pack's shipped keep list, as a phrase after the one without."""
    emulated = report.get("emulated") or {}
    verdict = "within tolerance" if emulated.get("meets_tolerance") else "still beyond tolerance"
    details = "".join(f", {phrase}" for phrase in _class_change_phrases(emulated.get("outputs") or []))
    return (f"with the shipped {keep_file} ({len(report.get('kept_nodes') or [])} nodes in float32): "
            f"{verdict}{details}")


def main(args: argparse.Namespace) -> int:
    config = pack_config(args.pack)
    work = Path(args.work)
    names = (REFERENCE, args.backend)
    metric_paths = {name: work / f"metric_{name}.json" for name in names}
    values = {name: lookup_number(read_json(p), config.metric.key, p) for name, p in metric_paths.items()}
    summary_paths = {name: work / "result" / f"{name}_summary.json" for name in names}
    summaries = {name: read_json(p) for name, p in summary_paths.items()}
    for name, summary in summaries.items():
        lookup_number(summary, "samples", summary_paths[name])
        lookup_number(summary, "throughput", summary_paths[name])
    backend_run = summaries[args.backend]
    precision = backend_run.get("precision", DEFAULT_PRECISION)
    tolerance = tolerance_for(precision)
    folders = (work / "result" / REFERENCE, work / "result" / args.backend)
    parity = compare_output_folders(*folders, [t.dtype for t in config.outputs], [t.classes for t in config.outputs])
    difference = values[args.backend] - values[REFERENCE]
    per_image = config.inputs_per_image
    row = {
        "pack": args.pack, "backend": backend_run.get("backend", args.backend), "precision": precision,
        "data": args.data, "weights": weights_label(args.weights, args.demo_weights),
        "images": backend_run["samples"] // per_image,
        "metric": config.metric.name, "pytorch": values[REFERENCE], "backend_value": values[args.backend],
        "difference": difference, "parity_max_rel": parity.max_rel,
        "parity_max_abs": parity.max_abs, "parity_cosine": parity.cosine,
        "parity_class_mismatch": parity.argmax_mismatch,
        "throughput_img_s": backend_run["throughput"] / per_image,
        "pytorch_throughput_img_s": summaries[REFERENCE]["throughput"] / per_image,
        "cpu": backend_run.get("cpu"), "tolerance": tolerance.to_dict(),
    }
    if config.compare == "detections":
        labels_index = [t.name for t in config.outputs].index("labels")
        row["detections"] = compare_detection_folders(*folders, labels_index=labels_index,
                                                      labels_dtype=config.outputs[labels_index].dtype)
        row["verdict"] = detection_verdict(difference, row["detections"], tolerance)
    else:
        row["verdict"] = segmentation_verdict(difference, parity.argmax_mismatch, parity.class_changed,
                                              parity.class_positions, tolerance)
    fp16_report = work / "fp16" / "precision_report.json"
    if fp16_report.is_file():
        row["fp16_prediction"] = fp16_summary(read_json(fp16_report))
        keep_report = work / "fp16_keep" / "precision_report.json"
        if config.fp16_keep_dtype and keep_report.is_file():
            row["fp16_prediction"] += "; " + keep_list_summary(read_json(keep_report), config.fp16_keep_dtype)
    write_json_atomic(output_file_parent(work / "summary_row.json"), row)
    print(summary_markdown([row]), end="")
    print(f"{args.pack}: {row['verdict']}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
