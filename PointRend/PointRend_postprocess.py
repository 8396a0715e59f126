"""Guide step "精度验证": output bins -> Cityscapes 19-class mIoU (table + JSON).

    python3 PointRend_postprocess.py DATA_DIR RESULT_DIR [--save_path metrics.json]

RESULT_DIR holds `<image stem>_0.bin` per input bin (ais_bench / common.infer naming), either
float32 logits [19, H, W] (the guide's export) or a class map [H, W] of uint8 or int32 (the
`--class-map` export); the kind is told apart by the file size. Outputs are paired with images
and labels by name. Logits are argmaxed (first maximum on ties, as torch.argmax); a prediction
at another size than the label is resized back (bilinear on logits, as detectron2's
sem_seg_postprocess; nearest on class maps). Labels are `*_gtFine_labelIds.png` mapped to
trainIds; void pixels (trainId 255) do not count. The score is the Cityscapes class IoU of the
official evaluator: one confusion matrix over the split, IoU = TP / (TP + FP + FN) per class,
mean over classes with a non-empty union. `--pred-dir` also writes labelId PNGs
(`<name>_pred.png`) for cityscapesScripts' own evaluator.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.cityscapes import (CITYSCAPES_CLASSES, CITYSCAPES_IGNORE, CITYSCAPES_LABEL_SET,
                                    CITYSCAPES_LABELS, CityscapesFine, read_cityscapes_label)
from common.data.images import check_label_sizes
from common.data.labels import add_unknown_ids_argument, warn_unknown_as_void
from common.eval.confusion import ConfusionMatrix
from common.eval.seg_report import report_segmentation
from common.eval.upsample import argmax_classes
from common.files.folders import output_file_parent, output_folders
from common.files.bins import read_bin, require_finite
from common.files.outputs import match_outputs, output_file, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.pipeline.preprocess import META_NAME, add_scoring_arguments, find_meta, read_meta
from common.pipeline.sizes import check_run_size
from pointrend import config
from pointrend.config import NUM_CLASSES
from common.viz.draw import save_encoded
from common.viz.palettes import CITYSCAPES
from common.viz.show import add_show_dir_argument, write_show_pictures
OUTPUT_KINDS = {  # name -> (bytes per pixel, numpy dtype, has a class axis)
    "float32": (4 * NUM_CLASSES, np.float32, True),
    "int32": (4, np.int32, False),
    "uint8": (1, np.uint8, False),
}


def train_id_to_label_id_lut() -> np.ndarray:
    lut = np.zeros(256, dtype=np.uint8)  # anything unknown -> 0 "unlabeled"
    for label in CITYSCAPES_LABELS:
        if label.train_id != CITYSCAPES_IGNORE:
            lut[label.train_id] = label.label_id
    return lut


def output_kind(path: Path, input_hw: tuple[int, int]) -> str:
    """Which export produced the file, from its size; any other size is a one-line error."""
    pixels = input_hw[0] * input_hw[1]
    size = path.stat().st_size
    for kind, (bytes_per_pixel, _, _) in OUTPUT_KINDS.items():
        if size == bytes_per_pixel * pixels:
            return kind
    expected = ", ".join(f"{b * pixels} ({k})" for k, (b, _, _) in OUTPUT_KINDS.items())
    raise UserError(f"{path}: {size} bytes, expected one of {expected} for input "
                    f"{input_hw[0]}x{input_hw[1]}")


def read_prediction(path: Path, input_hw: tuple[int, int], label_hw: tuple[int, int]) -> np.ndarray:
    """trainId map (uint8) at the label's size from one output bin of either kind."""
    kind = output_kind(path, input_hw)
    _, dtype, has_class_axis = OUTPUT_KINDS[kind]
    if has_class_axis:
        logits = require_finite(read_bin(path, (NUM_CLASSES, *input_hw), dtype), path)
        if tuple(label_hw) != tuple(input_hw):
            hwc = np.ascontiguousarray(logits.transpose(1, 2, 0))
            logits = cv2.resize(hwc, label_hw[::-1], interpolation=cv2.INTER_LINEAR).transpose(2, 0, 1)
        return argmax_classes(logits)
    class_map = read_bin(path, input_hw, dtype)
    if class_map.min() < 0 or class_map.max() >= NUM_CLASSES:
        raise UserError(f"{path}: class ids outside 0..{NUM_CLASSES - 1}")
    class_map = class_map.astype(np.uint8)
    if tuple(label_hw) != tuple(input_hw):
        class_map = cv2.resize(class_map, label_hw[::-1], interpolation=cv2.INTER_NEAREST)
    return class_map


