"""What the "优化onnx" Resize edit costs: compare two result folders and their metric JSONs.

`python3 resize_edit_report.py --reference results/linear --candidate results/nearest
--reference-metric result_linear.json --candidate-metric result_nearest.json --save_path X.json`

Per output (`_0` aux, `_1` OCR): max abs and relative difference, cosine, and the fraction of
1/4-resolution positions whose argmax class changes; then the mIoU of both runs (the
postprocess JSONs, guide key `value.mean_Iou`) and their difference. Works for any two runs of
the same bins (e.g. unedited vs edited graph, ONNX Runtime vs the Ascend .om).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

from hrnet3d.config import NUM_CLASSES
from common.files.atomic import write_json_atomic
from common.eval.parity import compare_output_folders

OUTPUT_LABELS = {0: "aux (output1)", 1: "OCR (output2)"}


def compare_runs(reference: Path, candidate: Path) -> dict[int, dict]:
    """Per output index: worst-case differences over all files, and the class changes."""
    differences = compare_output_folders(reference, candidate, ["float32"], [NUM_CLASSES], by_output=True)
    return {index: difference.to_dict() for index, difference in differences.items()}


def read_miou(path: Path) -> float:
    try:
        return float(json.loads(path.read_text(encoding="utf-8"))["value"]["mean_Iou"])
    except FileNotFoundError:
        raise UserError(f"{path}: metric JSON not found") from None
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: no value.mean_Iou (not an HRNet_postprocess.py result)") from None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reference", required=True, help="result folder of the unedited graph")
    parser.add_argument("--candidate", required=True, help="result folder of the edited graph (or the .om)")
    parser.add_argument("--reference-metric", default=None, help="HRNet_postprocess.py JSON of the reference")
    parser.add_argument("--candidate-metric", default=None, help="HRNet_postprocess.py JSON of the candidate")
    parser.add_argument("--save_path", default="./resize_edit.json")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    outputs = compare_runs(Path(args.reference), Path(args.candidate))
    report = {"reference": args.reference, "candidate": args.candidate,
              "outputs": {OUTPUT_LABELS.get(k, str(k)): v for k, v in outputs.items()}}
    for index, diff in outputs.items():
        print(f"{OUTPUT_LABELS.get(index, index):<14} max abs {diff['max_abs']:.3g}  max rel {diff['max_rel']:.3g}  "
              f"cosine {diff['cosine']:.6f}  argmax changed at {100 * diff['argmax_mismatch']:.2f}% of positions")
    if args.reference_metric and args.candidate_metric:
        ref_miou, cand_miou = read_miou(Path(args.reference_metric)), read_miou(Path(args.candidate_metric))
        report["mean_Iou"] = {"reference": ref_miou, "candidate": cand_miou, "difference": cand_miou - ref_miou}
        print(f"mean_Iou       reference {ref_miou:.6f}  candidate {cand_miou:.6f}  "
              f"difference {cand_miou - ref_miou:+.6f}")
    write_json_atomic(args.save_path, report)
    print(f"written to {args.save_path}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
