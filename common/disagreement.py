"""Where two runs' predictions differ: `python3 -m common.disagreement REF_SHOW CAND_SHOW --out DIR`.

REF_SHOW and CAND_SHOW are `--show-dir` folders of the same postprocess on two runs (PyTorch
and a backend, fp32 and fp16). Per image: DIR/<stem>_disagreement.png, the pixels whose class
differs drawn red over the dimmed input image, with the count; DIR/disagreement.json holds the
counts per image and in all.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

from tqdm import tqdm

from common.files.atomic import write_json_atomic
from common.files.folders import output_folder
from common.viz.disagreement import compare_pair, count_text, draw_disagreement, pair_show_dirs
from common.viz.draw import save_png

SHOW_FIRST = 3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path, help="show folder of the reference run (PyTorch, fp32)")
    parser.add_argument("candidate", type=Path, help="show folder of the run compared with it")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures and disagreement.json")
    parser.add_argument("--names", nargs=2, metavar=("REF", "CAND"), default=None,
                        help="names of the two runs on the pictures (default: the folder names)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="compare the images both folders have instead of stopping")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    pairs, only_reference, only_candidate = pair_show_dirs(args.reference, args.candidate)
    for folder, other, stems in ((args.reference, args.candidate, only_reference),
                                 (args.candidate, args.reference, only_candidate)):
        if stems and not args.allow_missing:
            raise UserError(f"{folder}: {len(stems)} image(s) have no picture in {other} "
                            f"(first: {', '.join(stems[:SHOW_FIRST])}); pass --allow-missing to compare the rest")
    if not pairs:
        raise UserError(f"{args.reference}, {args.candidate}: no image in common")
    output_folder(args.out)
    names = args.names or [args.reference.name, args.candidate.name]
    title = f"{names[0]} vs {names[1]}"
    images, differing, pixels = [], 0, 0
    for pair in tqdm(pairs, desc="Disagreement", unit="img"):
        reference, mask = compare_pair(pair)
        count = int(mask.sum())
        save_png(args.out / f"{pair.stem}_disagreement.png",
                 draw_disagreement(pair.reference.image(reference.shape), mask, count, mask.size, title))
        images.append({"stem": pair.stem, "pixels_differing": count, "pixels": int(mask.size)})
        differing, pixels = differing + count, pixels + int(mask.size)
    write_json_atomic(args.out / "disagreement.json", {
        "reference": str(args.reference), "candidate": str(args.candidate), "names": names,
        "pixels_differing": differing, "pixels": pixels, "fraction": differing / pixels,
        "images": images, "only_in_reference": only_reference, "only_in_candidate": only_candidate})
    for image in images:
        if image["pixels_differing"]:
            print(f"{image['stem']}: {count_text(image['pixels_differing'], image['pixels'])}")
    print(f"{title}, {len(images)} images: {count_text(differing, pixels)} "
          f"(pictures and disagreement.json in {args.out})")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
