"""Guide step 6.1: output bins -> mIoU on VOC2012 val, printed as `miou: 0.xxxxxx`.

As the ModelZoo postprocess (docs/specs/RefineNet.md §7): the 1/4-resolution logits are upsampled
x4 (bilinear, half-pixel centres) to the 500x500 canvas, argmax is taken, and one dataset-wide
21x21 confusion matrix is accumulated against the label put through the same resize and
centred pad (pad = 255, ignored). mIoU averages the classes present in labels or predictions.
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from common.cli import UserError, script_entry  # first: a Ctrl-C during the imports below is one line

import cv2
import numpy as np

from common.data.geometry import Letterbox, letterbox
from common.data.images import image_sizes, read_palette_label
from common.data.voc import VOC_CLASSES, VOC_IGNORE, VOCSegmentation
from common.eval.confusion import ConfusionMatrix
from common.eval.seg_report import report_segmentation
from common.files.bins import read_bin, require_finite
from common.files.folders import output_file_parent, output_folders
from common.files.outputs import match_outputs, output_file, warn_left_out
from common.pipeline.parallel import map_with_progress
from common.pipeline.preprocess import META_NAME, add_run_arguments, find_meta, read_meta
from refinenet.config import NUM_CLASSES, output_shapes
from common.viz.palettes import VOC
from common.viz.show import add_show_dir_argument, write_show_pictures


def label_on_canvas(label: np.ndarray, box: Letterbox) -> np.ndarray:
    """The label through the preprocess geometry: nearest resize, centred pad with 255."""
    if label.shape != tuple(box.original_hw):
        raise UserError(f"label is {label.shape}, the preprocess saw an image of {tuple(box.original_hw)}")
    if box.resized_hw != box.original_hw:
        label = cv2.resize(label, box.resized_hw[::-1], interpolation=cv2.INTER_NEAREST)
    canvas = np.full(box.canvas_hw, VOC_IGNORE, dtype=np.uint8)
    canvas[box.pad_top:box.pad_top + box.resized_hw[0], box.pad_left:box.pad_left + box.resized_hw[1]] = label
    return canvas


def logits_to_class_map(logits_chw: np.ndarray, canvas_hw: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling with half-pixel centres (= F.interpolate align_corners=False), argmax."""
    upsampled = cv2.resize(np.ascontiguousarray(logits_chw.transpose(1, 2, 0)), canvas_hw[::-1],
                           interpolation=cv2.INTER_LINEAR)
    return upsampled.argmax(axis=2).astype(np.uint8)


def score_one(image_id: str, dataset: VOCSegmentation, result_dir: Path, geometry: dict, size: int,
              show_dir: Path | None = None) -> ConfusionMatrix:
    label = read_palette_label(dataset.label_path(image_id))
    box = geometry[image_id] if image_id in geometry else letterbox(label.shape, size)
    path = output_file(result_dir, image_id)
    logits = read_bin(path, output_shapes((size, size))[0], np.float32)
    require_finite(logits, path)
    try:
        target = label_on_canvas(label, box)
    except UserError as err:
        raise UserError(f"{dataset.label_path(image_id)}: {err}") from None
    matrix = ConfusionMatrix(NUM_CLASSES, VOC_IGNORE)
    prediction = logits_to_class_map(logits, box.canvas_hw)
    matrix.update(target, prediction)
    if show_dir is not None:  # the pad is void in the target: every scored pixel is in the image area
        write_show_pictures(show_dir, image_id, box.unpadded(prediction), VOC, dataset.image_path(image_id))
    return matrix


def load_geometry(meta_path: Path) -> tuple[dict, int]:
    """{image id: Letterbox} and the input size from the preprocess metadata, checked whole."""
    meta = read_meta(meta_path, ("size", "images"), "RefineNet_preprocess.py")
    size, records = meta["size"], meta["images"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise UserError(f"{meta_path}: 'size' is {size!r:.40}, expected a positive integer")
    if not isinstance(records, dict):
        raise UserError(f"{meta_path}: 'images' is not a mapping of image ids")
    geometry = {}
    for image_id, record in records.items():
        try:
            box = Letterbox.from_dict(record)
        except (KeyError, TypeError, ValueError, AttributeError):
            box = None
        if box is None or not _plausible(box):
            raise UserError(f"{meta_path}: the geometry of '{image_id}' is not a letterbox record")
        geometry[image_id] = box
    return geometry, size


def _plausible(box: Letterbox) -> bool:
    pairs = (box.original_hw, box.resized_hw, box.canvas_hw)
    return (all(len(pair) == 2 and all(type(v) is int and v > 0 for v in pair) for pair in pairs)
            and box.pad_top >= 0 and box.pad_left >= 0)


def geometry_of(result_dir: Path, meta: str | None, size: int | None) -> tuple[dict, int]:
    """The preprocess geometry; without metadata, only when --size says the input size, the
    letterbox recomputed from each label's size (the same formula; main says so)."""
    meta_path = find_meta(result_dir, meta, required=size is None)
    if meta_path is None:
        return {}, size
    geometry, meta_size = load_geometry(meta_path)
    if size is not None and size != meta_size:
        raise UserError(f"{meta_path}: the bins were made at --size {meta_size}, not {size}")
    return geometry, meta_size


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--val-dir", required=True, help="the folder holding VOCdevkit (guide: /opt/npu)")
    parser.add_argument("--result-dir", required=True, help="inference output folder (<id>_0.bin)")
    parser.add_argument("--meta", default=None,
                        help=f"{META_NAME} of the preprocess (default: found through the run's summary JSON)")
    parser.add_argument("--size", type=int, default=None,
                        help="model input size, only for results whose preprocess metadata is lost "
                             "(the geometry is then recomputed from each label's size)")
    parser.add_argument("--save_path", default=None, help="metric JSON (default: <result-dir>_miou.json)")
    parser.add_argument("--split", default="val")
    add_run_arguments(parser)
    parser.add_argument("--allow-missing", action="store_true", help="score the images that have outputs")
    add_show_dir_argument(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    dataset = VOCSegmentation.from_parent(args.val_dir, args.split)
    dataset.check_files(labels=True)
    image_sizes([dataset.label_path(i) for i in dataset.ids], kind="label", modes=("P", "L"))
    result_dir = Path(args.result_dir)
    ids, missing = match_outputs(result_dir, dataset.ids, allow_missing=args.allow_missing)
    geometry, size = geometry_of(result_dir, args.meta, args.size)
    save_path = Path(args.save_path) if args.save_path else Path(str(result_dir).rstrip("/") + "_miou.json")
    output_file_parent(save_path)
    output_folders(args.show_dir)
    matrix = ConfusionMatrix(NUM_CLASSES, VOC_IGNORE)
    work = partial(score_one, dataset=dataset, result_dir=result_dir, geometry=geometry, size=size,
                   show_dir=args.show_dir)
    for image_matrix in map_with_progress(work, ids, args.workers, desc="Postprocess"):
        matrix.merge(image_matrix)
    report_segmentation(matrix, VOC_CLASSES, save_path,
                        {"images_left_out": len(missing), "result_dir": str(result_dir)})
    warn_left_out(missing, len(dataset.ids))
    if not geometry:
        print(f"[WARNING] {result_dir}: no {META_NAME} found; the geometry was recomputed for --size {size} "
              "from each label's size", file=sys.stderr)
    print(f"miou: {matrix.mean_iou():.6f}")
    return 0


if __name__ == "__main__":
    script_entry(main, parse_args)
