"""One summary row for a pack's demo/validation run: `python3 -m common.pack_summary ...`.

Reads what the pack's run left in its work folder (the metric JSON of the PyTorch run and of
the backend run, both inference summaries, both output folders), compares the outputs file by
file and writes `<work>/summary_row.json`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import script_entry
from common.files.atomic import write_json_atomic
from common.files.json_files import lookup_number, read_json
from common.summary.markdown import summary_markdown
from common.pipeline.packs import PACK_NAMES, pack_config
from common.eval.parity import compare_output_folders


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python3 -m common.pack_summary", description=__doc__.split("\n")[0])
    parser.add_argument("--pack", required=True, choices=PACK_NAMES)
    parser.add_argument("--work", required=True, help="the pack's work folder")
    parser.add_argument("--backend", default="onnxruntime", help="backend result name under result/")
    parser.add_argument("--data", default="synthetic", help="what data was used (synthetic or a path)")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    config = pack_config(args.pack)
    work = Path(args.work)
    metric_paths = {name: work / f"metric_{name}.json" for name in ("pytorch", args.backend)}
    values = {name: lookup_number(read_json(p), config.metric.key, p) for name, p in metric_paths.items()}
    summary_paths = {name: work / "result" / f"{name}_summary.json" for name in ("pytorch", args.backend)}
    summaries = {name: read_json(p) for name, p in summary_paths.items()}
    for name, summary in summaries.items():
        lookup_number(summary, "samples", summary_paths[name])
        lookup_number(summary, "throughput", summary_paths[name])
    parity = compare_output_folders(work / "result" / "pytorch", work / "result" / args.backend,
                                    [t.dtype for t in config.outputs], [t.classes for t in config.outputs])
    per_image = config.inputs_per_image
    row = {
        "pack": args.pack, "backend": args.backend,
        "images": summaries[args.backend]["samples"] // per_image,
        "metric": config.metric.name, "pytorch": values["pytorch"], "backend_value": values[args.backend],
        "difference": values[args.backend] - values["pytorch"], "parity_max_rel": parity.max_rel,
        "parity_max_abs": parity.max_abs, "parity_cosine": parity.cosine,
        "parity_class_mismatch": parity.argmax_mismatch,
        "throughput_img_s": summaries[args.backend]["throughput"] / per_image,
        "pytorch_throughput_img_s": summaries["pytorch"]["throughput"] / per_image,
        "data": args.data,
        "status": "ok",
    }
    write_json_atomic(work / "summary_row.json", row)
    print(summary_markdown([row]), end="")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
