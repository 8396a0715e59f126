"""One summary row for a pack's demo/validation run: `python3 -m common.pack_summary ...`.

Reads what the pack's run left in its work folder (the metric JSON of the PyTorch run and of
the backend run, both inference summaries, both output folders), compares the outputs file by
file and writes `<work>/summary_row.json`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from common.binio import list_bins
from common.cli import UserError, script_entry
from common.fsio import write_json_atomic
from common.parity import Difference, compare_arrays, merge
from common.report import summary_markdown
from common.results import split_output_name


def read_json(path: Path) -> dict:
    """A JSON object from a file; anything else (absent, cut, a list) is a one-line error."""
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (did the step before it run?)") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise UserError(f"{path}: not valid JSON (cut short by an interrupted run?)") from None
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror})") from None
    if not isinstance(values, dict):
        raise UserError(f"{path}: expected a JSON object, found {type(values).__name__}")
    return values


def lookup_number(values: dict, dotted_key: str, path: Path) -> float:
    value = lookup(values, dotted_key, path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"{path}: '{dotted_key}' is {value!r:.40}, not a number")
    return float(value)


def lookup(values: dict, dotted_key: str, path: Path):
    for part in dotted_key.split("."):
        if not isinstance(values, dict) or part not in values:
            raise UserError(f"{path}: no '{dotted_key}' value")
        values = values[part]
    return values


def compare_output_folders(reference: Path, candidate: Path, dtypes: list[str],
                           classes: list[int | None] | None = None) -> Difference:
    """Compare `<stem>_<k>.bin` pairs; output k is read with dtypes[k] (last one repeats).

    `classes[k]` (last one repeats; None: not a class output) marks output k as per-class
    scores, class axis first, when its dtype is a float, or as a class map when it is an
    integer: the result then also holds the fraction of positions whose class differs, which
    says more than the largest value difference when one near-tie flips (PointRend)."""
    classes = classes or [None]
    differences = []
    # list_bins, not Path.glob: pathlib's `*` also matches the hidden temporary files that a
    # killed run leaves behind.
    for ref_path in list_bins(reference):
        cand_path = candidate / ref_path.name
        if not cand_path.is_file():
            raise UserError(f"{cand_path}: missing, the PyTorch run has it")
        _, index = split_output_name(ref_path)
        dtype = np.dtype(dtypes[min(index, len(dtypes) - 1)])
        ref, cand = np.fromfile(ref_path, dtype), np.fromfile(cand_path, dtype)
        if ref.shape != cand.shape:
            raise UserError(f"{cand_path}: {cand_path.stat().st_size} bytes, the PyTorch output has "
                            f"{ref_path.stat().st_size}")
        differences.append(compare_classes(ref, cand, classes[min(index, len(classes) - 1)], cand_path))
    if not differences:
        raise UserError(f"{reference}: no output bins to compare")
    return merge(differences)


def compare_classes(ref: np.ndarray, cand: np.ndarray, num_classes: int | None, path: Path) -> Difference:
    if num_classes is None:
        return compare_arrays(ref, cand)
    if np.issubdtype(ref.dtype, np.integer):  # a class map: compare the ids themselves
        difference = compare_arrays(ref, cand)
        difference.argmax_mismatch = float(np.mean(ref != cand)) if ref.size else 0.0
        return difference
    if ref.size % num_classes:
        raise UserError(f"{path}: {ref.size} values do not split into {num_classes} class planes")
    return compare_arrays(ref.reshape(num_classes, -1), cand.reshape(num_classes, -1), class_axis=0)


def parse_classes(text: str) -> list[int | None]:
    """`--classes 21` or `--classes none,21` (one entry per output, 'none' for a non-class output)."""
    values = []
    for part in text.split(","):
        part = part.strip()
        if part.lower() in ("", "-", "none"):
            values.append(None)
        elif part.isdigit() and int(part) > 0:
            values.append(int(part))
        else:
            raise UserError(f"--classes {text}: expected positive class counts or 'none', comma separated")
    return values


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True)
    parser.add_argument("--work", required=True, help="the pack's work folder")
    parser.add_argument("--metric", required=True, help="display name, e.g. mIoU")
    parser.add_argument("--key", required=True, help="dotted key of the metric in the metric JSONs")
    parser.add_argument("--backend", default="onnxruntime", help="backend result name under result/")
    parser.add_argument("--output-dtypes", default="float32", help="comma list, one per model output")
    parser.add_argument("--classes", default="none",
                        help="comma list, one per model output: number of classes of a per-class score output "
                             "(class axis first) or class-map output, 'none' for other outputs; last one repeats")
    parser.add_argument("--data", default="synthetic", help="what data was used (synthetic or a path)")
    parser.add_argument("--inputs-per-image", type=int, default=1,
                        help="model inputs made from one image (Wseg: 8 scales/flips), to count images")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    work = Path(args.work)
    metric_paths = {name: work / f"metric_{name}.json" for name in ("pytorch", args.backend)}
    values = {name: lookup_number(read_json(p), args.key, p) for name, p in metric_paths.items()}
    summary_paths = {name: work / "result" / f"{name}_summary.json" for name in ("pytorch", args.backend)}
    summaries = {name: read_json(p) for name, p in summary_paths.items()}
    for name, summary in summaries.items():
        lookup_number(summary, "samples", summary_paths[name])
        lookup_number(summary, "throughput", summary_paths[name])
    parity = compare_output_folders(work / "result" / "pytorch", work / "result" / args.backend,
                                    args.output_dtypes.split(","), parse_classes(args.classes))
    row = {
        "pack": args.pack, "backend": args.backend,
        "images": summaries[args.backend]["samples"] // args.inputs_per_image,
        "metric": args.metric, "pytorch": values["pytorch"], "backend_value": values[args.backend],
        "difference": values[args.backend] - values["pytorch"], "parity_max_rel": parity.max_rel,
        "parity_max_abs": parity.max_abs, "parity_cosine": parity.cosine,
        "parity_class_mismatch": parity.argmax_mismatch,
        "throughput_img_s": summaries[args.backend]["throughput"] / args.inputs_per_image,
        "pytorch_throughput_img_s": summaries["pytorch"]["throughput"] / args.inputs_per_image,
        "data": args.data,
        "status": "ok",
    }
    write_json_atomic(work / "summary_row.json", row)
    print(summary_markdown([row]), end="")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
