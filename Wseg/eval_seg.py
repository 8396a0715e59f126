"""Guide step "精度验证" 2: mIoU of PNG masks against VOC labels (upstream eval_seg.py).

    python3 eval_seg.py --data DATA --filelist VAL_LIST --masks DIR [--save_path JSON]

One 21x21 confusion matrix over every labelled pixel of the list (label 255 ignored); per
class IoU = TP / (TP + FP + FN), precision and recall, with a class absent from labels and
predictions counting as 0 as upstream does. Printed like upstream: "mIoU" over the 20
foreground classes, then "With background" over all 21, which is the figure the paper and
the guide report (62.7 with CRF, 59.7 raw, on VOC val). Upstream skips an image whose mask is
missing or of the wrong size with only a message; here that is an error unless
--allow-missing, and the JSON records how many were skipped.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from common.cli import UserError, doc_parser, script_entry  # first: a Ctrl-C during the imports below is one line

import numpy as np
from tqdm import tqdm

from common.data.images import check_label_sizes, read_class_map_png
from common.data.labels import add_unknown_ids_argument, warn_unknown_as_void
from common.data.voc import (VOC_CLASSES, VOC_IGNORE, VOC_LABEL_SET, check_exist, read_sample_list,
                             read_voc_label)
from common.files.atomic import write_json_atomic
from common.files.folders import output_file_parent
from common.eval.confusion import ConfusionMatrix

NUM_CLASSES = len(VOC_CLASSES)
PER_CLASS_KEYS = ("iou", "precision", "recall", "gt_pixels")  # the JSON's per-class entries


def parse_args(argv=None) -> argparse.Namespace:
    parser = doc_parser(__doc__)
    parser.add_argument("--data", type=Path, required=True, help="data root holding voc/VOCdevkit/VOC2012")
    parser.add_argument("--filelist", type=Path, required=True, help="val_voc.txt or a plain id list")
    parser.add_argument("--masks", type=Path, required=True, help="folder of <id>.png class-index masks")
    parser.add_argument("--save_path", type=Path, default=None,
                        help="metric JSON (default: <masks>_miou.json)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="skip images whose mask is missing or of the wrong size (upstream)")
    add_unknown_ids_argument(parser)
    return parser.parse_args(argv)


def read_prediction(path: Path) -> np.ndarray:
    return read_class_map_png(path, "mask")


def table(stats: dict[str, np.ndarray], miou_fg: float, miou_all: float, images: int) -> str:
    width = max(len(name) for name in VOC_CLASSES)
    lines = [f"{'class':<{width}}  {'gt pixels':>10}  {'IoU':>6}  {'Pr':>6}  {'Re':>6}"]
    for index, name in enumerate(VOC_CLASSES):
        lines.append(f"{name:<{width}}  {int(stats['gt_pixels'][index]):>10}  "
                     f"{100 * stats['iou'][index]:6.2f}  {100 * stats['precision'][index]:6.2f}  "
                     f"{100 * stats['recall'][index]:6.2f}")
    lines += [f"# of images: {images}",
              f"mIoU (20 classes, no background): {100 * miou_fg:.2f}",
              f"With background: mIoU (21 classes): {100 * miou_all:.2f}"]
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    samples = read_sample_list(args.data, args.filelist)
    check_exist(samples, labels=True)
    check_label_sizes([(sample.image_path, sample.label_path) for sample in samples])
    if not args.masks.is_dir():
        raise UserError(f"{args.masks}: mask folder not found")
    save_path = output_file_parent(args.save_path or Path(str(args.masks).rstrip("/") + "_miou.json"))
    matrix = ConfusionMatrix(NUM_CLASSES, VOC_IGNORE)
    skipped = []
    for sample in tqdm(samples, desc="Evaluate", unit="img"):
        label, unknown = read_voc_label(sample.label_path, args.unknown_ids_as_void)
        path = args.masks / f"{sample.label_path.stem}.png"
        if not path.is_file() and args.allow_missing:
            skipped.append(sample.image_id)
            continue
        prediction = read_prediction(path)
        if prediction.shape != label.shape:
            if args.allow_missing:
                skipped.append(sample.image_id)
                continue
            raise UserError(f"{path}: mask is {prediction.shape}, label {sample.label_path} is {label.shape}")
        if prediction.size and prediction.max() >= NUM_CLASSES:
            raise UserError(f"{path}: holds class id {int(prediction.max())}, expected 0..{NUM_CLASSES - 1}")
        matrix.update(label, prediction)
        matrix.note_unknown_as_void(unknown)
    if matrix.images == 0:
        raise UserError(f"{args.masks}: no mask could be scored")
    matrix.require_scored_pixels(str(args.filelist))
    stats = matrix.class_statistics()
    miou_all, miou_fg = float(stats["iou"].mean()), float(stats["iou"][1:].mean())
    print(table(stats, miou_fg, miou_all, matrix.images))
    if skipped:
        print(f"skipped {len(skipped)} image(s) without a usable mask (first: {', '.join(skipped[:3])})")
    result = {"miou": miou_all, "miou_foreground": miou_fg, "images": matrix.images,
              "images_skipped": len(skipped), "skipped_ids": skipped, "masks": str(args.masks),
              "label_pixels_unknown_as_void": matrix.unknown_as_void_pixels,
              "per_class": {name: {key: float(stats[key][i]) for key in PER_CLASS_KEYS}
                            for i, name in enumerate(VOC_CLASSES)},
              "confusion_matrix": matrix.matrix.tolist()}
    write_json_atomic(save_path, result)
    warn_unknown_as_void(matrix.unknown_as_void_pixels, matrix.unknown_as_void_images, VOC_LABEL_SET)
    print(f"miou: {miou_all:.6f}\nmetrics written to {save_path}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
