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

from common.cli import UserError, script_entry
from common.fsio import write_json_atomic
from common.parity import Difference, compare_arrays, merge
from common.report import summary_markdown


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: not found (did the step before it run?)") from None
    except ValueError:
        raise UserError(f"{path}: not valid JSON") from None


def lookup(values: dict, dotted_key: str, path: Path):
    for part in dotted_key.split("."):
        if not isinstance(values, dict) or part not in values:
            raise UserError(f"{path}: no '{dotted_key}' value")
        values = values[part]
    return values


def compare_output_folders(reference: Path, candidate: Path, dtypes: list[str]) -> Difference:
    """Compare `<stem>_<k>.bin` pairs; output k is read with dtypes[k] (last one repeats)."""
    differences = []
    for ref_path in sorted(reference.glob("*.bin")):
        cand_path = candidate / ref_path.name
        if not cand_path.is_file():
            raise UserError(f"{cand_path}: missing, the PyTorch run has it")
        index = int(ref_path.stem.rsplit("_", 1)[1])
        dtype = np.dtype(dtypes[min(index, len(dtypes) - 1)])
        differences.append(compare_arrays(np.fromfile(ref_path, dtype), np.fromfile(cand_path, dtype)))
    return merge(differences)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True)
    parser.add_argument("--work", required=True, help="the pack's work folder")
    parser.add_argument("--metric", required=True, help="display name, e.g. mIoU")
    parser.add_argument("--key", required=True, help="dotted key of the metric in the metric JSONs")
    parser.add_argument("--backend", default="onnxruntime", help="backend result name under result/")
    parser.add_argument("--output-dtypes", default="float32", help="comma list, one per model output")
    parser.add_argument("--data", default="synthetic", help="what data was used (synthetic or a path)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    work = Path(args.work)
    metric_paths = {name: work / f"metric_{name}.json" for name in ("pytorch", args.backend)}
    values = {name: float(lookup(read_json(p), args.key, p)) for name, p in metric_paths.items()}
    summaries = {name: read_json(work / "result" / f"{name}_summary.json") for name in ("pytorch", args.backend)}
    parity = compare_output_folders(work / "result" / "pytorch", work / "result" / args.backend,
                                    args.output_dtypes.split(","))
    row = {
        "pack": args.pack, "backend": args.backend, "images": summaries[args.backend]["samples"],
        "metric": args.metric, "pytorch": values["pytorch"], "backend_value": values[args.backend],
        "difference": values[args.backend] - values["pytorch"], "parity_max_rel": parity.max_rel,
        "parity_max_abs": parity.max_abs, "parity_cosine": parity.cosine,
        "throughput_img_s": summaries[args.backend]["throughput"],
        "pytorch_throughput_img_s": summaries["pytorch"]["throughput"], "data": args.data,
        "status": "ok",
    }
    write_json_atomic(work / "summary_row.json", row)
    print(summary_markdown([row]), end="")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