def score_one(sample, result_dir: Path, input_hw, pred_dir: Path | None,
              show_dir: Path | None = None, unknown_as_void: bool = False) -> ConfusionMatrix:
    target, unknown = read_cityscapes_label(sample.label_path, unknown_as_void)
    stem = sample.image_path.name.split(".", 1)[0]
    prediction = read_prediction(output_file(result_dir, stem), input_hw, target.shape)
    if pred_dir is not None:
        save_encoded(pred_dir / f"{sample.name}_pred.png", train_id_to_label_id_lut()[prediction])
    if show_dir is not None:
        write_show_pictures(show_dir, sample.name, prediction, CITYSCAPES, sample.image_path)
    matrix = ConfusionMatrix(NUM_CLASSES, CITYSCAPES_IGNORE)
    matrix.update(target, prediction)
    matrix.note_unknown_as_void(unknown)
    return matrix


def read_input_hw(result_dir: Path, meta: str | None, given_hw) -> tuple[tuple[int, int], bool]:
    """The model input size from the preprocess metadata (True) or, without metadata, only when
    given with --input-size (False: main says so once the scoring is done)."""
    meta_path = find_meta(result_dir, meta, required=given_hw is None)
    if meta_path is None:
        input_hw = config.check_input_hw(given_hw)
        check_run_size(f"--input-size {input_hw[0]} {input_hw[1]}", input_hw, output_shapes=config.output_shapes)
        return input_hw, False
    recorded = read_meta(meta_path, ("input_hw",), "PointRend_preprocess.py")["input_hw"]
    try:
        input_hw = config.check_input_hw(recorded)
    except UserError as err:
        raise UserError(f"{meta_path}: {err}") from None
    if given_hw is not None and tuple(given_hw) != input_hw:
        raise UserError(f"{meta_path}: the bins were made at {input_hw[0]}x{input_hw[1]}, "
                        f"not --input-size {given_hw[0]} {given_hw[1]}")
    return input_hw, True


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data_dir", help="Cityscapes root (holds gtFine/ and leftImg8bit/)")
    parser.add_argument("result_dir", help="inference output folder, e.g. ./result/result_bs1")
    parser.add_argument("--meta", default=None, help=f"the preprocess {META_NAME} (default: found "
                        "through the run's summary JSON)")
    parser.add_argument("--input-size", type=int, nargs=2, metavar=("H", "W"), default=None,
                        help="model input size, only for results whose preprocess metadata is lost")
    parser.add_argument("--split", default="val")
    parser.add_argument("--save_path", default=None,
                        help="metric JSON (default: <result_dir>_miou.json)")
    parser.add_argument("--pred-dir", default=None,
                        help="also write labelId PNGs <name>_pred.png here (official evaluator input)")
    add_scoring_arguments(parser)
    add_unknown_ids_argument(parser)
    add_show_dir_argument(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    dataset = CityscapesFine(args.data_dir, args.split, require_labels=True)
    # headers only: a label of another size than its image would be resized and scored
    check_label_sizes([(sample.image_path, sample.label_path) for sample in dataset])
    result_dir = Path(args.result_dir)
    input_hw, from_meta = read_input_hw(result_dir, args.meta, args.input_size)
    by_stem = {sample.image_path.name.split(".", 1)[0]: sample for sample in dataset}
    stems, missing = match_outputs(result_dir, list(by_stem), allow_missing=args.allow_missing)
    warn_left_out(missing, len(by_stem))
    pred_dir = Path(args.pred_dir) if args.pred_dir else None
    save_path = Path(args.save_path) if args.save_path else Path(str(result_dir).rstrip("/") + "_miou.json")
    output_file_parent(save_path)
    output_folders(pred_dir, args.show_dir)
    matrix = ConfusionMatrix(NUM_CLASSES, CITYSCAPES_IGNORE)
    work = partial(score_one, result_dir=result_dir, input_hw=input_hw, pred_dir=pred_dir, show_dir=args.show_dir,
                   unknown_as_void=args.unknown_ids_as_void)
    for image_matrix in map_with_progress(work, [by_stem[s] for s in stems], args.workers,
                                          desc="Postprocess"):
        matrix.merge(image_matrix)
    matrix.require_scored_pixels(str(dataset.label_dir))
    save_path = Path(args.save_path) if args.save_path else Path(str(result_dir).rstrip("/") + "_miou.json")
    report_segmentation(matrix, CITYSCAPES_CLASSES, save_path, {
        "metric": "Cityscapes class IoU (19 trainIds, void ignored)",
        "output_kind": output_kind(output_file(result_dir, stems[0]), input_hw),
        "input_hw": list(input_hw), "images_left_out": len(missing), "result_dir": str(result_dir)})
    warn_unknown_as_void(matrix.unknown_as_void_pixels, matrix.unknown_as_void_images, CITYSCAPES_LABEL_SET)
    print(f"acc result (mIoU %): {100 * matrix.mean_iou():.4f}")
    if not from_meta:
        print(f"[WARNING] {result_dir}: no {META_NAME} found; scored as outputs of --input-size "
              f"{input_hw[0]} {input_hw[1]}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
